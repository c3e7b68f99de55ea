"""dtnerf-process's stages on the video's frames (the :class:`~data_processing.pipeline.Pipeline` runs them): the crop
around the face, the static background, the tracking pass (:mod:`~data_processing.frame_pass`, side by side in worker
processes) and the masks of frames whose face was interpolated. Each takes the pipeline (its options, staging folder,
workers and earlier stages' results) and returns its stage's result for report.json."""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from data_processing import dataset_layout as layout
from data_processing.errors import ProcessingError
from data_processing.io_utils import save_npy, write_image

BACKGROUND_SAMPLES = 200
"""Frames, spread over the clip, from which the static background is estimated."""


def interpolate_gaps(landmarks: List[Optional[np.ndarray]]) -> np.ndarray:
    """Fill frames without a face by linear interpolation between the nearest found frames
    (or by copying the nearest one at the ends)."""
    found = np.array([lm is not None for lm in landmarks])
    idx = np.flatnonzero(found)
    shape = landmarks[idx[0]].shape
    stacked = np.stack([lm if lm is not None else np.zeros(shape, np.float32) for lm in landmarks])
    flat = stacked.reshape(len(landmarks), -1)
    for col in range(flat.shape[1]):
        flat[~found, col] = np.interp(np.flatnonzero(~found), idx, flat[idx, col])
    return flat.reshape(stacked.shape).astype(np.float32)


def longest_gap(found: np.ndarray) -> int:
    best = run = 0
    for f in found:
        run = 0 if f else run + 1
        best = max(best, run)
    return best


def crop(pipeline) -> dict:
    from data_processing.face_tracking import find_crop
    from data_processing.input_checks import small_face_note
    from data_processing.video import sample_frames

    opts = pipeline.options
    with pipeline.console.status("Finding the face region..."):
        found = find_crop(sample_frames(pipeline.info), pipeline.info.width, pipeline.info.height, opts.crop_scale)
    crop = found.crop
    pipeline.console.print(f"crop: {crop.size}x{crop.size} px at ({crop.x0}, {crop.y0}) of {pipeline.info.width}x{pipeline.info.height}, resized to {opts.size}")
    note = small_face_note(found.face_size, crop.size, opts.size, opts.crop_scale)
    if note:
        pipeline.console.print(f"[yellow]note:[/yellow] {note}")
    return {"x0": crop.x0, "y0": crop.y0, "size": crop.size, "sample_face_rate": found.face_rate,
            "face_size_px": round(found.face_size, 1), "most_faces": found.most_faces, "enlarged": note is not None}  # fmt: skip

def background(pipeline) -> dict:
    """The static background from frames spread over the clip: the pixels the person leaves free, averaged, the
    rest inpainted. Known before the frames are tracked, so the tracking pass writes the head-less images
    without reading any frame back (on the sample clips it differs from an average over every frame only where
    both are inpainted)."""
    import cv2

    from data_processing.face_tracking import FaceTracker, quiet_native_stderr
    from data_processing.masks import BackgroundAccumulator
    from data_processing.video import sample_frames

    crop, size = pipeline.crop_box(), pipeline.options.size
    accumulator = BackgroundAccumulator(size, size)
    samples = 0
    with quiet_native_stderr():
        tracker = FaceTracker(max_faces=1)
    with pipeline.console.status("Estimating the background..."), tracker, quiet_native_stderr():
        for frame in sample_frames(pipeline.info, BACKGROUND_SAMPLES):
            image = crop.apply(frame)
            if image.shape[0] != size:
                shrink = image.shape[0] > size
                image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
            image = np.ascontiguousarray(image)
            accumulator.add(image, tracker.person_mask(image))
            samples += 1
    background, filled = accumulator.result()
    write_image(pipeline.stage_dir / layout.BACKGROUND, background)
    return {"samples": samples, "filled_fraction": filled}

def track(pipeline) -> dict:
    """Every frame through :func:`~data_processing.frame_pass.track_frames`, its ranges side by side."""
    from data_processing.frame_pass import TrackJob, split, track_frames
    from data_processing.input_checks import check_upright

    root, size, opts = pipeline.stage_dir, pipeline.options.size, pipeline.options
    for sub in ["images"] + [f"masks/{k}" for k in layout.MASK_KINDS] + ["semantics", "headless"]:
        (root / sub).mkdir(parents=True, exist_ok=True)
    crop = pipeline.crop_box()
    max_faces = 1 if pipeline.result("crop").get("most_faces", 2) <= 1 else 2
    expected = pipeline.expected_frames(pipeline.info)
    ranges = split(0, expected, max(1, pipeline.workers))
    jobs = [TrackJob(pipeline.info, crop, size, opts.fps, frames, root, max_faces, len(ranges) == 1) for frames in ranges]
    with pipeline.progress_bar() as progress:
        results = pipeline.pool.map(track_frames, jobs, pipeline.progress_callback(progress, "frames", expected))
    n = 0
    for result in results:  # a truncated file: the frames up to the first one that did not decode
        n += result.decoded
        if result.decoded < len(result.frames):
            break
    if n < 16:
        raise ProcessingError(f"only {n} frames could be decoded from {pipeline.video}; at least 16 are needed.")
    landmarks = np.concatenate([r.landmarks for r in results])[:n]
    found = ~np.isnan(landmarks[:, 0, 0])
    rate = float(found.mean())
    gap = longest_gap(found)
    if rate < opts.min_face_rate or found.sum() < 2:
        raise ProcessingError(
            f"a face was found in only {int(found.sum())} of {n} frames ({100 * rate:.0f}%, at least {100 * opts.min_face_rate:.0f}% needed); "
            "use a clip where one face is visible throughout."
        )
    if gap > opts.max_gap_seconds * opts.fps:
        raise ProcessingError(f"no face for {gap} frames in a row ({gap / opts.fps:.1f} s, at most {opts.max_gap_seconds:g} s allowed); trim the clip to the part where the face is visible.")
    check_upright(landmarks[found], pipeline.video, opts.rotate)
    save_npy(root / layout.LANDMARKS, interpolate_gaps([lm if f else None for lm, f in zip(landmarks, found)]))
    save_npy(root / "face_found.npy", found)
    nonempty = sum(r.nonempty for r in results)
    return {"num_frames": n, "face_rate": rate, "frames_without_face": int((~found).sum()), "longest_gap": gap,
            "workers": max(1, pipeline.workers), "nonempty_with_face": [int(c) for c in nonempty]}  # fmt: skip


def gap_masks(pipeline) -> dict:
    """Masks and head-less images of the frames whose face was interpolated over a gap (the others have theirs)."""
    from data_processing.frame_pass import gap_frames

    root, n = pipeline.stage_dir, pipeline.num_frames
    landmarks = np.load(root / layout.LANDMARKS)
    gaps = {int(i): landmarks[i] for i in np.flatnonzero(~np.load(root / "face_found.npy"))}
    counts = np.asarray(pipeline.result("track")["nonempty_with_face"]) + gap_frames(root, gaps)
    return {"nonempty_fraction": {k: float(c / n) for k, c in zip(layout.MASK_KINDS, counts)}}
