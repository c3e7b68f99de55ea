"""Compositing a rendered head over its backdrop, and where backdrops come from.

A method's field renders premultiplied colour ``rgb_head`` and opacity ``accumulation``; the frame is
``rgb_head + (1 - accumulation) * backdrop``. DT-NeRF renders the head only and its backdrop is the frame's head-less
image (torso over background: ER-NeRF composites its head over torso + background the same way); a method that renders
head and torso (SAHS-NeRF) uses the static background. The backdrop is a screen-space image resized to the camera:
exact for the dataset's cameras, approximate for other viewer poses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Tuple, TypeVar

import cv2
import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from data_processing import dataset_layout
from data_processing.io_utils import read_image, read_mask

BackdropKind = Literal["headless", "background"]
ImageT = TypeVar("ImageT", Tensor, np.ndarray)


def composite(rgb_head: ImageT, accumulation: ImageT, backdrop: ImageT) -> ImageT:
    """``rgb_head + (1 - accumulation) * backdrop`` (rgb_head is premultiplied); torch or numpy, any shape [..., 3]."""
    return rgb_head + (1.0 - accumulation) * backdrop


class Backdrops:
    """Reads the backdrop of a dataset frame at a given size, as float [H, W, 3] in [0, 1] (last one cached).

    Args:
        data_dir: the processed dataset (None: no backdrops; frames are composited over black).
        kind: "headless" (the frame's head-less image) or "background" (the static background).
    """

    def __init__(self, data_dir: Optional[Path], kind: BackdropKind) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.kind = kind
        self._last: Optional[Tuple[Tuple[int, int, int], np.ndarray]] = None

    def path(self, frame: int) -> Optional[Path]:
        if self.data_dir is None:
            return None
        if self.kind == "background":
            return self.data_dir / dataset_layout.BACKGROUND
        return dataset_layout.headless_path(self.data_dir, frame)

    def read(self, frame: int, size: Tuple[int, int]) -> Optional[Float[np.ndarray, "h w 3"]]:
        """Backdrop of ``frame`` at ``size`` = (width, height); None when the file is not there."""
        key = (frame if self.kind == "headless" else -1, int(size[0]), int(size[1]))
        last = self._last  # one read: reader threads may replace it meanwhile
        if last is not None and last[0] == key:
            return last[1]
        path = self.path(frame)
        if path is None or not path.is_file():
            return None
        image = read_image(path, size=size).astype(np.float32) / 255.0
        self._last = (key, image)
        return image

    def head_region(self, frame: int, size: Tuple[int, int], margin: float = 0.06) -> Optional[Bool[np.ndarray, "h w"]]:
        """Where a render over this frame's backdrop can differ from the backdrop: the person less the torso (head,
        neck, hair; the whole person for the "background" kind), grown by ``margin`` x width for a jaw that opens
        further than in this frame. None when the masks are not there."""
        if self.data_dir is None:
            return None
        person = dataset_layout.mask_path(self.data_dir, "person", frame)
        torso = dataset_layout.mask_path(self.data_dir, "torso", frame)
        if not person.is_file() or (self.kind == "headless" and not torso.is_file()):
            return None
        region = read_mask(person, size=size)
        if self.kind == "headless":
            region &= ~read_mask(torso, size=size)
        radius = max(1, int(round(margin * size[0])))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        return cv2.dilate(region.astype(np.uint8), kernel) > 0

    def tensor(self, frame: int, size: Tuple[int, int], device: torch.device) -> Optional[Float[Tensor, "h w 3"]]:
        image = self.read(frame, size)
        return None if image is None else torch.from_numpy(image).to(device)
