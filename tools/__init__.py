"""Measurements beside the method: speed and memory (`python -m tools.bench`), EMR against known motion
(`python -m tools.fidelity`). Run them from the repository's root."""
