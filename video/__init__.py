"""A trained model on your own recordings: `mer.py predict` on clips, `mer.py spot` on long videos (every expression
interval spotted, recognised and scored as MEGC scores spotting)."""
