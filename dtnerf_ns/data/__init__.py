"""DT-NeRF data: dataparser (``dtnerf-data``), per-pixel dataset and datamanager."""
