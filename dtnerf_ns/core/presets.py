"""Pieces every method's presets share (imported by the method-config entry points: configuration classes only)."""

from __future__ import annotations

import torch
from nerfstudio.configs.base_config import MachineConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig

from dtnerf_ns.core.schedulers import FloatExponentialDecaySchedulerConfig


def machine() -> MachineConfig:
    """CUDA when there is a GPU, else CPU (nerfstudio's default "cuda" would fail on a CPU-only machine)."""
    return MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu")


def optimizer_group(rate: float, max_steps: int) -> dict:
    """Adam at ``rate``, decaying exponentially to a tenth over ``max_steps``. Float-valued schedule: checkpoints
    must load with torch's weights_only=True (see schedulers.py)."""
    return {
        "optimizer": AdamOptimizerConfig(lr=rate, eps=1e-15),
        "scheduler": FloatExponentialDecaySchedulerConfig(lr_final=rate * 0.1, max_steps=max_steps),
    }
