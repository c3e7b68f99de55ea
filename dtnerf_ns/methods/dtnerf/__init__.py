"""DT-NeRF (decomposed face/mouth triplane-hash fields, audio-mouth-face align transformer, spatial fusion):
field, model, losses, occupancy-grid sampling and the ``dtnerf`` / ``dtnerf-small`` presets."""
