"""nerfstudio's 3D ``HashEncoding`` and ``HashMLPDensityField`` with a memory-lean pure-torch path.

Same parameters, state-dict keys and numerics as nerfstudio's (a checkpoint loads either way); only the torch
fallback differs. nerfstudio's torch ``pytorch_fwd`` hashes the 8 corners into int64 tensors, gathers 8 feature
tensors and blends them with nested lerps, and autograd keeps 120 bytes per sample and level. The
proposal networks see 192 samples per ray (nerfacto's defaults), i.e. ~0.5 GB of saved activations at 4096 rays on a
CPU. Here backward keeps each corner's table row as int32 (32 bytes per sample and level) and recomputes the
trilinear weights from the positions (cheap float arithmetic), and the forward never materialises 8 gathered tensors
at once. With tiny-cuda-nn loaded both classes use it unchanged.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Tuple

import torch
from jaxtyping import Float, Int32
from nerfstudio.field_components.encodings import HashEncoding
from nerfstudio.fields.density_fields import HashMLPDensityField
from torch import Tensor, nn

# nerfstudio's hash primes (HashEncoding.hash_fn): x * 1 ^ y * 2654435761 ^ z * 805459861, in int64 (no wrap-around).
_PRIME_Y, _PRIME_Z = 2654435761, 805459861
_CORNERS = tuple((dx, dy, dz) for dx in (0, 1) for dy in (0, 1) for dz in (0, 1))


def _trilinear_weights(encoding: "LeanHashEncoding", x: Float[Tensor, "n 3"]) -> Tuple[Tensor, Iterator[Tensor]]:
    """Integer cell [n, L, 3] (int64) and, lazily, each corner's weight [n, L] in ``_CORNERS`` order."""
    scaled = x[:, None, :] * encoding.scalings[:, None]  # [n, L, 3]
    floor = torch.floor(scaled)
    frac = scaled - floor
    lower = 1.0 - frac
    fx, fy, fz = frac.unbind(-1)
    gx, gy, gz = lower.unbind(-1)

    def weights() -> Iterator[Tensor]:
        for dx, dy, dz in _CORNERS:
            yield (fx if dx else gx) * (fy if dy else gy) * (fz if dz else gz)

    return floor.to(torch.int64), weights()


def _corner_rows(encoding: "LeanHashEncoding", cell: Tensor) -> Iterator[Tensor]:
    """Table row [n, L] (int64) of each corner in ``_CORNERS`` order. nerfstudio pairs floor with ceil, here floor
    with floor + 1: they differ only where the position is an integer, where that corner's weight is 0."""
    ix, iy, iz = cell.unbind(-1)
    hx = (ix, ix + 1)
    hy = (iy * _PRIME_Y, (iy + 1) * _PRIME_Y)
    hz = (iz * _PRIME_Z, (iz + 1) * _PRIME_Z)
    offset = encoding.hash_offset
    for dx, dy, dz in _CORNERS:
        yield torch.bitwise_xor(torch.bitwise_xor(hx[dx], hy[dy]), hz[dz]) % encoding.hash_table_size + offset


class _LeanLookup(torch.autograd.Function):
    """Trilinear hash-table lookup; gradients flow to the table only (the proposal networks' positions need none)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, table: Tensor, encoding: "LeanHashEncoding") -> Tensor:  # type: ignore[override]
        cell, weights = _trilinear_weights(encoding, x)
        out: Optional[Tensor] = None
        rows: Int32[Tensor, "8 n L"] = torch.empty((8, *cell.shape[:-1]), dtype=torch.int32, device=x.device)
        for corner, (corner_rows, weight) in enumerate(zip(_corner_rows(encoding, cell), weights)):
            term = weight[..., None] * table[corner_rows]
            out = term if out is None else out + term
            rows[corner] = corner_rows
        ctx.save_for_backward(x, rows)
        ctx.encoding = encoding
        ctx.table_shape = table.shape
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tuple[None, Tensor, None]:  # type: ignore[override]
        x, rows = ctx.saved_tensors
        _, weights = _trilinear_weights(ctx.encoding, x)
        grad_out = grad_out.float()
        grad_table = torch.zeros(ctx.table_shape, dtype=grad_out.dtype, device=grad_out.device)
        for corner, weight in enumerate(weights):
            # int64 index: index_add_ with an int32 index is an order of magnitude slower on CPU.
            grad_table.index_add_(0, rows[corner].reshape(-1).long(), (weight[..., None] * grad_out).reshape(-1, ctx.table_shape[-1]))
        return None, grad_table, None


class LeanHashEncoding(HashEncoding):
    """nerfstudio's ``HashEncoding`` (same arguments, parameters and values) whose torch path keeps 32 bytes per sample
    and level for backward instead of 120 (see module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Buffers (not saved: derived from the arguments) so they move with the module: nerfstudio's plain tensors are
        # copied host-to-device on every call.
        for name in ("scalings", "hash_offset"):
            value = getattr(self, name)
            delattr(self, name)
            self.register_buffer(name, value, persistent=False)
        if self.tcnn_encoding is None:
            assert self.hash_table_size * self.num_levels < 2**31, "rows are kept as int32"

    def pytorch_fwd(self, in_tensor: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs output_dim"]:
        flat = in_tensor.reshape(-1, 3)
        if torch.is_grad_enabled() and self.hash_table.requires_grad and not flat.requires_grad:
            out = _LeanLookup.apply(flat, self.hash_table, self)
        else:  # no gradient, or one for the positions too: plain autograd over the same corners
            cell, weights = _trilinear_weights(self, flat)
            out = sum(w[..., None] * self.hash_table[r] for r, w in zip(_corner_rows(self, cell), weights))
        return out.reshape(*in_tensor.shape[:-1], self.get_out_dim())


class LeanHashMLPDensityField(HashMLPDensityField):
    """nerfstudio's ``HashMLPDensityField`` (nerfacto's proposal network) on :class:`LeanHashEncoding`; same
    arguments and state-dict keys."""

    def __init__(self, aabb: Tensor, **kwargs: Any) -> None:
        super().__init__(aabb, **kwargs)
        encoding = self.encoding
        lean = LeanHashEncoding(
            num_levels=encoding.num_levels,
            min_res=encoding.min_res,
            max_res=int(self.max_res),
            log2_hashmap_size=encoding.log2_hashmap_size,
            features_per_level=encoding.features_per_level,
            implementation=kwargs.get("implementation", "tcnn"),
        )
        self.encoding = lean
        if not self.use_linear:
            self.mlp_base = nn.Sequential(lean, self.mlp_base[1])
