"""``dtnerf-render --expressions-from``: the expression sequence (and the sound) of a driving video or dataset.

The driver's face mesh is tracked as ``dtnerf-process`` tracks it (same crop, size and tracker), or read from a
dataset's ``landmarks.npy``, resampled to the model's frame rate (nearest time), and projected into the trained
subject's expression basis (:mod:`data_processing.expression_transfer`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import numpy as np
from jaxtyping import Float, Int

from data_processing import dataset_layout as layout
from data_processing.errors import ProcessingError
from dtnerf_ns.scripts.render_errors import RenderError

Split = Literal["all", "train", "test"]

MIN_FACE_RATE = 0.5
"""A driving video needs a face in at least this fraction of its frames (the others are interpolated)."""


@dataclass
class ExpressionDrive:
    """One expression per output frame, in the trained subject's basis, and the driver's sound."""

    coefficients: Float[np.ndarray, "frames dim"]
    audio: Optional[Float[np.ndarray, "samples"]]
    """16 kHz mono, exactly as long as the frames; None when the driver has no sound."""
    transfer: str
    """``absolute`` (the subject's own dataset) or ``relative`` (see :mod:`data_processing.expression_transfer`)."""
    driver_frames: Int[np.ndarray, "frames"]
    """The driver frame shown at each output frame: a dataset frame index, or for a video the index of its frame at
    the model's rate (``k`` at ``k / fps`` s after its first frame)."""


def driver_kind(path: Path, split: Split) -> Literal["video", "dataset"]:
    """Whether ``path`` is a video file or a dtnerf-process dataset (checked before the model loads)."""
    if path.is_dir():
        if not layout.is_dataset(path):
            raise RenderError(f"--expressions-from {path}: a directory that is not a dtnerf-process dataset.")
        return "dataset"
    if not path.is_file():
        raise RenderError(f"--expressions-from {path}: no such file or dataset directory.")
    if split != "all":
        raise RenderError(f"--split chooses frames of a dataset; {path} is a video (drop --split).")
    return "video"


def _span(total: int, fps: float, start: float, duration: Optional[float], path: Path) -> Tuple[int, int]:
    """Output frames ``first..end-1`` (at ``fps``) of a driver of ``total`` such frames."""
    first = int(round(start * fps))
    end = total if duration is None else min(total, first + int(round(duration * fps)))
    if end <= first:
        raise RenderError(f"--expressions-from {path}: {total / fps:.2f} s long, nothing left after --start {start:g} s.")
    return first, end


def _audio_span(whole: Optional[np.ndarray], begin_seconds: float, num_frames: int, fps: float) -> Optional[np.ndarray]:
    """The sound of the frames (padded with silence where the track ends early)."""
    from data_processing.audio import SAMPLE_RATE  # noqa: PLC0415

    if whole is None:
        return None
    begin = int(round(begin_seconds * SAMPLE_RATE))
    length = int(round(num_frames / fps * SAMPLE_RATE))
    signal = whole[begin : begin + length]
    return np.pad(signal, (0, length - len(signal))).astype(np.float32)


def track_video(
    path: Path, fps: float, first: int, end: int, console=None
) -> Float[np.ndarray, "frames 478 3"]:
    """Face mesh of the video's frames ``first..end-1`` at ``fps``, found as dtnerf-process finds it (one square crop
    around the face, resized to the dataset size, mediapipe face mesh); gaps are interpolated."""
    import cv2  # noqa: PLC0415
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    from data_processing.face_tracking import FaceTracker, find_crop  # noqa: PLC0415
    from data_processing.frame_stages import interpolate_gaps  # noqa: PLC0415
    from data_processing.pipeline import ProcessingOptions  # noqa: PLC0415
    from data_processing.video import iter_frames_at_rate, prefetch, probe_video, sample_frames  # noqa: PLC0415

    options = ProcessingOptions()
    info = probe_video(path)
    try:
        crop = find_crop(sample_frames(info), info.width, info.height, options.crop_scale).crop
    except ProcessingError as err:
        raise RenderError(f"--expressions-from {path}: {err}") from err
    landmarks = []
    progress = Progress(
        TextColumn("[bold]track"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]:.1f} frames/s"),
        TimeRemainingColumn(), console=console, transient=False,
    )  # fmt: skip
    started = time.perf_counter()
    with FaceTracker() as tracker, progress:
        task = progress.add_task("track", total=end - first, rate=0.0)
        for k, frame in prefetch(iter_frames_at_rate(info, fps, end)):
            if k < first:
                continue
            image = crop.apply(frame)
            if image.shape[0] != options.size:
                shrink = image.shape[0] > options.size
                image = cv2.resize(image, (options.size,) * 2, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
            landmarks.append(tracker.landmarks(np.ascontiguousarray(image)))
            progress.update(task, advance=1, rate=len(landmarks) / (time.perf_counter() - started))
    found = np.array([lm is not None for lm in landmarks])
    if len(landmarks) == 0 or found.mean() < MIN_FACE_RATE or found.sum() < 2:
        raise RenderError(
            f"--expressions-from {path}: a face was found in only {int(found.sum())} of {len(landmarks)} frames; "
            "pass a video where one face is visible throughout."
        )
    return interpolate_gaps(landmarks)


def split_frames(root: Path, split: Split) -> Int[np.ndarray, "frames"]:
    """The dataset frames of ``split`` (``all``, or transforms.json's train / test file lists), in time order."""
    transforms = json.loads((root / layout.TRANSFORMS).read_text(encoding="utf-8"))
    frames = transforms["frames"]
    if split == "all":
        return np.arange(len(frames))
    files = set(transforms[f"{split}_filenames"])
    chosen = sorted(int(f["frame_index"]) for f in frames if f["file_path"] in files)
    if not chosen:
        raise RenderError(f"--expressions-from {root}: its {split} split has no frames.")
    return np.asarray(chosen)


def nearest_frames(
    times: Float[np.ndarray, "frames"], queries: Float[np.ndarray, "queries"]
) -> Int[np.ndarray, "queries"]:
    """Index of the time nearest to each query (``times`` ascending)."""
    if len(times) == 1:
        return np.zeros(len(queries), dtype=np.int64)
    right = np.clip(np.searchsorted(times, queries), 1, len(times) - 1)
    left = right - 1
    return np.where(queries - times[left] <= times[right] - queries, left, right).astype(np.int64)


def expressions_from(
    path: Path,
    subject_dir: Path,
    fps: float,
    start: float = 0.0,
    duration: Optional[float] = None,
    split: Split = "all",
    console=None,
) -> ExpressionDrive:
    """The driver's expressions at ``fps`` over its ``start``/``duration`` span, in the basis of the dataset at
    ``subject_dir``, with the span's sound.

    A dataset driver's span is timed from the first frame of its ``split``.
    """
    from data_processing.audio import load_audio  # noqa: PLC0415
    from data_processing.expression_transfer import ExpressionBasis, transfer  # noqa: PLC0415

    path = Path(path)
    subject = ExpressionBasis.load(subject_dir)
    if driver_kind(path, split) == "video":
        from data_processing.video import probe_video  # noqa: PLC0415

        info = probe_video(path)
        first, end = _span(info.num_output_frames(fps), fps, start, duration, path)
        landmarks = track_video(path, fps, first, end, console)
        coefficients, mode = transfer(landmarks, subject)
        audio = _audio_span(load_audio(path) if info.has_audio else None, first / fps, end - first, fps)
        return ExpressionDrive(coefficients, audio, mode, np.arange(first, end))

    chosen = split_frames(path, split)
    transforms = json.loads((path / layout.TRANSFORMS).read_text(encoding="utf-8"))
    driver_fps = float(transforms.get("dtnerf", {}).get("fps", 25.0))
    times = (chosen - chosen[0]) / driver_fps
    first, end = _span(int(np.floor((times[-1] + 1.0 / driver_fps) * fps + 1e-6)), fps, start, duration, path)
    frames = chosen[nearest_frames(times, np.arange(first, end) / fps)]
    used, inverse = np.unique(frames, return_inverse=True)  # relative offsets: each driver frame counted once
    landmarks = np.load(path / layout.LANDMARKS)[used]
    coefficients, mode = transfer(landmarks, subject, ExpressionBasis.load(path))
    wav = path / layout.AUDIO_WAV
    audio = _audio_span(load_audio(wav) if wav.is_file() else None, chosen[0] / driver_fps + first / fps, end - first, fps)
    return ExpressionDrive(coefficients[inverse], audio, mode, frames)
