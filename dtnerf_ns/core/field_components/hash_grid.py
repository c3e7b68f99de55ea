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
from typing import Any, Iterator, List, Literal, Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

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


class _TableLookup(torch.autograd.Function):
    """Bilinear lookup whose backward keeps only each corner's table row (as int32, 16 bytes per point and level) and
    recomputes the bilinear weights from the points (a few float ops). Plain autograd also keeps int64 rows, the
    gathered features and the weight factors (~110 bytes), i.e. gigabytes per step for a few hundred thousand samples
    on three planes of two fields. (Recomputing the rows too, as tcnn does, costs a second hash per corner: ~1.6x
    slower steps on a CPU.) Gradients flow to the table only (sample positions need none here)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, table: Tensor, grid: "HashGrid2D") -> Tensor:  # type: ignore[override]
        assert grid.num_table_rows < 2**31, "int32 rows"
        out: Optional[Tensor] = None
        rows = torch.empty((4, *x.shape[:-1], grid.num_levels), dtype=torch.int32, device=x.device)
        for corner, (corner_rows, weight) in enumerate(grid.corners(x)):
            term = weight[..., None] * table[corner_rows]
            out = term if out is None else out + term
            rows[corner] = corner_rows
        ctx.save_for_backward(x, rows)
        ctx.grid = grid
        ctx.table_shape = table.shape
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tuple[None, Tensor, None]:  # type: ignore[override]
        x, rows = ctx.saved_tensors  # rows: [4, ..., L]
        grad_out = grad_out.float()
        grad_table = torch.zeros(ctx.table_shape, dtype=grad_out.dtype, device=grad_out.device)
        for corner, (_, weight) in enumerate(ctx.grid.corners(x, with_rows=False)):
            # int64 rows: index_add_ with an int32 index is an order of magnitude slower on CPU.
            contribution = (weight[..., None] * grad_out).reshape(-1, ctx.table_shape[-1])
            grad_table.index_add_(0, rows[corner].reshape(-1).long(), contribution)
        return None, grad_table, None


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
        self._any_hashed = any(r * r > s for r, s in zip(resolutions, sizes))
        self._any_dense = not all(r * r > s for r, s in zip(resolutions, sizes))

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
        return self._rows(cells[..., 0], cells[..., 1])

    def _rows(self, ix: Tensor, iy: Tensor) -> Tensor:
        # Emulate tcnn's uint32 arithmetic; int64 products wrap mod 2**64, which keeps the low 32 bits right.
        ix = ix & _UINT32_MASK
        iy = iy & _UINT32_MASK
        dense = (ix + iy * self._resolutions) & _UINT32_MASK
        hashed = torch.bitwise_xor(ix, (iy * _PRIME_Y) & _UINT32_MASK)
        index = torch.where(self._hashed, hashed, dense)
        return index % self._sizes + self._offsets

    def corners(
        self, x: Float[Tensor, "*bs 2"], with_rows: bool = True
    ) -> Iterator[Tuple[Optional[Tensor], Float[Tensor, "*bs L"]]]:
        """Table rows [..., L] (int64; None without ``with_rows``) and bilinear weights [..., L] of each of the four
        corners around the points, in the order (0, 0), (0, 1), (1, 0), (1, 1) in (x, y). Corner offsets are Python
        integers: no tensor is built on the host (on CUDA each would be a host-to-device copy)."""
        pos = x[..., None, :].float() * self._scales[:, None] + 0.5  # [..., L, 2]
        cell_f = torch.floor(pos)
        fx, fy = (pos - cell_f).unbind(dim=-1)
        gx, gy = 1 - fx, 1 - fy
        weights = (gx * gy, gx * fy, fx * gy, fx * fy)
        if not with_rows:
            yield from ((None, w) for w in weights)
            return
        ix, iy = cell_f.to(torch.int64).unbind(dim=-1)
        # What the four corners share, so each corner costs a few integer ops (tcnn's uint32 arithmetic, emulated in
        # int64: masking with 2**32 - 1 commutes with + and *). Dense levels: ix + iy * res; hashed: ix ^ (iy * prime).
        dense = ix + iy * self._resolutions if self._any_dense else None
        hx = (ix & _UINT32_MASK, (ix + 1) & _UINT32_MASK) if self._any_hashed else None
        hy0 = (iy * _PRIME_Y) & _UINT32_MASK if self._any_hashed else None
        hy = (hy0, (hy0 + _PRIME_Y) & _UINT32_MASK) if hy0 is not None else None
        for corner, (dx, dy) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            index = None
            if dense is not None:
                index = dense + dx
                index = (index + self._resolutions if dy else index) & _UINT32_MASK
            if hx is not None and hy is not None:
                hashed = torch.bitwise_xor(hx[dx], hy[dy])
                index = hashed if index is None else torch.where(self._hashed, hashed, index)
            assert index is not None
            yield index % self._sizes + self._offsets, weights[corner]

    def pytorch_fwd(self, x: Float[Tensor, "*bs 2"]) -> Float[Tensor, "*bs out_dim"]:
        """Pure-torch forward (bilinear hash-grid lookup, tcnn numerics)."""
        assert self.params is not None
        table = self.params.view(-1, self.features_per_level)  # [rows, F]
        if torch.is_grad_enabled() and table.requires_grad and not x.requires_grad:
            out = _TableLookup.apply(x, table, self)
        else:  # no table gradient wanted, or gradients for the positions too: plain autograd
            out = sum(weight[..., None] * table[rows] for rows, weight in self.corners(x))
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
