"""Multi-resolution 2D hash-grid encoding (Instant-NGP), with a tiny-cuda-nn backend and a pure-torch fallback.

The torch path reproduces tcnn's ``HashGrid`` numerics (tiny-cuda-nn ``encodings/grid.h`` and
``common_device.h``), so a checkpoint trained with one backend loads and evaluates the same with the other:

* per-level scale ``exp2(level * log2(per_level_scale)) * base_resolution - 1`` and
  ``resolution = ceil(scale) + 1`` grid vertices per axis;
* position ``scale * x + 0.5`` (the half-cell offset staggers the levels), split into integer cell and fraction;
* level ``l`` owns ``min(next_multiple(resolution**2, 8), 2**log2_hashmap_size)`` table rows; a level is
  indexed densely (``ix + iy * resolution``) when ``resolution**2`` rows fit, otherwise by the spatial hash
  ``ix * 1 xor iy * 2654435761`` (uint32); either index is taken modulo the level's size;
* bilinear interpolation of the four corners; table initialised uniform(-1e-4, 1e-4);
* parameters are one flat vector laid out like tcnn's ``params`` (level-major rows of ``features_per_level``).
"""

from __future__ import annotations

import math
import warnings
from typing import List, Literal, Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

from dtnerf_ns.core.compilation import CompileMode
from dtnerf_ns.core.field_components.hash_lookup import CornerScheme, lookup

_PRIME_Y = 2654435761  # tcnn's coherent_prime_hash primes for 2D: (1, 2654435761)
_UINT32_MASK = 0xFFFFFFFF
_TCNN_FALLBACK_WARNED = False


def _import_tcnn():
    """Returns the tinycudann module, or None when it cannot be imported (not installed, no CUDA, ...)."""
    try:
        import tinycudann as tcnn  # pylint: disable=import-outside-toplevel

        return tcnn
    except Exception:  # noqa: BLE001  tcnn raises various errors (ImportError, OSError, RuntimeError) without CUDA
        return None


def _warn_tcnn_fallback_once() -> None:
    global _TCNN_FALLBACK_WARNED  # pylint: disable=global-statement
    if not _TCNN_FALLBACK_WARNED:
        _TCNN_FALLBACK_WARNED = True
        warnings.warn(
            "HashGrid2D: tinycudann is not importable; falling back to the (slower) pure-torch hash grid.",
            RuntimeWarning,
            stacklevel=3,
        )


def _remainder(index: Tensor, sizes: Tensor) -> Tensor:
    """``index % sizes`` for 0 <= index < 2**32 and sizes < 2**31, without an integer division (which CPUs do not
    vectorise: it cost 3x the rest of the lookup). The float64 quotient's floor is exact in that range: a correctly
    rounded quotient of such integers is never pushed across a whole number."""
    quotient = torch.floor(index.to(torch.float64) / sizes.to(torch.float64)).to(torch.int64)
    return index - quotient * sizes


class Bilinear2D(CornerScheme):
    """tcnn's 2D grid corners: (0, 0), (0, 1), (1, 0), (1, 1) in (x, y) around ``scale * x + 0.5``; constants
    (scales, resolutions, sizes, offsets, hashed) per level. tcnn's uint32 arithmetic is emulated in int64: masking
    with 2**32 - 1 commutes with + and *. Dense levels: ix + iy * res; hashed: ix ^ (iy * prime)."""

    @staticmethod
    def _positions(x: Tensor, scales: Tensor) -> Tensor:
        return x[..., None, :].float() * scales[:, None] + 0.5  # [..., L, 2]

    @staticmethod
    def rows(x: Tensor, *consts: Tensor) -> List[Tensor]:
        scales, resolutions, sizes, offsets, hashed = consts
        ix, iy = torch.floor(Bilinear2D._positions(x, scales)).to(torch.int64).unbind(dim=-1)
        dense = ix + iy * resolutions
        hx = (ix & _UINT32_MASK, (ix + 1) & _UINT32_MASK)
        hy0 = (iy * _PRIME_Y) & _UINT32_MASK
        hy = (hy0, (hy0 + _PRIME_Y) & _UINT32_MASK)
        rows = []
        for dx, dy in ((0, 0), (0, 1), (1, 0), (1, 1)):  # Python offsets: no tensor built on the host
            index = dense + dx
            index = (index + resolutions if dy else index) & _UINT32_MASK
            index = torch.where(hashed, torch.bitwise_xor(hx[dx], hy[dy]), index)
            rows.append(_remainder(index, sizes) + offsets)
        return rows

    @staticmethod
    def weights(x: Tensor, *consts: Tensor) -> List[Tensor]:
        pos = Bilinear2D._positions(x, consts[0])
        fx, fy = (pos - torch.floor(pos)).unbind(dim=-1)
        gx, gy = 1 - fx, 1 - fy
        return [gx * gy, gx * fy, fx * gy, fx * fy]

    @staticmethod
    def weight_gradients(x: Tensor, *consts: Tensor) -> List[Tensor]:
        scales = consts[0]
        pos = Bilinear2D._positions(x, scales)
        fx, fy = (pos - torch.floor(pos)).unbind(dim=-1)
        gx, gy = 1 - fx, 1 - fy
        s = scales.to(x.dtype)  # d fraction / d x, per level
        return [
            torch.stack([-s * gy, -s * gx], dim=-1),
            torch.stack([-s * fy, s * gx], dim=-1),
            torch.stack([s * gy, -s * fx], dim=-1),
            torch.stack([s * fy, s * fx], dim=-1),
        ]


def _next_multiple(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


class HashGrid2D(nn.Module):
    """Multi-resolution hash-grid encoding of 2D points in [0, 1]^2.

    Args:
        num_levels: number of grid levels.
        features_per_level: number of features stored per grid vertex and level.
        log2_hashmap_size: each level holds at most 2**log2_hashmap_size rows (coarse levels that fit are dense).
        base_resolution: resolution of the coarsest level.
        max_resolution: resolution of the finest level; the per-level scale is derived from it.
        implementation: "tcnn" uses tinycudann when importable (else warns once and uses torch); "torch" always
            uses the pure-torch implementation, which matches tcnn numerically.
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
        if num_levels < 1 or features_per_level < 1:
            raise ValueError("num_levels and features_per_level must be >= 1")
        if max_resolution < base_resolution:
            raise ValueError(f"max_resolution ({max_resolution}) must be >= base_resolution ({base_resolution})")
        self.num_levels = num_levels
        self.features_per_level = features_per_level
        self.log2_hashmap_size = log2_hashmap_size
        self.base_resolution = base_resolution
        self.max_resolution = max_resolution
        # Same growth factor as nerfstudio's HashEncoding.
        self.per_level_scale = (
            math.exp((math.log(max_resolution) - math.log(base_resolution)) / (num_levels - 1)) if num_levels > 1 else 1.0
        )

        # Level geometry, computed in float32 like tcnn's host code (grid_scale / grid_resolution).
        log2_pls = torch.log2(torch.tensor(self.per_level_scale, dtype=torch.float32))
        levels = torch.arange(num_levels, dtype=torch.float32)
        scales = torch.exp2(levels * log2_pls) * float(base_resolution) - 1.0
        resolutions: List[int] = [int(math.ceil(s)) + 1 for s in scales.tolist()]
        table_max = 2**log2_hashmap_size
        sizes: List[int] = [min(_next_multiple(r * r, 8), table_max) for r in resolutions]
        offsets: List[int] = [0]
        for s in sizes[:-1]:
            offsets.append(offsets[-1] + s)
        self.level_resolutions = resolutions
        self.level_sizes = sizes
        self.num_table_rows = sum(sizes)
        # Buffers (not persistent: derived from the constructor args) so they follow .to(device).
        self.register_buffer("_scales", scales, persistent=False)
        self.register_buffer("_resolutions", torch.tensor(resolutions, dtype=torch.int64), persistent=False)
        self.register_buffer("_sizes", torch.tensor(sizes, dtype=torch.int64), persistent=False)
        self.register_buffer("_offsets", torch.tensor(offsets, dtype=torch.int64), persistent=False)
        self.register_buffer(
            "_hashed", torch.tensor([r * r > s for r, s in zip(resolutions, sizes)], dtype=torch.bool), persistent=False
        )
        self.compile_mode: CompileMode = "auto"
        """When the torch path runs compiled kernels (:mod:`~dtnerf_ns.core.field_components.hash_lookup`)."""

        self.tcnn_encoding: Optional[nn.Module] = None
        self.params: Optional[nn.Parameter] = None
        tcnn = _import_tcnn() if implementation == "tcnn" else None
        if implementation == "tcnn" and tcnn is None:
            _warn_tcnn_fallback_once()
        if tcnn is not None:
            self.tcnn_encoding = tcnn.Encoding(
                n_input_dims=2,
                # tcnn seeds every encoding with 1337 by default: draw from torch's RNG so the planes differ.
                seed=int(torch.randint(0, 2**31 - 1, (1,)).item()),
                encoding_config={
                    "otype": "HashGrid",
                    "n_levels": num_levels,
                    "n_features_per_level": features_per_level,
                    "log2_hashmap_size": log2_hashmap_size,
                    "base_resolution": base_resolution,
                    "per_level_scale": self.per_level_scale,
                },
            )
        else:
            # Flat table in tcnn's layout so weights are interchangeable between backends.
            init = torch.empty(self.num_table_rows * features_per_level).uniform_(-1e-4, 1e-4)
            self.params = nn.Parameter(init)

    @property
    def implementation(self) -> Literal["tcnn", "torch"]:
        """The backend actually in use."""
        return "tcnn" if self.tcnn_encoding is not None else "torch"

    def get_out_dim(self) -> int:
        """Output feature dimension: num_levels * features_per_level."""
        return self.num_levels * self.features_per_level

    @property
    def out_dim(self) -> int:
        return self.get_out_dim()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        # Same flat layout in both backends: accept a checkpoint written by the other one.
        torch_key, tcnn_key = prefix + "params", prefix + "tcnn_encoding.params"
        if self.tcnn_encoding is not None and torch_key in state_dict and tcnn_key not in state_dict:
            state_dict[tcnn_key] = state_dict.pop(torch_key)
        elif self.tcnn_encoding is None and tcnn_key in state_dict and torch_key not in state_dict:
            state_dict[torch_key] = state_dict.pop(tcnn_key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def grid_indices(self, cells: Tensor) -> Tensor:
        """Table row of integer grid vertices, per level (tcnn's grid_index + level offset).

        Args:
            cells: int64 vertex coordinates, shape [..., num_levels, 2].

        Returns:
            int64 rows into the flat table (viewed as [num_table_rows, features_per_level]), shape [..., num_levels].
        """
        ix, iy = cells[..., 0] & _UINT32_MASK, cells[..., 1] & _UINT32_MASK
        dense = (ix + iy * self._resolutions) & _UINT32_MASK
        hashed = torch.bitwise_xor(ix, (iy * _PRIME_Y) & _UINT32_MASK)
        return torch.where(self._hashed, hashed, dense) % self._sizes + self._offsets

    @property
    def corner_constants(self) -> Tuple[Tensor, ...]:
        """The per-level constants of :class:`Bilinear2D`."""
        return (self._scales, self._resolutions, self._sizes, self._offsets, self._hashed)

    def corners(self, x: Float[Tensor, "*bs 2"]) -> List[Tuple[Tensor, Tensor]]:
        """(table rows [..., L] int64, bilinear weights [..., L]) of each of the four corners around the points."""
        consts = self.corner_constants
        return list(zip(Bilinear2D.rows(x, *consts), Bilinear2D.weights(x, *consts)))

    def pytorch_fwd(self, x: Float[Tensor, "*bs 2"]) -> Float[Tensor, "*bs out_dim"]:
        """Pure-torch forward (bilinear hash-grid lookup, tcnn numerics; compiled per ``compile_mode``)."""
        assert self.params is not None
        table = self.params.view(-1, self.features_per_level)  # [rows, F]
        out = lookup(x, table, Bilinear2D, self.corner_constants, self.compile_mode)
        return out.flatten(start_dim=-2)  # [..., L * F], level-major like tcnn

    def forward(self, x: Float[Tensor, "*bs 2"]) -> Float[Tensor, "*bs out_dim"]:
        """Encodes points.

        Args:
            x: coordinates in [0, 1]^2 (not clamped: like tcnn, values outside wrap around the grid).

        Returns:
            Features, [..., num_levels * features_per_level] (float32, also for the tcnn backend).
        """
        if self.tcnn_encoding is not None:
            flat = x.reshape(-1, 2)
            out = self.tcnn_encoding(flat).float()  # tcnn may return half precision
            return out.view(*x.shape[:-1], self.get_out_dim())
        return self.pytorch_fwd(x)
