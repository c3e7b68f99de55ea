"""Nerfstudio's VanillaPipeline, with its multi-device (DDP) wrapping made to work on CPUs too, and the model's say in
which pixels the datamanager draws (:meth:`TalkingHeadModel.ray_class_probabilities`) and whether it has a patch stage
(:attr:`TalkingHeadModel.uses_patch_stage`).

nerfstudio 1.1.5 wraps the model as ``DDP(model, device_ids=[local_rank])`` and calls
``dist.barrier(device_ids=[local_rank])``; both are for one-GPU-per-process (NCCL) and raise for a CPU model under
gloo. Here the model is wrapped the same way on CUDA and with ``device_ids=None`` on a CPU; everything else (gradient
averaging, rank-0 checkpoints, ``module_wrapper``) is nerfstudio's.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal, Optional, Type

import torch
import torch.distributed as dist
from nerfstudio.models.base_model import Model
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE
from torch.cuda.amp.grad_scaler import GradScaler
from torch.nn.parallel import DistributedDataParallel as DDP


@dataclass
class TalkingHeadPipelineConfig(VanillaPipelineConfig):
    """VanillaPipeline that also trains on several CPU processes (gloo)."""

    _target: Type = field(default_factory=lambda: TalkingHeadPipeline)
    """Target class to instantiate."""


class TalkingHeadPipeline(VanillaPipeline):
    """See module docstring."""

    def __init__(
        self,
        config: VanillaPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[GradScaler] = None,
    ):
        # Build unwrapped (world_size only sets the datamanager's loader workers, and the DDP wrap below).
        super().__init__(config, device, test_mode, world_size=1, local_rank=local_rank, grad_scaler=grad_scaler)
        datamanager_config = self.datamanager.config
        unused = not getattr(self._model, "uses_patch_stage", True)
        if unused and getattr(datamanager_config, "fine_stage_fraction", None) is not None:
            # Before the datamanager's callbacks validate the split: a stage the model does not use is not refused.
            datamanager_config.fine_stage_fraction = None
            CONSOLE.print(f"{type(self._model).__name__} has no use for a patch stage: every step trains on rays.")
        self.world_size = world_size
        if world_size > 1:
            on_gpu = torch.device(device).type == "cuda"
            ids = [local_rank] if on_gpu else None
            self._model = typing.cast(Model, DDP(self._model, device_ids=ids, find_unused_parameters=True))
            dist.barrier(device_ids=ids) if on_gpu else dist.barrier()

    def get_train_loss_dict(self, step: int):
        model = self.model  # unwrapped from DDP
        probabilities = model.ray_class_probabilities(step) if hasattr(model, "ray_class_probabilities") else None
        if probabilities is not None:
            self.datamanager.ray_class_probabilities = probabilities  # type: ignore[attr-defined]
        return super().get_train_loss_dict(step)
