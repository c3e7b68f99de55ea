"""Exponential-decay learning-rate schedule whose learning rates are Python floats.

nerfstudio 1.1.5's ExponentialDecayScheduler returns numpy scalars, which end up in checkpoints (optimizer lr,
scheduler _last_lr); torch >= 2.6 loads checkpoints with ``weights_only=True`` and refuses numpy scalars, so
``eval_setup`` / ns-render / ns-eval could not reload our checkpoints. Same schedule, float values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from nerfstudio.engine.schedulers import ExponentialDecayScheduler, ExponentialDecaySchedulerConfig
from torch.optim import Optimizer, lr_scheduler


@dataclass
class FloatExponentialDecaySchedulerConfig(ExponentialDecaySchedulerConfig):
    """nerfstudio's exponential decay (with optional warm-up), checkpoint-safe (float learning rates)."""

    _target: Type = field(default_factory=lambda: FloatExponentialDecayScheduler)


class FloatExponentialDecayScheduler(ExponentialDecayScheduler):
    """ExponentialDecayScheduler with float-valued learning rates."""

    config: FloatExponentialDecaySchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        scheduler = super().get_scheduler(optimizer, lr_init)
        assert isinstance(scheduler, lr_scheduler.LambdaLR)
        scheduler.lr_lambdas = [(lambda step, f=f: float(f(step))) for f in scheduler.lr_lambdas]
        for group in optimizer.param_groups:
            group["lr"] = float(group["lr"])
        scheduler._last_lr = [float(lr) for lr in scheduler._last_lr]  # noqa: SLF001
        return scheduler
