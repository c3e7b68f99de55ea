"""SAHS-NeRF's dynamic weighted ray sampling, the model's half (paper Eq. 3): ``p_i = w_i L_i / sum_j w_j L_j``.

``L_i`` is a running mean of class i's per-ray loss (photometric + semantic), kept as a persistent buffer so it is
saved in checkpoints and restored on resume. The authors' code recomputes ``p`` from each batch alone: a class that
draws no ray in a batch gets loss 0, hence probability 0, and is never drawn again; and its probabilities are saved but
not restored. Here a class without rays keeps its running loss, and a floor keeps every class drawable. The
datamanager draws the rays (``core/data/pixel_sampling.py``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from jaxtyping import Float, Int64
from torch import Tensor, nn

from dtnerf_ns.core.data.talking_head_datamanager import TalkingHeadConfigError


def class_weight_vector(class_names: Sequence[str], weights: Mapping[str, float]) -> Float[Tensor, "classes"]:
    """ω per class, by name (1 where not given). Unknown names are an error."""
    unknown = sorted(set(weights) - set(class_names))
    if unknown:
        raise TalkingHeadConfigError(
            f"--pipeline.model.class-weights: unknown semantic classes {unknown}; the classes are {list(class_names)}"
        )
    return torch.tensor([float(weights.get(name, 1.0)) for name in class_names])


class DynamicRayWeights(nn.Module):
    """Running per-class losses and the sampling probabilities they give.

    Args:
        class_weights: ω per class.
        momentum: weight of a new batch's class mean in the running mean.
        floor: lowest probability of any class (before renormalising).
    """

    def __init__(self, class_weights: Float[Tensor, "classes"], momentum: float = 0.1, floor: float = 0.01) -> None:
        super().__init__()
        if not 0.0 < momentum <= 1.0 or not 0.0 <= floor * len(class_weights) < 1.0:
            raise TalkingHeadConfigError(
                f"--pipeline.model.class-loss-momentum must be in (0, 1] and --pipeline.model.class-probability-floor "
                f"below 1/classes (got {momentum}, {floor})"
            )
        self.momentum, self.floor = momentum, floor
        self.register_buffer("class_weights", class_weights.float(), persistent=False)
        self.register_buffer("class_loss", torch.ones(len(class_weights)))  # persistent: in checkpoints

    @torch.no_grad()
    def update(self, per_ray_loss: Float[Tensor, "rays"], labels: Int64[Tensor, "rays"]) -> None:
        """Folds one batch's per-class mean losses into the running means (classes without rays keep theirs)."""
        k = len(self.class_loss)
        sums = torch.zeros(k, device=per_ray_loss.device).index_add_(0, labels, per_ray_loss.detach().float())
        counts = torch.bincount(labels, minlength=k)[:k]
        mean = sums / counts.clamp(min=1)
        blended = (1 - self.momentum) * self.class_loss + self.momentum * mean
        self.class_loss.copy_(torch.where(counts > 0, blended, self.class_loss))

    def probabilities(self) -> Float[Tensor, "classes"]:
        """Eq. 3 with the floor."""
        p = self.class_weights * self.class_loss.clamp(min=0)
        p = p / p.sum().clamp(min=1e-12)
        p = p.clamp(min=self.floor)
        return p / p.sum()
