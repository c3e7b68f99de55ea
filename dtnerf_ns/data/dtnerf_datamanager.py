"""DT-NeRF datamanager: nerfstudio's VanillaDataManager over :class:`DTNeRFDataset`, plus patch sampling for the
fine stage.

Coarse stage: random rays, a ``mouth_ray_fraction`` of them on mouth-mask pixels. Fine stage (``step >= fine_stage_start``, which the model
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
from torch import Tensor

from dtnerf_ns.data.dtnerf_dataparser import DTNeRFDataParserConfig, DTNeRFDatasetError
from dtnerf_ns.data.dtnerf_dataset import MOUTH_MASK, DTNeRFDataset


@dataclass
class DTNeRFDataManagerConfig(VanillaDataManagerConfig):
    """DT-NeRF datamanager (random rays, then mouth / random patches in the fine stage)."""

    _target: Type = field(default_factory=lambda: DTNeRFDataManager)
    """Target class to instantiate."""
    dataparser: DTNeRFDataParserConfig = field(default_factory=DTNeRFDataParserConfig)
    """The dtnerf-data dataparser."""
    mouth_ray_fraction: float = 0.25
    """Coarse stage: fraction of each batch's rays drawn from mouth-mask pixels (the rest anywhere). The lips cover
    ~1-2% of a portrait: with uniform rays a small batch (dtnerf-small: 512) gives them a handful per step, too few to
    learn a different mouth per frame, and the mouth stops following the audio. (ER-NeRF samples ~65k rays per step,
    enough at any fraction; its lip fine-tuning stage also samples the lips' box.) 0 gives nerfstudio's sampler."""
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

    @staticmethod
    def _gather(image_batch: Dict, cam: Tensor, y: Tensor, x: Tensor) -> Dict:
        """The batch of pixels (cam, y, x) of the image batch, with nerfstudio's ``indices`` (image index, y, x)."""
        batch = {
            key: value[cam.to(value.device), y.to(value.device), x.to(value.device)]
            for key, value in image_batch.items()
            if key != "image_idx" and value is not None
        }
        batch["indices"] = torch.stack([image_batch["image_idx"].cpu()[cam], y, x], dim=-1)
        return batch

    def _mouth_pixels(self, mouth: Tensor) -> Tensor:
        """(image, y, x) of every mouth-mask pixel of the image batch, [M, 3]; cached (the images stay in memory)."""
        key = (mouth.data_ptr(), tuple(mouth.shape))
        if getattr(self, "_mouth_pixels_key", None) != key:
            self._mouth_pixels_key = key
            self._mouth_pixels_cache = torch.nonzero(mouth[..., 0] > 0.5).cpu()
        return self._mouth_pixels_cache

    def _sample_rays(self, image_batch: Dict, num_rays: int) -> Dict:
        """Random pixels of random images, ``mouth_ray_fraction`` of them on the mouth mask."""
        images = image_batch["image"]
        num_images, height, width = images.shape[:3]
        cam = torch.randint(0, num_images, (num_rays,))
        y, x = torch.randint(0, height, (num_rays,)), torch.randint(0, width, (num_rays,))
        mouth = image_batch.get(MOUTH_MASK)
        pixels = self._mouth_pixels(mouth) if mouth is not None else torch.zeros(0, 3, dtype=torch.long)
        num_mouth = min(num_rays, int(self.config.mouth_ray_fraction * num_rays)) if len(pixels) else 0
        if num_mouth:
            pick = pixels[torch.randint(0, len(pixels), (num_mouth,))]
            cam[:num_mouth], y[:num_mouth], x[:num_mouth] = pick[:, 0], pick[:, 1], pick[:, 2]
        return self._gather(image_batch, cam, y, x)

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
        batch = self._gather(image_batch, c, y, x)
        batch["patch_size"] = size
        return batch, size

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        coarse = self.fine_stage_start is None or step < self.fine_stage_start
        if coarse and self.config.mouth_ray_fraction <= 0:
            return super().next_train(step)
        self.train_count += 1
        image_batch = next(self.iter_train_image_dataloader)
        if coarse:
            batch = self._sample_rays(image_batch, self.get_train_rays_per_batch())
        else:
            batch, _ = self._sample_patches(image_batch, self.get_train_rays_per_batch())
        ray_bundle = self.train_ray_generator(batch["indices"])
        return ray_bundle, batch
