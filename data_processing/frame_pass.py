"""dtnerf-process's per-frame work, in contiguous ranges of frames that worker processes run side by side.

:func:`track_frames` decodes, crops and resizes each frame of its range, tracks the face mesh and the person
(mediapipe), and writes the frame, its person mask and, when a face was found, its region masks, semantic map and
head-less image (the torso over the static background, which the background stage estimated beforehand): each frame
is decoded once and nothing is read back. Frames whose face is only interpolated over a gap get their masks and
head-less image afterwards (:func:`gap_frames`).

mediapipe is single-threaded, so on a 2-core machine two workers track twice as fast as one process; the audio
features are computed by a third (:func:`data_processing.audio_features.audio_windows_for_frames`) meanwhile. Each
range's tracker starts a few frames before the range (:attr:`TrackJob.warmup`), so its landmarks match a single
pass's to a fraction of a pixel.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from data_processing import dataset_layout as layout
from data_processing.errors import ProcessingError
from data_processing.face_tracking import CropBox
from data_processing.face_regions import NUM_LANDMARKS
from data_processing.video import VideoInfo

_progress = None
"""The queue a worker reports finished frames to (set by :func:`init_worker`); None in the main process."""


def init_worker(progress_queue) -> None:
    """Process-pool initializer: where workers report progress; mediapipe's start-up logging silenced."""
    import os  # noqa: PLC0415

    global _progress  # pylint: disable=global-statement
    _progress = progress_queue
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _report(frames: int) -> None:
    if _progress is not None and frames:
        _progress.put(frames)


def split(first: int, stop: int, parts: int) -> List[range]:
    """``first..stop-1`` in ``parts`` contiguous ranges of (nearly) equal length; empty ranges dropped."""
    bounds = np.linspace(first, stop, max(1, parts) + 1).round().astype(int)
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _write_frame_maps(
    root: Path, index: int, landmarks: np.ndarray, person: np.ndarray, image: np.ndarray, background: np.ndarray
) -> np.ndarray:
    """Face/mouth/eyes/torso masks, the semantic map and the head-less image of one frame; which mask kinds are
    non-empty."""
    from data_processing.io_utils import write_image, write_label_map, write_mask  # noqa: PLC0415
    from data_processing.masks import frame_masks, headless_image, semantic_map  # noqa: PLC0415

    masks = frame_masks(landmarks, person, image)
    for kind in layout.MASK_KINDS:
        if kind != "person":
            write_mask(layout.mask_path(root, kind, index), getattr(masks, kind))
    write_label_map(layout.semantics_path(root, index), semantic_map(landmarks, masks))
    write_image(layout.headless_path(root, index), headless_image(image, background, masks))
    return np.array([getattr(masks, kind).any() for kind in layout.MASK_KINDS])


@dataclass
class TrackJob:
    video: VideoInfo
    crop: CropBox
    size: int
    fps: float
    frames: range
    """Output frames of this worker."""
    root: Path
    """The dataset's staging folder."""
    max_faces: int = 2
    decode_threads: bool = False
    """FFmpeg's own decoding threads: only for a single worker (with several, the cores are busy already)."""
    warmup: int = 8
    """Frames before the range that the face tracker sees first (results dropped): mediapipe's first mesh comes from
    its detector and is off by up to 7 px at 512 px; once tracking it matches a single pass's to ~0.2 px."""


@dataclass
class TrackResult:
    frames: range
    decoded: int
    """Frames of the range that could be decoded (a truncated file ends early)."""
    landmarks: np.ndarray
    """[decoded, 478, 3] float32, NaN where no face was found."""
    nonempty: np.ndarray
    """Per mask kind, frames (with a face) where it is non-empty."""


def track_frames(job: TrackJob) -> TrackResult:
    import cv2  # noqa: PLC0415

    from data_processing.face_tracking import FaceTracker, quiet_native_stderr  # noqa: PLC0415
    from data_processing.io_utils import read_image, write_image, write_mask  # noqa: PLC0415
    from data_processing.video import iter_frames_at_rate, prefetch  # noqa: PLC0415

    size, root = job.size, job.root
    landmarks = np.full((len(job.frames), NUM_LANDMARKS, 3), np.nan, np.float32)
    background = read_image(root / layout.BACKGROUND)
    nonempty = np.zeros(len(layout.MASK_KINDS), np.int64)
    decoded, unreported = 0, 0
    first = max(0, job.frames.start - job.warmup)
    frames = iter_frames_at_rate(job.video, job.fps, job.frames.stop, start=first, threads=job.decode_threads)
    with quiet_native_stderr():  # mediapipe's start-up notes
        tracker = FaceTracker(max_faces=job.max_faces)
    with tracker, ThreadPoolExecutor(1) as writer:
        pending = []
        for k, frame in prefetch(frames):
            quiet = quiet_native_stderr() if decoded == 0 else contextlib.nullcontext()
            image = job.crop.apply(frame)
            if image.shape[0] != size:
                shrink = image.shape[0] > size
                image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
            image = np.ascontiguousarray(image)
            if k < job.frames.start:  # warming the tracker up on frames of the range before
                with quiet:
                    tracker.landmarks(image)
                continue
            with quiet:
                found = tracker.landmarks(image)
                person = tracker.person_mask(image)
            # Encoding and the masks run beside mediapipe (OpenCV releases the GIL).
            pending.append(writer.submit(write_image, layout.image_path(root, k), image))
            pending.append(writer.submit(write_mask, layout.mask_path(root, "person", k), person))
            if found is not None:
                landmarks[k - job.frames.start] = found
                pending.append(writer.submit(_write_frame_maps, root, k, found, person, image, background))
            if len(pending) > 48:  # bounded memory: frames stream to disk
                nonempty += _collect(pending)
            decoded += 1
            unreported += 1
            if unreported >= 8:
                _report(unreported)
                unreported = 0
        nonempty += _collect(pending)
    _report(unreported)
    return TrackResult(job.frames, decoded, landmarks[:decoded], nonempty)


def _collect(pending: list) -> np.ndarray:
    """Waits for the queued writes; the sum of the non-empty flags they returned."""
    total = np.zeros(len(layout.MASK_KINDS), np.int64)
    for future in pending:
        result = future.result()
        if isinstance(result, np.ndarray):
            total += result
    pending.clear()
    return total


def gap_frames(root: Path, landmarks: Dict[int, np.ndarray]) -> np.ndarray:
    """Masks, semantic maps and head-less images of the frames whose face was interpolated over a gap (``landmarks``:
    frame -> interpolated landmarks); the non-empty counts of their masks."""
    from data_processing.io_utils import read_image, read_mask  # noqa: PLC0415

    background = read_image(root / layout.BACKGROUND)
    nonempty = np.zeros(len(layout.MASK_KINDS), np.int64)
    for i, points in landmarks.items():
        image = read_image(layout.image_path(root, i))
        person = read_mask(layout.mask_path(root, "person", i))
        nonempty += _write_frame_maps(root, i, points, person, image, background)
    return nonempty


class Workers:
    """A pool of ``count`` spawned worker processes (0: run everything here, the serial path) that report progress.

    Spawned, not forked: the parent may already hold threads (mediapipe's, FFmpeg's) that a fork would copy in an
    unknown state. A spawned worker imports the ``__main__`` module again, so entry points keep their work under an
    ``if __name__ == "__main__":`` guard (``python -m data_processing`` does).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._pool = None
        self._queue = None

    def __enter__(self) -> "Workers":
        if self.count > 0:
            import multiprocessing  # noqa: PLC0415
            from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

            context = multiprocessing.get_context("spawn")
            self._queue = context.Queue()
            self._pool = ProcessPoolExecutor(self.count, mp_context=context, initializer=init_worker,
                                             initargs=(self._queue,))  # fmt: skip
        return self

    def __exit__(self, kind, *exc) -> None:
        if self._pool is not None:
            # An error or Ctrl-C: drop queued work; the workers end with their current job.
            self._pool.shutdown(wait=kind is None, cancel_futures=kind is not None)

    def submit(self, fn, *args):
        """``fn(*args)`` in a worker, as a future; here, done at once, on the serial path."""
        from concurrent.futures import Future  # noqa: PLC0415

        if self._pool is not None:
            return self._pool.submit(fn, *args)
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def map(self, fn, jobs: Sequence, on_progress) -> list:
        """``fn`` on every job, side by side; results in job order. ``on_progress(frames)`` sees the frames the
        workers report as they finish them."""
        global _progress  # pylint: disable=global-statement
        if self._pool is None:
            _progress, previous = _Direct(on_progress), _progress
            try:
                return [fn(job) for job in jobs]
            finally:
                _progress = previous
        return self.wait([self._pool.submit(fn, job) for job in jobs], on_progress)

    def wait(self, futures: list, on_progress) -> list:
        """The futures' results in order, once all are done, passing on the frames workers report meanwhile (and
        those reported before: the queue is always emptied, so no worker waits on a full pipe at exit)."""
        import queue  # noqa: PLC0415
        from concurrent.futures.process import BrokenProcessPool  # noqa: PLC0415

        if self._queue is None:  # the serial path: done already
            return [f.result() for f in futures]
        try:
            return self._wait(futures, on_progress, queue.Empty)
        except BrokenProcessPool as err:
            raise ProcessingError(
                f"a worker process stopped unexpectedly ({err}); run the same command again to resume, or with "
                "--workers 0 to work in this process only."
            ) from err

    def _wait(self, futures: list, on_progress, empty) -> list:
        while not all(f.done() for f in futures):
            try:
                on_progress(self._queue.get(timeout=0.2))
            except empty:
                pass
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                raise failed.exception()
        while not self._queue.empty():
            on_progress(self._queue.get_nowait())
        return [f.result() for f in futures]


class _Direct:
    """Progress reported straight to a callback (the serial path)."""

    def __init__(self, callback) -> None:
        self.put = callback
