"""Leaf helpers that every folder may use and that use none of them: files written atomically, file locks, the
code version and the source digest (files.py); worker processes, one per usable CPU (workers.py)."""
