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

from typing import Any, List

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import HashEncoding
from nerfstudio.fields.density_fields import HashMLPDensityField
from torch import Tensor, nn

from dtnerf_ns.core.compilation import CompileMode
from dtnerf_ns.core.field_components.hash_lookup import CornerScheme, lookup

# nerfstudio's hash primes (HashEncoding.hash_fn): x * 1 ^ y * 2654435761 ^ z * 805459861, in int64 (no wrap-around).
_PRIME_Y, _PRIME_Z = 2654435761, 805459861
_CORNERS = tuple((dx, dy, dz) for dx in (0, 1) for dy in (0, 1) for dz in (0, 1))


class Trilinear3D(CornerScheme):
    """nerfstudio's 3D hash-grid corners around ``x * scaling`` per level; constants (scalings, hash_offset,
    hash_table_size). nerfstudio pairs floor with ceil, here floor with floor + 1: they differ only where the position
    is an integer, where that corner's weight is 0."""

    @staticmethod
    def rows(x: Tensor, *consts: Tensor) -> List[Tensor]:
        scalings, offset, table_size = consts
        ix, iy, iz = torch.floor(x[:, None, :] * scalings[:, None]).to(torch.int64).unbind(-1)  # [n, L] each
        hx = (ix, ix + 1)
        hy = (iy * _PRIME_Y, (iy + 1) * _PRIME_Y)
        hz = (iz * _PRIME_Z, (iz + 1) * _PRIME_Z)
        # nerfstudio's ``% table_size``: its tables have 2**k rows, and for those (any sign, two's complement) the
        # remainder is the low k bits; an integer division per corner would cost 3x the whole lookup on a CPU.
        mask = table_size - 1
        return [(torch.bitwise_xor(torch.bitwise_xor(hx[dx], hy[dy]), hz[dz]) & mask) + offset for dx, dy, dz in _CORNERS]

    @staticmethod
    def weights(x: Tensor, *consts: Tensor) -> List[Tensor]:
        scaled = x[:, None, :] * consts[0][:, None]  # [n, L, 3]
        frac = scaled - torch.floor(scaled)
        fx, fy, fz = frac.unbind(-1)
        gx, gy, gz = (1.0 - frac).unbind(-1)
        return [(fx if dx else gx) * (fy if dy else gy) * (fz if dz else gz) for dx, dy, dz in _CORNERS]

    @staticmethod
    def weight_gradients(x: Tensor, *consts: Tensor) -> List[Tensor]:
        s = consts[0][:, None].to(x.dtype)  # d fraction / d x, per level
        scaled = x[:, None, :] * s
        frac = scaled - torch.floor(scaled)
        f, g = frac.unbind(-1), (1.0 - frac).unbind(-1)
        gradients = []
        for corner in _CORNERS:
            factor = [f[d] if corner[d] else g[d] for d in range(3)]
            sign = [s[:, 0] if corner[d] else -s[:, 0] for d in range(3)]
            gradients.append(torch.stack([sign[0] * factor[1] * factor[2], factor[0] * sign[1] * factor[2],
                                          factor[0] * factor[1] * sign[2]], dim=-1))  # fmt: skip
        return gradients


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
        self.register_buffer("table_size", torch.tensor(self.hash_table_size, dtype=torch.int64), persistent=False)
        self.compile_mode: CompileMode = "auto"
        """When the torch path runs compiled kernels (:mod:`~dtnerf_ns.core.field_components.hash_lookup`)."""
        if self.tcnn_encoding is None:
            assert self.hash_table_size * self.num_levels < 2**31, "rows are kept as int32"
            assert self.hash_table_size & (self.hash_table_size - 1) == 0, "Trilinear3D masks rows: 2**k table rows"

    def pytorch_fwd(self, in_tensor: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs output_dim"]:
        flat = in_tensor.reshape(-1, 3)
        consts = (self.scalings, self.hash_offset, self.table_size)
        out = lookup(flat, self.hash_table, Trilinear3D, consts, self.compile_mode)
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
