"""Triplane hash encoding: three 2D hash grids on the xy, yz and xz planes (ER-NeRF's tri-plane hash).

ER-NeRF concatenates the three plane features into one vector; DT-NeRF's audio-mouth-face-align transformer
attends over them, so here they are returned as three tokens ``[..., 3, D]`` (token order: xy, yz, xz).
"""

from __future__ import annotations

from typing import Literal, Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

from dtnerf_ns.core.field_components.hash_grid import HashGrid2D

# Axis pairs of the three planes, in token order (same split as ER-NeRF's split_xyz).
PLANE_AXES: Tuple[Tuple[int, int], ...] = ((0, 1), (1, 2), (0, 2))
PLANE_NAMES: Tuple[str, ...] = ("xy", "yz", "xz")


def plane_coordinates(x: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 3 2"]:
    """Projects points onto the xy, yz and xz planes: [..., 3] -> [..., 3 planes, 2]."""
    return torch.stack([x[..., list(axes)] for axes in PLANE_AXES], dim=-2)


class TriplaneHashEncoding(nn.Module):
    """Per-plane multi-resolution hash features of points in [-1, 1]^3.

    Args:
        num_levels: hash-grid levels per plane.
        features_per_level: features per level.
        log2_hashmap_size: log2 of the maximum table rows per level.
        base_resolution: coarsest grid resolution.
        max_resolution: finest grid resolution.
        implementation: "tcnn" (when importable) or "torch", see HashGrid2D.
    """

    def __init__(
        self,
        num_levels: int = 16,
        features_per_level: int = 2,
        log2_hashmap_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 1024,
        implementation: Literal["tcnn", "torch"] = "tcnn",
    ) -> None:
        super().__init__()
        self.grids = nn.ModuleList(
            [
                HashGrid2D(
                    num_levels=num_levels,
                    features_per_level=features_per_level,
                    log2_hashmap_size=log2_hashmap_size,
                    base_resolution=base_resolution,
                    max_resolution=max_resolution,
                    implementation=implementation,
                )
                for _ in PLANE_AXES
            ]
        )

    @property
    def out_dim(self) -> int:
        """Feature size D of each plane token."""
        return self.grids[0].get_out_dim()

    @property
    def num_tokens(self) -> int:
        return len(PLANE_AXES)

    def forward(self, x: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 3 D"]:
        """Encodes points.

        Args:
            x: points in [-1, 1]^3 (clamped, so out-of-range samples never wrap around the grids).

        Returns:
            Per-plane features, [..., 3, D] with planes in the order xy, yz, xz.
        """
        uv = (plane_coordinates(x).clamp(-1.0, 1.0) + 1.0) * 0.5  # [..., 3, 2] in [0, 1]
        return torch.stack([grid(uv[..., i, :]) for i, grid in enumerate(self.grids)], dim=-2)
