"""Talking-head data shared by every method: dataparser, per-pixel dataset, uint8 frame cache, datamanager."""
