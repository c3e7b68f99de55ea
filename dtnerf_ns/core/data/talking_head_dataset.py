"""Per-pixel talking-head dataset: the image plus the maps a method trains on (like nerfstudio's DepthDataset).

Each frame's pixels are read in their compact stored form (:meth:`TalkingHeadDataset.read_pixels`, all uint8: the RGB
image, region masks packed as bits of one byte, semantic labels) and turned into the values a model reads only per
batch (:func:`pixels_to_batch`). The head-less image (torso over the static background) is not stored per frame: it
is rebuilt per batch from the image, the torso bit and the one background image, exactly as dtnerf-process makes it
(:func:`data_processing.masks.headless_image`), so DT-NeRF's frames take 4 bytes a pixel instead of 7. The training cache keeps the stored form; nerfstudio's own per-image path
(``dataset[i]``: eval images, the viewer's thumbnails) converts one image at a time.

Per-frame conditioning (audio windows, blink, ...) is NOT returned here: the pixel sampler indexes every per-image
tensor as [y, x]; the model looks those arrays up by frame index instead.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import numpy.typing as npt
import torch
from jaxtyping import UInt8
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset
from torch import Tensor

from data_processing import dataset_layout as layout
from data_processing.io_utils import read_image, read_mask

# Batch keys (never "mask": nerfstudio reserves it to restrict ray sampling).
HEADLESS = "headless"
BACKGROUND = "background"
SEMANTICS = "semantics"
MASK_BITS: Dict[str, int] = {kind: 1 << i for i, kind in enumerate(layout.MASK_KINDS)}
"""Bit of each region mask in the packed ``masks`` byte."""


def mask_key(kind: str) -> str:
    """Batch key of a region mask, e.g. ``face_mask``."""
    return f"{kind}_mask"


FACE_MASK, MOUTH_MASK = mask_key("face"), mask_key("mouth")


def pixels_to_batch(
    stored: Mapping[str, Tensor],
    mask_kinds: Tuple[str, ...],
    background: Optional[Tensor] = None,
    rebuild_headless: bool = True,
) -> Dict[str, Tensor]:
    """Stored uint8 pixels (any leading shape) -> the values a model reads.

    ``image`` [..., 3] float in [0, 1]; with ``background`` (the static background's uint8 pixels at the same places):
    ``background`` [..., 3] and, with ``rebuild_headless``, ``headless`` [..., 3] (the torso's image pixels, elsewhere
    the background); each of ``mask_kinds`` as
    ``<kind>_mask`` [..., 1] float in {0, 1}; ``semantics`` [...] int64 labels. The one conversion, used per batch by
    the cache and per image by ``dataset[i]``.
    """
    batch: Dict[str, Tensor] = {"image": stored["image"].float() / 255.0}
    if background is not None:
        batch[BACKGROUND] = background.float() / 255.0
        if rebuild_headless:
            torso = ((stored["masks"] & MASK_BITS["torso"]) != 0)[..., None]
            batch[HEADLESS] = torch.where(torso, stored["image"], background).float() / 255.0
    if "masks" in stored:
        for kind in mask_kinds:
            batch[mask_key(kind)] = ((stored["masks"] & MASK_BITS[kind]) != 0).float()[..., None]
    if SEMANTICS in stored:
        batch[SEMANTICS] = stored[SEMANTICS].long()
    return batch


class TalkingHeadDataset(InputDataset):
    """Images resized to the cameras' resolution (dataparser ``downscale_factor`` x ``camera_res_scale_factor``) and
    the maps named in the dataparser's ``required_maps``: ``headless`` [H, W, 3], ``<kind>_mask`` [H, W, 1],
    ``semantics`` [H, W] (see :func:`pixels_to_batch`)."""

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0):
        super().__init__(dataparser_outputs, scale_factor)
        assert "pixel_map_files" in self.metadata, "TalkingHeadDataset needs the talking-head-data dataparser"
        self.pixel_map_files: Dict[str, list] = self.metadata["pixel_map_files"]
        self.mask_kinds: Tuple[str, ...] = tuple(k for k in layout.MASK_KINDS if k in self.pixel_map_files)
        self.rebuilds_headless = HEADLESS in self.pixel_map_files
        self.uses_background = self.rebuilds_headless or bool(self.metadata.get("uses_background"))
        self._background: Optional[np.ndarray] = None

    def size(self, image_idx: int) -> Tuple[int, int]:
        """(width, height) of the camera (after all rescaling)."""
        return int(self.cameras.width[image_idx, 0]), int(self.cameras.height[image_idx, 0])

    def bytes_per_frame(self) -> int:
        """Host memory one frame takes in its stored form."""
        width, height = self.size(0)
        channels = 3 + (1 if self.mask_kinds else 0) + (1 if SEMANTICS in self.pixel_map_files else 0)
        return width * height * channels

    def background(self) -> Optional[UInt8[np.ndarray, "h w 3"]]:
        """The static background at the cameras' resolution (None when neither it nor head-less images are asked
        for)."""
        if self.uses_background and self._background is None:
            self._background = read_image(self.metadata["background_file"], size=self.size(0))
        return self._background

    def read_pixels(self, image_idx: int, with_image: bool = True) -> Dict[str, UInt8[np.ndarray, "h w *c"]]:
        """One frame in its stored form: ``image`` [H, W, 3] (unless ``with_image`` is False), ``masks`` [H, W] (bit
        per region, see :data:`MASK_BITS`), ``semantics`` [H, W] labels; all uint8 at the camera's resolution."""
        size = self.size(image_idx)
        pixels: Dict[str, np.ndarray] = {}
        if with_image:
            pixels["image"] = read_image(self.image_filenames[image_idx], size=size)
        if self.mask_kinds:
            packed = np.zeros((size[1], size[0]), dtype=np.uint8)
            for kind in self.mask_kinds:
                packed |= read_mask(self.pixel_map_files[kind][image_idx], size=size).astype(np.uint8) * MASK_BITS[kind]
            pixels["masks"] = packed
        if SEMANTICS in self.pixel_map_files:
            pixels[SEMANTICS] = read_image(self.pixel_map_files[SEMANTICS][image_idx], grayscale=True, size=size, nearest=True)
        return pixels

    def get_numpy_image(self, image_idx: int) -> npt.NDArray[np.uint8]:
        return read_image(self.image_filenames[image_idx], size=self.size(image_idx))

    def get_metadata(self, data: Dict) -> Dict:
        stored = {k: torch.from_numpy(v) for k, v in self.read_pixels(data["image_idx"], with_image=False).items()}
        # nerfstudio has read the image already (uint8 / 255): back to its stored form rather than decoding it again.
        stored["image"] = (data["image"][..., :3] * 255.0).round().to(torch.uint8)
        background = self.background()
        background = None if background is None else torch.from_numpy(background)
        batch = pixels_to_batch(stored, self.mask_kinds, background, self.rebuilds_headless)
        del batch["image"]  # nerfstudio's own
        return batch
