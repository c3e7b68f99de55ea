"""Where each part of a processed dataset lives (one place, used by the writer and the readers).

A dataset directory::

    transforms.json          cameras in Nerfstudio's convention (fl_x, fl_y, cx, cy, w, h, frames[]
                             with file_path, transform_matrix, time in [0, 1], frame_index), the
                             split (train_filenames / val_filenames / test_filenames) and a "dtnerf"
                             block (fps, mouth box, files below)
    images/000000.jpg        RGB frames, size x size
    masks/<kind>/000000.png  0/255 masks; kinds: face, mouth, eyes, person, torso
    semantics/000000.png     uint8 labels, the 12 classes of semantic_classes.SEMANTIC_CLASSES
    headless/000000.jpg      the frame's torso over the background, head and neck removed
    background.png           static background
    audio.wav                16 kHz mono speech, matched to the video's length
    audio_features.npy       [N, 16, 29] float32: a 16-step window of 50 Hz features per frame
    landmarks.npy            [N, 478, 3] float32: face mesh in pixels (x, y, relative depth)
    canonical_face.npy       [478, 3] float32: the clip's mean face in world axes (face width = 1)
    blink.npy                [N] float32: eye closure, 0 open .. 1 closed
    expression.npy           [N, 76] float32: expression coefficients (PCA of pose-normalised landmarks)
    expression_basis.npz     mean / components / singular_values of that PCA
    report.json              what was done and measured (frames, fps, audio, detection rate, jitter, timings)
    contact_sheet.png        a picture of a few frames with landmarks, masks and semantic colours
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATASET_FORMAT = "dtnerf-dataset"
DATASET_VERSION = 3
"""3: audio aligned to the first video frame, upright frames, audio feature kinds (``data_processing.audio_features``)."""

MASK_KINDS = ("face", "mouth", "eyes", "person", "torso")

TRANSFORMS = "transforms.json"
REPORT = "report.json"
CONTACT_SHEET = "contact_sheet.png"
BACKGROUND = "background.png"
AUDIO_WAV = "audio.wav"
AUDIO_FEATURES = "audio_features.npy"
LANDMARKS = "landmarks.npy"
CANONICAL_FACE = "canonical_face.npy"
BLINK = "blink.npy"
EXPRESSION = "expression.npy"
EXPRESSION_BASIS = "expression_basis.npz"


def frame_name(index: int) -> str:
    return f"{index:06d}"


def image_path(root: Path, index: int) -> Path:
    return root / "images" / f"{frame_name(index)}.jpg"


def mask_path(root: Path, kind: str, index: int) -> Path:
    return root / "masks" / kind / f"{frame_name(index)}.png"


def semantics_path(root: Path, index: int) -> Path:
    return root / "semantics" / f"{frame_name(index)}.png"


def headless_path(root: Path, index: int) -> Path:
    return root / "headless" / f"{frame_name(index)}.jpg"


def frame_time(index: int, num_frames: int) -> float:
    """The camera ``time`` of frame ``index`` in transforms.json: ``index / (num_frames - 1)``, in [0, 1]."""
    return index / max(num_frames - 1, 1)


def frame_of_time(times, num_frames: int):
    """Frame index of each time (``round(time * (num_frames - 1))``, clamped): the inverse of :func:`frame_time`.

    The one place that maps times back to frames; at eval and in the viewer a camera's ``times`` is all that identifies
    its frame. Takes a float, a numpy array or a torch tensor and returns the same kind (int64).
    """
    if hasattr(times, "clamp"):  # torch tensor (no torch import here: data_processing does not need torch)
        return (times.float() * (num_frames - 1)).round().long().clamp(0, num_frames - 1)
    frames = np.clip(np.rint(np.asarray(times, dtype=np.float64) * (num_frames - 1)), 0, num_frames - 1)
    return frames.astype(np.int64) if frames.ndim else int(frames)


def is_dataset(root: Path) -> bool:
    """Whether ``root`` holds a dataset written by dtnerf-process."""
    import json

    path = Path(root) / REPORT
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == DATASET_FORMAT
    except (OSError, ValueError):
        return False
