"""Interpolation in a multi-resolution hash table: the one lookup behind the 2D triplane grids
(:mod:`~dtnerf_ns.core.field_components.hash_grid`) and the 3D encodings
(:mod:`~dtnerf_ns.core.field_components.lean_hash_encoding`).

A grid says how points become interpolation corners through a :class:`CornerScheme`: for each corner, the table row
and the weight of every point at every level (bilinear: 4 corners, trilinear: 8), and the weight's derivative along
each coordinate. The lookup is then

    out[n, l] = sum over corners c of weight[c, n, l] * table[row[c, n, l]]

:class:`LeanLookup` keeps only the rows (int32, 4 bytes per corner, point and level) for backward and recomputes the
weights there, instead of autograd's ~30 bytes per corner. Its table gradient is torch's 1-D ``scatter_add_`` of each
corner's terms (deterministic, and 4x ``index_add_`` over rows of 2 features on a CPU); the positions' gradient
(SAHS-NeRF's template sees deformed points) is the weights' derivatives times the gathered rows.

Every kernel can run compiled (:mod:`dtnerf_ns.core.compilation`): on the 2-core CPU the fused forward is 3x
(training) to 9x (rendering) faster than the ~20 tensor operations per corner it replaces, with identical values.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import torch
from jaxtyping import Float, Int32
from torch import Tensor

from dtnerf_ns.core.compilation import CompileMode, compile_applies, run


class CornerScheme:
    """How a grid turns points [n, D] into interpolation corners. Subclasses implement three static methods over the
    grid's constants (its buffers, passed as tensors so one compiled kernel serves every grid of a scheme)."""

    @staticmethod
    def rows(x: Tensor, *consts: Tensor) -> List[Tensor]:
        """Each corner's table row per point and level, [n, L] int64 (the level's offset included)."""
        raise NotImplementedError

    @staticmethod
    def weights(x: Tensor, *consts: Tensor) -> List[Tensor]:
        """Each corner's interpolation weight per point and level, [n, L], in the order of :meth:`rows`."""
        raise NotImplementedError

    @staticmethod
    def weight_gradients(x: Tensor, *consts: Tensor) -> List[Tensor]:
        """Each corner's d weight / d x per point and level, [n, L, D], in the order of :meth:`rows`."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------- kernels
def _interpolate(x: Tensor, table: Tensor, scheme: type, consts: Sequence[Tensor]) -> Float[Tensor, "n L F"]:
    rows, weights = scheme.rows(x, *consts), scheme.weights(x, *consts)
    out = weights[0][..., None] * table[rows[0]]
    for corner in range(1, len(rows)):  # one corner's gather at a time: no [corners, n, L, F] tensor in eager mode
        out = out + weights[corner][..., None] * table[rows[corner]]
    return out


def _interpolate_keeping_rows(
    x: Tensor, table: Tensor, scheme: type, consts: Sequence[Tensor]
) -> Tuple[Float[Tensor, "n L F"], Int32[Tensor, "corners n L"]]:
    rows, weights = scheme.rows(x, *consts), scheme.weights(x, *consts)
    kept = torch.empty((len(rows), *rows[0].shape), dtype=torch.int32, device=x.device)
    out = weights[0][..., None] * table[rows[0]]
    kept[0] = rows[0]
    for corner in range(1, len(rows)):
        out = out + weights[corner][..., None] * table[rows[corner]]
        kept[corner] = rows[corner]
    return out, kept


def _gradient_terms(
    x: Tensor, grad_out: Tensor, rows: Int32[Tensor, "corners n L"], scheme: type, consts: Sequence[Tensor]
) -> Tuple[Tensor, Tensor]:
    """Every corner's share of the table gradient as (flat int64 index into the table, value), for a 1-D scatter."""
    weights = torch.stack(scheme.weights(x, *consts))  # [C, n, L]
    features = grad_out.shape[-1]
    index = rows.long()[..., None] * features + torch.arange(features, device=rows.device)
    return index.reshape(-1), (weights[..., None] * grad_out).reshape(-1)


def _position_gradient(
    x: Tensor, grad_out: Tensor, table: Tensor, rows: Tensor, scheme: type, consts: Sequence[Tensor]
) -> Float[Tensor, "n D"]:
    grad_x = torch.zeros_like(x)
    for corner, d_weight in enumerate(scheme.weight_gradients(x, *consts)):
        grad_weight = (grad_out * table[rows[corner].long()]).sum(dim=-1)  # [n, L]
        grad_x = grad_x + (grad_weight[..., None] * d_weight).sum(dim=-2)
    return grad_x


_TERMS_PER_CHUNK = 1 << 22
"""Table-gradient terms built at once in backward (12 bytes each: index and value)."""


class LeanLookup(torch.autograd.Function):
    """Hash-table interpolation whose backward keeps int32 rows and recomputes the weights (see module docstring)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, table: Tensor, scheme: type, consts: Tuple[Tensor, ...], compiled: bool
    ) -> Tensor:
        assert table.shape[0] < 2**31, "rows are kept as int32"
        out, rows = run(_interpolate_keeping_rows, compiled, x, table, scheme, consts)
        ctx.save_for_backward(x, rows, table if ctx.needs_input_grad[0] else None)
        ctx.scheme, ctx.consts, ctx.compiled, ctx.table_shape = scheme, consts, compiled, table.shape
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tuple[Any, ...]:  # type: ignore[override]
        x, rows, table = ctx.saved_tensors
        grad_out = grad_out.float()
        grad_table = None
        if ctx.needs_input_grad[1]:
            grad_table = torch.zeros(ctx.table_shape, dtype=grad_out.dtype, device=grad_out.device)
            flat = grad_table.view(-1)
            # Points in chunks: the terms of a chunk's corners, levels and features take at most ~64 MB at once.
            chunk = max(1, _TERMS_PER_CHUNK // (rows.shape[0] * rows.shape[2] * grad_out.shape[-1]))
            for start in range(0, x.shape[0], chunk):
                end = start + chunk
                index, terms = run(
                    _gradient_terms, ctx.compiled, x[start:end], grad_out[start:end], rows[:, start:end], ctx.scheme,
                    ctx.consts,
                )
                flat.scatter_add_(0, index, terms)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = run(_position_gradient, ctx.compiled, x, grad_out, table, rows, ctx.scheme, ctx.consts)
        return grad_x, grad_table, None, None, None


def lookup(
    x: Float[Tensor, "*bs D"], table: Float[Tensor, "rows F"], scheme: type, consts: Tuple[Tensor, ...], mode: CompileMode
) -> Float[Tensor, "*bs L F"]:
    """Interpolated features of points ``x``; gradients reach ``table`` and, when it needs them, ``x``."""
    compiled = compile_applies(mode, x.device)
    flat = x.reshape(-1, x.shape[-1])
    if torch.is_grad_enabled() and (table.requires_grad or x.requires_grad):
        out = LeanLookup.apply(flat, table, scheme, consts, compiled)
    else:
        out = run(_interpolate, compiled, flat, table, scheme, consts)
    return out.reshape(*x.shape[:-1], *out.shape[1:])
