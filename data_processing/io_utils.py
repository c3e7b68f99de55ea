"""Small helpers for writing files atomically (no half-written outputs)."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Optional, Tuple

import cv2
import numpy as np


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{path.suffix}")


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes via a temporary file beside ``path`` and an atomic rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Write JSON via a temporary file and an atomic rename."""
    tmp = _tmp_path(path)
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def save_npy(path: Path, array: np.ndarray) -> None:
    """Save a .npy file atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def write_image(path: Path, image: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an image (RGB or single-channel) atomically; JPEG or PNG by suffix.

    ``cv2.imencode`` is used instead of ``cv2.imwrite`` because the latter cannot write to
    non-ASCII paths on every platform.
    """
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    else:
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"could not encode image {path}")
    write_bytes(path, buf.tobytes())


def write_mask(path: Path, mask: np.ndarray) -> None:
    """Write a boolean mask as a 1-bit grayscale PNG (0/255 when read back), atomically."""
    write_bytes(path, _png(np.packbits(np.asarray(mask, dtype=bool), axis=1), mask.shape[1], bit_depth=1))


def _png(rows: np.ndarray, width: int, bit_depth: int) -> bytes:
    """A grayscale PNG of packed ``rows`` [H, bytes per row]: no row filters, zlib level 1. libpng's adaptive
    filtering made ``cv2.imencode`` take 1.9 ms for a 512x512 8-bit map whatever the compression level, this 0.7 ms;
    1-bit masks 0.15 ms against 0.46 (then 1.2 ms in a busy worker). Any PNG reader reads them."""
    height = rows.shape[0]
    data = np.zeros((height, rows.shape[1] + 1), np.uint8)  # each row: filter type 0, then its bytes
    data[:, 1:] = rows

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)  # grayscale, no interlace
    idat = zlib.compress(data.tobytes(), 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write_label_map(path: Path, labels: np.ndarray) -> None:
    """Write an 8-bit single-channel map (semantic class ids) as a grayscale PNG, atomically."""
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"a label map is [H, W] uint8, got {labels.dtype} {labels.shape}")
    write_bytes(path, _png(labels, labels.shape[1], bit_depth=8))


def read_mask(path: Path, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Read a mask written by ``write_mask`` (or any 0/255 image) as boolean [H, W], resized to ``size`` first."""
    return read_image(path, grayscale=True, size=size) > 127


def read_image(
    path: Path, grayscale: bool = False, size: Optional[Tuple[int, int]] = None, nearest: bool = False
) -> np.ndarray:
    """Read an image as RGB uint8 [H, W, 3] (or single-channel [H, W]); works with non-ASCII paths.

    The project's one image reader (dataset, training cache, backdrops, render, eval). ``size`` = (width, height)
    resizes when it differs: area-averaging when shrinking (like PIL's antialiased bilinear), bilinear when enlarging,
    or nearest-neighbour with ``nearest`` (label maps).
    """
    data = np.fromfile(str(path), dtype=np.uint8)
    flag = cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
    image = cv2.imdecode(data, flag)
    if image is None:
        raise OSError(f"could not read image {path}")
    if not grayscale:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
        if nearest:
            interpolation = cv2.INTER_NEAREST
        elif size[0] < image.shape[1]:
            interpolation = cv2.INTER_AREA
        else:
            interpolation = cv2.INTER_LINEAR
        image = cv2.resize(image, (int(size[0]), int(size[1])), interpolation=interpolation)
    return image
