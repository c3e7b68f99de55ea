"""DT-NeRF spatial fusion of the face and mouth fields in one volume.

Densities add, colours mix by density: ``sigma = sigma_f + sigma_m``,
``c = (sigma_f c_f + sigma_m c_m) / sigma``.
"""

from __future__ import annotations

from typing import Tuple

import torch
from jaxtyping import Float
from torch import Tensor


def spatial_fusion(
    density_face: Float[Tensor, "*bs 1"],
    rgb_face: Float[Tensor, "*bs 3"],
    density_mouth: Float[Tensor, "*bs 1"],
    rgb_mouth: Float[Tensor, "*bs 3"],
    eps: float = 1e-10,
) -> Tuple[Float[Tensor, "*bs 1"], Float[Tensor, "*bs 3"]]:
    """Fuses two non-negative density/colour fields sharing the same samples.

    Args:
        density_face: face density (>= 0).
        rgb_face: face colour.
        density_mouth: mouth density (>= 0; exactly 0 outside the mouth box).
        rgb_mouth: mouth colour (ignored where density_mouth == 0).
        eps: guards the division where both densities are ~0.

    Returns:
        (density, rgb): the summed density and the density-weighted colour.
    """
    density = density_face + density_mouth
    # Written as c_f + w_m (c_m - c_f), w_m = sigma_m / sigma: algebraically the paper's weighted mean, but
    # exactly c_f when sigma_m == 0 (no eps bias in empty space, where sigma_f may be tiny).
    w_mouth = density_mouth / density.clamp_min(eps)
    rgb = rgb_face + w_mouth * (rgb_mouth - rgb_face)
    # Mouth colour is undefined where its density is 0 (outside its box): never let it leak (e.g. NaN * 0).
    rgb = torch.where(density_mouth > 0, rgb, rgb_face)
    return density, rgb
