"""Building blocks of the DT-NeRF field: hash grids, triplanes, audio networks, align transformer, fusion."""
