"""Building blocks any method may use: hash grids (tcnn or torch), the audio encoder and its training augmentation."""
