"""Volume-rendered semantics (paper Eqs. 6 and 13): per-sample class probabilities weighted like colour, with the
background behind each ray labelled class 0 (as the authors' code composites its fixed background)."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int64
from torch import Tensor

BACKGROUND_CLASS = 0


def render_semantics(
    weights: Float[Tensor, "*rays samples 1"], logits: Float[Tensor, "*rays samples classes"]
) -> Float[Tensor, "*rays classes"]:
    """Per-ray class probabilities: sum of weight x softmax(logits), plus the uncovered rest for the background.
    Sums to one per ray (the weights sum to at most one)."""
    probabilities = torch.sum(weights * torch.softmax(logits.float(), dim=-1), dim=-2)
    uncovered = (1.0 - weights.sum(dim=-2)).clamp(min=0.0)
    return torch.cat(
        [probabilities[..., :BACKGROUND_CLASS], probabilities[..., BACKGROUND_CLASS : BACKGROUND_CLASS + 1] + uncovered,
         probabilities[..., BACKGROUND_CLASS + 1 :]], dim=-1,
    )  # fmt: skip


def semantic_cross_entropy(probabilities: Float[Tensor, "rays classes"], labels: Int64[Tensor, "rays"]) -> Float[Tensor, "rays"]:
    """Per-ray cross-entropy of the rendered probabilities against the label map (0 for a certain, right class)."""
    picked = probabilities.gather(-1, labels[..., None])[..., 0]
    return -torch.log(picked.clamp(min=1e-6, max=1.0))
