"""The files that describe a finished dataset: ``transforms.json`` (Nerfstudio cameras plus our ``dtnerf`` block) and
the contact sheet (a picture to check by eye)."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
from jaxtyping import Float

from data_processing import dataset_layout as layout
from data_processing.io_utils import read_image, read_mask


def mouth_box(canonical_face: Float[np.ndarray, "478 3"]) -> Tuple[List[float], List[float]]:
    """Mouth box in world units: the lips' extent, grown to cover jaw and chin motion while talking."""
    from data_processing.face_regions import LIPS_OUTER

    lips = canonical_face[LIPS_OUTER]
    width = float(np.ptp(lips[:, 0]))
    return (lips.min(0) - np.array([0.25, 0.35, 0.3]) * width).tolist(), (lips.max(0) + np.array([0.25, 0.25, 0.3]) * width).tolist()


def transforms_json(
    root: Path,
    c2w: Float[np.ndarray, "n 4 4"],
    focal: float,
    size: int,
    fps: float,
    train: Sequence[int],
    test: Sequence[int],
    mouth_aabb: Tuple[List[float], List[float]],
    audio_window: Sequence[int],
    audio_feature_kind: str,
) -> dict:
    """Nerfstudio's camera file (head fixed, camera moving; per-frame ``time``; the split) with the ``dtnerf`` block
    that the talking-head dataparser reads."""
    n = len(c2w)
    rel = lambda p: str(p.relative_to(root)).replace("\\", "/")
    frames = [
        {"file_path": rel(layout.image_path(root, i)), "transform_matrix": c2w[i].tolist(), "time": layout.frame_time(i, n), "frame_index": i}
        for i in range(n)
    ]
    return {
        "camera_model": "OPENCV",
        "fl_x": focal,
        "fl_y": focal,
        "cx": size / 2,
        "cy": size / 2,
        "w": size,
        "h": size,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "frames": frames,
        "train_filenames": [frames[i]["file_path"] for i in train],
        "val_filenames": [frames[i]["file_path"] for i in test],
        "test_filenames": [frames[i]["file_path"] for i in test],
        "dtnerf": {
            "format": layout.DATASET_FORMAT,
            "version": layout.DATASET_VERSION,
            "fps": fps,
            "num_frames": n,
            "train_frames": [0, len(train)],
            "test_frames": [len(train), n],
            "mouth_aabb": [list(mouth_aabb[0]), list(mouth_aabb[1])],
            "audio_features": layout.AUDIO_FEATURES,
            "audio_window": list(audio_window),
            "audio_feature_kind": audio_feature_kind,
            "blink": layout.BLINK,
            "expression": layout.EXPRESSION,
            "background": layout.BACKGROUND,
            "headless_dir": "headless",
            "semantics_dir": "semantics",
            "masks_dir": "masks",
        },
    }  # fmt: skip


def frame_levels_db(wav_path: Path, num_frames: int) -> Float[np.ndarray, "frames"]:
    """Speech level per frame (RMS in dB of the dataset's audio)."""
    with wave.open(str(wav_path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    chunks = np.array_split(pcm, num_frames)
    return np.array([20 * np.log10(np.sqrt(np.mean(c**2)) + 1e-5) if len(c) else -100.0 for c in chunks])


def write_contact_sheet(
    root: Path, c2w: Float[np.ndarray, "n 4 4"], n: int, train: Sequence[int], test: Sequence[int]
) -> None:
    """Four frames with their masks and semantics, and the per-frame signals over the clip."""
    from data_processing.contact_sheet import make_contact_sheet
    from data_processing.masks import frame_masks

    landmarks = np.load(root / layout.LANDMARKS)
    yaw = np.degrees(np.arctan2(c2w[:, 0, 3], c2w[:, 2, 3]))
    person_masks = lambda i: read_mask(layout.mask_path(root, "person", i))
    make_contact_sheet(
        root,
        sorted({0, n // 3, (2 * n) // 3, test[len(test) // 2]}),
        landmarks,
        lambda i: frame_masks(landmarks[i], person_masks(i), read_image(layout.image_path(root, i))),
        lambda i: read_image(layout.semantics_path(root, i), grayscale=True),
        [
            ("speech level (dB)", frame_levels_db(root / layout.AUDIO_WAV, n), (0, 120, 0)),
            ("blink", np.load(root / layout.BLINK), (0, 0, 220)),
            ("camera yaw (deg)", yaw, (200, 0, 0)),
            ("expression #1", np.load(root / layout.EXPRESSION)[:, 0], (150, 0, 150)),
        ],
        n,
        len(train),
        root / layout.CONTACT_SHEET,
    )
