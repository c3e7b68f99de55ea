"""Per-pixel DT-NeRF dataset: the image plus its headless background and face / mouth masks (like DepthDataset).

Per-frame conditioning (audio windows, blink) is NOT returned here: the pixel sampler indexes every per-image tensor
as [y, x]; the model looks those arrays up by frame index instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import numpy.typing as npt
import torch
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset
from PIL import Image

# Batch keys added by this dataset. (Never "mask": nerfstudio reserves it to restrict ray sampling.)
HEADLESS = "headless"
FACE_MASK = "face_mask"
MOUTH_MASK = "mouth_mask"


def read_resized(path: Path, size: Tuple[int, int], mode: str = "RGB", resample=Image.Resampling.BILINEAR) -> np.ndarray:
    """Read an image (PIL ``mode``) resized to ``size`` = (width, height) when it differs."""
    pil = Image.open(path).convert(mode)
    if pil.size != size:
        pil = pil.resize(size, resample=resample)
    return np.asarray(pil)


class DTNeRFDataset(InputDataset):
    """Images resized to the cameras' resolution (dataparser ``downscale_factor`` x ``camera_res_scale_factor``),
    with ``headless`` [H, W, 3] float in [0, 1] and ``face_mask`` / ``mouth_mask`` [H, W, 1] float in {0, 1}."""

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0):
        super().__init__(dataparser_outputs, scale_factor)
        for key in ("headless_filenames", "face_mask_filenames", "mouth_mask_filenames"):
            assert key in self.metadata, f"DTNeRFDataset needs dataparser metadata['{key}'] (use the dtnerf-data parser)"
        self.headless_filenames = self.metadata["headless_filenames"]
        self.face_mask_filenames = self.metadata["face_mask_filenames"]
        self.mouth_mask_filenames = self.metadata["mouth_mask_filenames"]

    def _size(self, image_idx: int) -> Tuple[int, int]:
        """(width, height) of the camera (after all rescaling)."""
        return int(self.cameras.width[image_idx, 0]), int(self.cameras.height[image_idx, 0])

    def _read(self, path: Path, image_idx: int, mode: str, resample) -> np.ndarray:
        return read_resized(path, self._size(image_idx), mode, resample)

    def get_numpy_image(self, image_idx: int) -> npt.NDArray[np.uint8]:
        return self._read(self.image_filenames[image_idx], image_idx, "RGB", Image.Resampling.BILINEAR)

    def get_metadata(self, data: Dict) -> Dict:
        idx = data["image_idx"]
        headless = self._read(self.headless_filenames[idx], idx, "RGB", Image.Resampling.BILINEAR)
        # Masks: 1-bit / 0-255 PNGs, foreground where > 127 (bilinear then threshold when resized).
        face = self._read(self.face_mask_filenames[idx], idx, "L", Image.Resampling.BILINEAR) > 127
        mouth = self._read(self.mouth_mask_filenames[idx], idx, "L", Image.Resampling.BILINEAR) > 127
        return {
            HEADLESS: torch.from_numpy(headless.astype(np.float32) / 255.0),
            FACE_MASK: torch.from_numpy(face.astype(np.float32))[..., None],
            MOUTH_MASK: torch.from_numpy(mouth.astype(np.float32))[..., None],
        }
