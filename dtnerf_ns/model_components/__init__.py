"""Model components of the DT-NeRF method (samplers and rendering helpers)."""
