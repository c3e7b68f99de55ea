"""SAHS-NeRF's learnable 3D feature grid ``e_x'`` (paper section 2.3, after FENeRF): a dense grid of feature vectors
sampled at the canonical point, feeding the colour branch with high-frequency detail.

The paper interpolates bicubically; ``grid_sample`` has no bicubic mode in 3D, so this is trilinear (tricubic would
need 64 taps per point). Size as the authors' code: 32^3 cells, 32 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn


class FeatureGrid3D(nn.Module):
    """Dense learnable feature volume over [-1, 1]^3.

    Args:
        resolution: cells per axis.
        channels: features per cell.
    """

    def __init__(self, resolution: int = 32, channels: int = 32) -> None:
        super().__init__()
        self.channels = channels
        self.grid = nn.Parameter(0.01 * torch.randn(1, channels, resolution, resolution, resolution))

    def forward(self, x: Float[Tensor, "n 3"]) -> Float[Tensor, "n channels"]:
        """Features at points in [-1, 1]^3 (zero padding outside)."""
        coords = x.reshape(1, -1, 1, 1, 3)  # grid_sample's (x, y, z) -> (W, H, D) order
        out = F.grid_sample(self.grid, coords, mode="bilinear", padding_mode="zeros", align_corners=True)
        return out.reshape(self.channels, -1).t()
