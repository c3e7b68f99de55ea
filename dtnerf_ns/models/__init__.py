"""DT-NeRF models."""
