"""Talking-head datamanager: nerfstudio's VanillaDataManager over :class:`TalkingHeadDataset`, with frames kept as
uint8 on the CPU (:class:`~dtnerf_ns.core.data.frame_cache.FrameCache`) and class-weighted ray or patch batches
(:mod:`~dtnerf_ns.core.data.pixel_sampling`).

Training has up to two stages: random rays (per semantic class with the model's probabilities when it gives them,
else a ``mouth_ray_fraction`` of them on the lips), then, from
``fine_stage_fraction`` of ``--max-num-iterations`` on, square patches (``batch["patch_size"] = P``) for image-space
losses (DT-NeRF's LPIPS fine-tune). The datamanager owns the switch; a model tells the stages apart by
``patch_size`` in the batch.

An invalid dataset or setting stops here with one line on stderr instead of a traceback through nerfstudio's trainer.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type, Union

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.utils.dataloaders import FixedIndicesEvalDataloader, RandIndicesEvalDataloader
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.model_components.ray_generators import RayGenerator
from torch import Tensor
from nerfstudio.utils.rich_utils import CONSOLE

from dtnerf_ns.core.data.frame_cache import FrameCache
from dtnerf_ns.core.data.pixel_sampling import region_fraction_probabilities, sample_patches, sample_rays
from dtnerf_ns.core.data.talking_head_dataparser import TalkingHeadDataParserConfig, TalkingHeadDatasetError
from dtnerf_ns.core.data.talking_head_dataset import TalkingHeadDataset
from dtnerf_ns.core.host_memory import mmap_large_blocks


class TalkingHeadConfigError(ValueError):
    """A datamanager setting that cannot work; the message is one line saying what to change."""


@dataclass
class TalkingHeadDataManagerConfig(VanillaDataManagerConfig):
    """Talking-head datamanager: uint8 frame cache, mouth-weighted rays, then patches in the fine stage."""

    _target: Type = field(default_factory=lambda: TalkingHeadDataManager)
    """Target class to instantiate."""
    dataparser: TalkingHeadDataParserConfig = field(default_factory=TalkingHeadDataParserConfig)
    """The talking-head-data dataparser (registered also as dtnerf-data)."""
    pixel_maps: Tuple[str, ...] = ("headless", "face", "mouth")
    """Per-pixel maps in each batch besides the image: "headless", "background", "semantics" or mask kinds (face, mouth, eyes,
    person, torso). Cached frames take 3 bytes per pixel for the image, 1 for all masks together (a head-less image
    is rebuilt from the torso mask and the background), 1 for semantics."""
    mouth_ray_fraction: float = 0.25
    """Ray stage: fraction of each batch's rays drawn from mouth-mask pixels (the rest anywhere); 0 = uniform."""
    fine_stage_fraction: Optional[float] = None
    """Fraction of --max-num-iterations after which batches are square patches (the fine stage); None = never. A fine
    stage that would never run (fraction not in (0, 1), or starting at or after the last step) is refused."""
    fine_patch_size: int = 32
    """Side of the square patches sampled in the fine stage (LPIPS is computed per patch)."""
    mouth_patch_fraction: float = 0.5
    """Fraction of fine-stage patches centred on the mouth (the rest are placed at random)."""
    cache_memory_gb: float = 2.0
    """Host memory for cached training frames (uint8). When all frames fit they are loaded once; otherwise training
    samples from rotating subsets (two in memory: one in use, the next being decoded) that share this budget."""
    train_num_images_to_sample_from: int = -1
    """Frames held at once for training; -1: as many as cache_memory_gb allows (all of them when they fit)."""
    train_num_times_to_repeat_images: int = -1
    """Steps between subsets when not all frames are held; -1: 250."""
    eval_num_images_to_sample_from: int = -1
    """Test frames held for eval ray batches; -1: at most 16."""
    loader_threads: int = 4
    """Threads decoding frames into the cache."""
    cpu_mmap_threshold_mb: float = 4.0
    """Training on the CPU: host memory blocks of this many MB or more are mapped on their own and returned to the OS
    when freed, so the process stays near its live memory (glibc's heap otherwise creeps to ~2x it); costs up to
    ~1.4x step time for large presets. 0 keeps glibc's default. See ``dtnerf_ns/core/host_memory.py``."""


class TalkingHeadDataManager(VanillaDataManager[TalkingHeadDataset]):
    """See module docstring."""

    config: TalkingHeadDataManagerConfig

    def __init__(
        self,
        config: TalkingHeadDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ):
        self.train_cache: Optional[FrameCache] = None
        self.eval_cache: Optional[FrameCache] = None
        self.fine_stage_start: Optional[int] = None  # set from the trainer's max_num_iterations (callbacks)
        self.ray_class_probabilities: Optional[Tensor] = None
        """Per semantic class (labels of ``semantics``): when set (by the pipeline, from a model that weights its
        rays by class, e.g. SAHS-NeRF's dynamic weighted sampling), training rays follow it instead of the mouth
        fraction."""
        try:
            fraction = config.fine_stage_fraction
            if fraction is not None and not 0.0 < fraction < 1.0:
                raise TalkingHeadConfigError(
                    f"--pipeline.datamanager.fine-stage-fraction {fraction} must be in (0, 1) (or None for no fine stage)"
                )
            config.dataparser.required_maps = tuple(config.pixel_maps)
            super().__init__(config, device, test_mode, world_size, local_rank, **kwargs)
        except (TalkingHeadDatasetError, TalkingHeadConfigError) as err:
            print(f"talking-head-data: {err}", file=sys.stderr, flush=True)
            sys.exit(1)

    def create_train_dataset(self) -> TalkingHeadDataset:
        return TalkingHeadDataset(self.train_dataparser_outputs, scale_factor=self.config.camera_res_scale_factor)

    def create_eval_dataset(self) -> TalkingHeadDataset:
        outputs = self.dataparser.get_dataparser_outputs(split=self.test_split)
        return TalkingHeadDataset(outputs, scale_factor=self.config.camera_res_scale_factor)

    # ------------------------------------------------------------------ set-up (caches are built on first use)
    def setup_train(self) -> None:
        if torch.device(self.device).type == "cpu":
            mmap_large_blocks(self.config.cpu_mmap_threshold_mb)
        self.train_ray_generator = RayGenerator(self.train_dataset.cameras.to(self.device))

    def setup_eval(self) -> None:
        self.eval_ray_generator = RayGenerator(self.eval_dataset.cameras.to(self.device))
        # Whole test images for eval and the viewer, read one at a time (nerfstudio's loaders).
        self.fixed_indices_eval_dataloader = FixedIndicesEvalDataloader(input_dataset=self.eval_dataset, device=self.device)
        self.eval_dataloader = RandIndicesEvalDataloader(input_dataset=self.eval_dataset, device=self.device)

    def train_cache_capacity(self) -> int:
        """Frames held at once (see ``train_num_images_to_sample_from`` and ``cache_memory_gb``)."""
        if self.config.train_num_images_to_sample_from > 0:
            return self.config.train_num_images_to_sample_from
        per_frame = self.train_dataset.bytes_per_frame()
        budget = int(self.config.cache_memory_gb * 1e9)
        if per_frame * len(self.train_dataset) <= budget:
            return len(self.train_dataset)
        return max(1, budget // (2 * per_frame))  # double-buffered

    def _train_frames(self) -> FrameCache:
        if self.train_cache is None:
            capacity = self.train_cache_capacity()
            repeat = self.config.train_num_times_to_repeat_images
            self.train_cache = FrameCache(
                self.train_dataset,
                capacity=capacity,
                refresh_every=repeat if repeat > 0 else 250,
                class_maps=tuple(m for m in ("mouth", "semantics") if m in self.config.pixel_maps),
                num_threads=self.config.loader_threads,
                label=f"{min(capacity, len(self.train_dataset))} training frames",
            )
            held = self.train_cache.nbytes() * (2 if self.train_cache.rotates else 1) / 1e9
            rotation = (
                f", a new random subset every {self.train_cache.refresh_every} steps" if self.train_cache.rotates else ""
            )
            CONSOLE.print(
                f"Training frames: {self.train_cache.capacity} of {len(self.train_dataset)} in memory (uint8, "
                f"{held:.2f} GB{rotation})"
            )
        return self.train_cache

    def _eval_frames(self) -> FrameCache:
        if self.eval_cache is None:
            wanted = self.config.eval_num_images_to_sample_from
            self.eval_cache = FrameCache(
                self.eval_dataset, capacity=wanted if wanted > 0 else 16, num_threads=self.config.loader_threads, seed=0
            )
        return self.eval_cache

    # ------------------------------------------------------------------ stages
    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        """Resolves the fine stage's first step from the trainer's --max-num-iterations, refusing a split that leaves
        either stage without a step."""
        trainer = training_callback_attributes.trainer
        fraction = self.config.fine_stage_fraction
        if fraction is not None and trainer is not None:
            total = int(trainer.config.max_num_iterations)
            start = int(round(fraction * total))
            if start < 1 or start >= total:
                stage = "coarse" if start < 1 else "fine"
                print(
                    f"talking-head-data: the {stage} stage would never run: --pipeline.datamanager.fine-stage-fraction "
                    f"{fraction} of --max-num-iterations {total} starts the fine stage at step {start}; change the "
                    f"iterations or the fraction.",
                    file=sys.stderr,
                    flush=True,
                )
                sys.exit(1)
            self.fine_stage_start = start
        return []

    def in_fine_stage(self, step: int) -> bool:
        return self.fine_stage_start is not None and step >= self.fine_stage_start

    # ------------------------------------------------------------------ batches
    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        self.train_count += 1
        cache = self._train_frames()
        cache.step(step)
        frames, num_rays = cache.current, self.config.train_num_rays_per_batch
        if self.in_fine_stage(step):
            c = self.config
            slots, y, x, size = sample_patches(
                frames, cache.height, cache.width, num_rays, c.fine_patch_size, "mouth", c.mouth_patch_fraction
            )
            batch = cache.gather(slots, y, x, frames)
            batch["patch_size"] = size
        else:
            class_map, probabilities = None, None
            if self.ray_class_probabilities is not None and "semantics" in frames.class_counts:
                class_map, probabilities = "semantics", self.ray_class_probabilities
            elif self.config.mouth_ray_fraction > 0 and "mouth" in frames.class_counts:
                class_map = "mouth"
                probabilities = region_fraction_probabilities(self.config.mouth_ray_fraction, frames.class_counts["mouth"])
            pixels = sample_rays(frames, cache.height, cache.width, num_rays, class_map, probabilities)
            batch = cache.gather(*pixels, frames=frames)
        return self.train_ray_generator(batch["indices"]), batch

    def next_eval(self, step: int) -> Tuple[RayBundle, Dict]:
        self.eval_count += 1
        cache = self._eval_frames()
        slots, y, x = sample_rays(cache.current, cache.height, cache.width, self.config.eval_num_rays_per_batch)
        batch = cache.gather(slots, y, x)
        return self.eval_ray_generator(batch["indices"]), batch

    def get_train_rays_per_batch(self) -> int:
        return self.config.train_num_rays_per_batch

    def get_eval_rays_per_batch(self) -> int:
        return self.config.eval_num_rays_per_batch
