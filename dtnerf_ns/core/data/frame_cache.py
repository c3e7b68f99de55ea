"""The training frames' pixels in host memory, as uint8, for ray and patch sampling.

Why not nerfstudio's ``CacheDataloader``: it collates every image and every extra map as float32 (12 bytes per RGB
pixel) and moves them to the device, so a 5-minute 512x512 clip (6,500 training frames) needs >50 GB of host memory
and >25 GB of GPU memory before the first step, and it reloads its image subsets synchronously. Here frames stay in
their stored form (:meth:`TalkingHeadDataset.read_pixels`, 4 bytes per pixel for DT-NeRF), on the CPU; only the
sampled rays are converted to float and moved to the device, so GPU memory does not grow with the number of frames.

Frames that fit ``capacity`` are all loaded once. Otherwise nerfstudio's ``train_num_images_to_sample_from`` /
``train_num_times_to_repeat_images`` scheme applies: a random subset of ``capacity`` frames is sampled from, and every
``refresh_every`` steps it is replaced by the next subset, which a background thread has decoded meanwhile (double
buffering: two subsets in memory, training never waits for the disk).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from jaxtyping import Int64, UInt8
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor

from data_processing.semantic_classes import SEMANTIC_CLASSES
from dtnerf_ns.core.data.talking_head_dataset import MASK_BITS, TalkingHeadDataset, pixels_to_batch
from dtnerf_ns.core.host_memory import return_freed_memory


@dataclass
class CachedFrames:
    """One loaded set of frames."""

    image_indices: Int64[Tensor, "frames"]
    """Dataset image index of each cache slot."""
    stored: Dict[str, UInt8[Tensor, "frames h w *c"]]
    """Pixels in stored form (see TalkingHeadDataset.read_pixels), one row per slot."""
    class_counts: Dict[str, Int64[Tensor, "classes"]]
    """Pixels of each class of each class map (see :func:`pixel_classes`), counted once per load for class-weighted
    sampling."""

    @property
    def num_frames(self) -> int:
        return len(self.image_indices)

    def labels(self, class_map: str, flat: Int64[Tensor, "n"]) -> Int64[Tensor, "n"]:
        """Class of pixels given by flat index (slot * H * W + y * W + x) in ``class_map``."""
        if class_map == "semantics":
            return self.stored["semantics"].reshape(-1)[flat].long()
        return ((self.stored["masks"].reshape(-1)[flat] & MASK_BITS[class_map]) != 0).long()


def num_classes(class_map: str) -> int:
    """Classes of a class map: the 12 semantic labels, or (outside, inside) of a region mask such as ``mouth``."""
    return len(SEMANTIC_CLASSES) if class_map == "semantics" else 2


def _count_classes(stored: Dict[str, Tensor], class_map: str, chunk_frames: int = 64) -> Tensor:
    # Chunked: bincount converts to int64 (8 bytes a pixel) and a 5-minute clip holds billions of pixels.
    counts = torch.zeros(num_classes(class_map), dtype=torch.long)
    source = stored["semantics"] if class_map == "semantics" else stored["masks"]
    for start in range(0, len(source), chunk_frames):
        chunk = source[start : start + chunk_frames].reshape(-1)
        labels = chunk if class_map == "semantics" else (chunk & MASK_BITS[class_map]) != 0
        counts += torch.bincount(labels.long(), minlength=len(counts))[: len(counts)]
    return counts


class FrameCache:
    """uint8 frames of a dataset for sampling (see module docstring).

    Args:
        dataset: The dataset (all images at one resolution).
        capacity: Most frames held at once (all of them when the dataset has no more).
        refresh_every: Steps between subsets when not all frames fit (<= 0: keep the first subset).
        class_maps: Class maps whose class sizes are counted for class-weighted sampling: ``"semantics"`` or mask
            kinds (e.g. ``("mouth",)``).
        num_threads: Decoding threads (JPEG/PNG decoding releases the GIL).
        label: Name shown on the progress bar.
        seed: Seed of the subset choice.
    """

    def __init__(
        self,
        dataset: TalkingHeadDataset,
        capacity: int,
        refresh_every: int = -1,
        class_maps: Sequence[str] = (),
        num_threads: int = 4,
        label: str = "frames",
        seed: Optional[int] = None,
    ) -> None:
        self.dataset = dataset
        self.num_dataset_frames = len(dataset)
        self.capacity = max(1, min(int(capacity), self.num_dataset_frames))
        self.rotates = self.capacity < self.num_dataset_frames and refresh_every > 0
        self.refresh_every = int(refresh_every)
        self.class_maps = tuple(class_maps)
        width, height = dataset.size(0)
        self.height, self.width = height, width
        background = dataset.background()
        self.background = None if background is None else torch.from_numpy(background)  # [H, W, 3], one for all frames
        self._rng = np.random.default_rng(seed)
        self._pool = ThreadPoolExecutor(max_workers=max(1, num_threads), thread_name_prefix="frame-decode")
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-prefetch") if self.rotates else None
        self._next: Optional[Future] = None
        self._loaded_at_step = 0
        self.current = self._load(self._pick(), label=label)
        self._start_prefetch()

    # ------------------------------------------------------------------ loading
    def _pick(self) -> np.ndarray:
        if self.capacity >= self.num_dataset_frames:
            return np.arange(self.num_dataset_frames)
        return np.sort(self._rng.choice(self.num_dataset_frames, self.capacity, replace=False))

    def _load(self, indices: np.ndarray, label: Optional[str] = None) -> CachedFrames:
        """Decodes ``indices`` (in parallel) into freshly allocated uint8 storage; a progress bar when ``label``."""
        first = self.dataset.read_pixels(int(indices[0]))
        stored = {key: torch.empty((len(indices), *value.shape), dtype=torch.uint8) for key, value in first.items()}

        def put(slot: int, pixels: Dict[str, np.ndarray]) -> None:
            for key, value in pixels.items():
                stored[key][slot] = torch.from_numpy(value)

        put(0, first)
        rest = self._pool.map(self.dataset.read_pixels, (int(i) for i in indices[1:]))
        if label is None:
            for slot, pixels in enumerate(rest, start=1):
                put(slot, pixels)
        else:
            columns = (TextColumn(f"[bold]Loading {label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, transient=True) as progress:
                task = progress.add_task(label, total=len(indices), completed=1)
                for slot, pixels in enumerate(rest, start=1):
                    put(slot, pixels)
                    progress.advance(task)
        class_counts = {name: _count_classes(stored, name) for name in self.class_maps}
        return_freed_memory()  # the decoding buffers (~0.4 GB for 1,100 frames at 512x512) would stay in the heap
        return CachedFrames(torch.as_tensor(indices, dtype=torch.long), stored, class_counts)

    def _start_prefetch(self) -> None:
        if self._prefetcher is not None and self._next is None:
            self._next = self._prefetcher.submit(self._load, self._pick())

    def step(self, step: int) -> None:
        """Called every training step: swaps in the prefetched subset when one is due and ready (never waits)."""
        if not self.rotates or step - self._loaded_at_step < self.refresh_every:
            return
        if self._next is not None and self._next.done():
            self.current = self._next.result()  # the old subset is freed once no batch refers to it
            self._next = None
            self._loaded_at_step = step
            self._start_prefetch()

    # ------------------------------------------------------------------ access
    def gather(
        self, slots: Int64[Tensor, "rays"], y: Int64[Tensor, "rays"], x: Int64[Tensor, "rays"], frames: Optional[CachedFrames] = None
    ) -> Dict[str, Tensor]:
        """The batch of pixels (slot, y, x): uint8 gathered, then converted (:func:`pixels_to_batch`), plus
        nerfstudio's ``indices`` [rays, 3] (dataset image index, y, x). All on the CPU."""
        frames = frames or self.current
        flat = (slots * self.height + y) * self.width + x
        pixels = {key: value.reshape(-1, *value.shape[3:])[flat] for key, value in frames.stored.items()}
        background = None if self.background is None else self.background[y, x]
        batch = pixels_to_batch(pixels, self.dataset.mask_kinds, background, self.dataset.rebuilds_headless)
        batch["indices"] = torch.stack([frames.image_indices[slots], y, x], dim=-1)
        return batch

    def nbytes(self) -> int:
        """Host memory held by the current frames (the prefetched subset, when rotating, takes as much again)."""
        return sum(t.numel() * t.element_size() for t in self.current.stored.values())

    def close(self) -> None:
        for pool in (self._pool, self._prefetcher):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
