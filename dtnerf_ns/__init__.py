"""DT-NeRF (audio-driven talking portraits) as a Nerfstudio method plugin."""
