"""DT-NeRF fields."""
