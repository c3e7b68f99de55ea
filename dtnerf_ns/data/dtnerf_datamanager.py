"""DT-NeRF datamanager: nerfstudio's VanillaDataManager over :class:`DTNeRFDataset`, plus patch sampling for the
fine stage.

Coarse stage: random rays (nerfstudio's pixel sampler). Fine stage (``step >= fine_stage_start``, which the model
sets from its config through a training callback): square ``patch_size`` patches, a ``mouth_patch_fraction`` of them
centred on a random mouth-mask pixel, the rest anywhere in the image, so the model can apply LPIPS to patches (the
paper's L_fine). Rays come patch-major and row-major: ``batch["patch_size"] = P`` and the model reshapes
[num_patches * P * P] -> [num_patches, P, P]. (Own sampler rather than PatchPixelSampler: that one cannot bias patches
towards the mouth, and it uses the reserved ``mask`` key.)

An invalid dataset stops here with one line on stderr (``DTNeRFDatasetError``) instead of a traceback.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Dict, Literal, Optional, Tuple, Type, Union

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig

from dtnerf_ns.data.dtnerf_dataparser import DTNeRFDataParserConfig, DTNeRFDatasetError
from dtnerf_ns.data.dtnerf_dataset import MOUTH_MASK, DTNeRFDataset


@dataclass
class DTNeRFDataManagerConfig(VanillaDataManagerConfig):
    """DT-NeRF datamanager (random rays, then mouth / random patches in the fine stage)."""

    _target: Type = field(default_factory=lambda: DTNeRFDataManager)
    """Target class to instantiate."""
    dataparser: DTNeRFDataParserConfig = field(default_factory=DTNeRFDataParserConfig)
    """The dtnerf-data dataparser."""
    fine_patch_size: int = 32
    """Side of the square patches sampled in the fine stage (LPIPS is computed per patch)."""
    mouth_patch_fraction: float = 0.5
    """Fraction of fine-stage patches centred on the mouth (the rest are placed at random)."""


class DTNeRFDataManager(VanillaDataManager[DTNeRFDataset]):
    """See module docstring."""

    config: DTNeRFDataManagerConfig

    def __init__(
        self,
        config: DTNeRFDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ):
        # Step from which next_train samples patches; None = never. Set by DTNeRFModel's training callback.
        self.fine_stage_start: Optional[int] = None
        try:
            super().__init__(config, device, test_mode, world_size, local_rank, **kwargs)
        except DTNeRFDatasetError as err:
            # One clear line instead of a traceback through nerfstudio's trainer.
            print(f"dtnerf-data: invalid dataset: {err}", file=sys.stderr, flush=True)
            sys.exit(1)

    def _sample_patches(self, image_batch: Dict, num_rays: int) -> Tuple[Dict, int]:
        images = image_batch["image"]
        num_images, height, width = images.shape[:3]
        size = max(1, min(self.config.fine_patch_size, height, width))
        num_patches = max(1, num_rays // (size * size))
        # Expected fraction (also with a single patch): floor(f * n + U[0, 1)).
        num_mouth = int(self.config.mouth_patch_fraction * num_patches + float(torch.rand(1)))
        cam = torch.randint(0, num_images, (num_patches,))
        centres = torch.stack(
            [torch.randint(0, height, (num_patches,)), torch.randint(0, width, (num_patches,))], dim=-1
        )
        mouth = image_batch.get(MOUTH_MASK)
        for i in range(min(num_mouth, num_patches) if mouth is not None else 0):
            pixels = torch.nonzero(mouth[cam[i], ..., 0] > 0.5).cpu()
            if len(pixels) > 0:
                centres[i] = pixels[torch.randint(0, len(pixels), (1,))[0]]
        top = (centres[:, 0] - size // 2).clamp(0, height - size)
        left = (centres[:, 1] - size // 2).clamp(0, width - size)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        y = (top[:, None, None] + yy).flatten()
        x = (left[:, None, None] + xx).flatten()
        c = cam[:, None, None].expand(-1, size, size).flatten()
        batch = {
            key: value[c.to(value.device), y.to(value.device), x.to(value.device)]
            for key, value in image_batch.items()
            if key != "image_idx" and value is not None
        }
        indices = torch.stack([image_batch["image_idx"].cpu()[c], y, x], dim=-1)
        batch["indices"] = indices
        batch["patch_size"] = size
        return batch, size

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        if self.fine_stage_start is None or step < self.fine_stage_start:
            return super().next_train(step)
        self.train_count += 1
        image_batch = next(self.iter_train_image_dataloader)
        batch, _ = self._sample_patches(image_batch, self.get_train_rays_per_batch())
        ray_bundle = self.train_ray_generator(batch["indices"])
        return ray_bundle, batch
