"""A contact sheet: a few frames with landmarks, masks and semantic colours, plus the signals."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from data_processing import dataset_layout as layout
from data_processing.io_utils import read_image, write_image
from data_processing.masks import FrameMasks
from data_processing.semantic_classes import CLASS_COLOURS, SEMANTIC_CLASSES

PANEL = 256
MASK_COLOURS = {"face": (0, 200, 0), "mouth": (255, 0, 0), "eyes": (0, 120, 255), "torso": (160, 0, 200)}


def _label(img: np.ndarray, text: str) -> np.ndarray:
    cv2.rectangle(img, (0, 0), (img.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(img, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _panel(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, (PANEL, PANEL), interpolation=cv2.INTER_AREA)


def _plot(series: Sequence[tuple], width: int, height: int, n: int, split_at: int) -> np.ndarray:
    """Line plots of per-frame signals, each scaled to its own range, with the split marked."""
    img = np.full((height, width, 3), 255, np.uint8)
    cv2.line(img, (int(split_at / max(n - 1, 1) * (width - 1)), 0), (int(split_at / max(n - 1, 1) * (width - 1)), height), (180, 180, 180), 1)
    y = 14
    for name, values, colour in series:
        v = np.asarray(values, np.float64)
        lo, hi = float(v.min()), float(v.max())
        norm = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
        pts = np.stack([np.linspace(0, width - 1, len(v)), (height - 6) - norm * (height - 30)], 1).astype(np.int32)
        cv2.polylines(img, [pts], False, colour, 1, cv2.LINE_AA)
        cv2.putText(img, f"{name} [{lo:.2f}, {hi:.2f}]", (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
        y += 14
    cv2.putText(img, "test split ->", (int(split_at / max(n - 1, 1) * (width - 1)) + 4, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (120, 120, 120), 1)
    return img


def make_contact_sheet(
    root: Path,
    frames: Sequence[int],
    landmarks: np.ndarray,
    masks_for: "callable",
    semantics_for: "callable",
    signals: Sequence[tuple],
    num_frames: int,
    split_at: int,
    out_path: Path,
) -> None:
    """Rows of [frame + landmarks | masks | semantic map | head-less image], then signal plots.

    ``masks_for(i) -> FrameMasks`` and ``semantics_for(i) -> uint8 map`` read frame i's results.
    """
    rows = []
    for i in frames:
        image = read_image(layout.image_path(root, i))
        lm_img = image.copy()
        r = max(1, image.shape[0] // 300)
        for x, y in landmarks[i, :, :2]:
            cv2.circle(lm_img, (int(x), int(y)), r, (0, 255, 0), -1)
        m: FrameMasks = masks_for(i)
        overlay = image.astype(np.float32)
        for kind, colour in MASK_COLOURS.items():
            sel = getattr(m, kind)
            overlay[sel] = 0.5 * overlay[sel] + 0.5 * np.array(colour)
        sem = semantics_for(i)
        sem_rgb = np.array(CLASS_COLOURS, np.uint8)[sem]
        sem_img = (0.35 * image + 0.65 * sem_rgb).astype(np.uint8)
        headless = read_image(layout.headless_path(root, i))
        rows.append(
            np.concatenate(
                [
                    _label(_panel(lm_img), f"frame {i}: landmarks"),
                    _label(_panel(overlay.astype(np.uint8)), "face/mouth/eyes/torso"),
                    _label(_panel(sem_img), "semantic classes"),
                    _label(_panel(headless), "head-less (train bg)"),
                ],
                axis=1,
            )
        )
    width = 4 * PANEL
    legend = np.full((40, width, 3), 255, np.uint8)
    x = 6
    for name, colour in zip(SEMANTIC_CLASSES, CLASS_COLOURS):
        cv2.rectangle(legend, (x, 8), (x + 12, 20), colour, -1)
        cv2.putText(legend, name, (x + 15, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
        x += 15 + 7 * len(name) + 12
    bg = read_image(root / layout.BACKGROUND)
    plot = _plot(signals, width - PANEL, PANEL, num_frames, split_at)
    bottom = np.concatenate([_label(_panel(bg), "static background"), plot], axis=1)
    write_image(out_path, np.concatenate(rows + [legend, bottom], axis=0))
