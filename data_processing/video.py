"""Video probing and decoding at a target frame rate (PyAV)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np

from data_processing.errors import ProcessingError


@dataclass
class VideoInfo:
    """What we need to know about an input video before processing it."""

    path: Path
    width: int
    height: int
    fps: float
    duration: float
    """Seconds of video (from the stream or container header)."""
    has_audio: bool

    def num_output_frames(self, target_fps: float) -> int:
        """Frames we produce at ``target_fps``: one per ``1/target_fps`` seconds of video."""
        return max(0, int(np.floor(self.duration * target_fps + 1e-6)))


def _open(path: Path):
    import av

    if not path.exists():
        raise ProcessingError(f"video file not found: {path}")
    if not path.is_file():
        raise ProcessingError(f"not a file: {path}; pass a video file such as talking.mp4")
    try:
        return av.open(str(path))
    except Exception as exc:
        raise ProcessingError(f"cannot read {path} as a video ({type(exc).__name__}); pass an mp4/mov/mkv file.") from exc


def probe_video(path: Path) -> VideoInfo:
    """Read the header of a video file.

    Raises:
        ProcessingError: missing or unreadable file, or no video stream.
    """
    path = Path(path)
    container = _open(path)
    with container:
        if not container.streams.video:
            raise ProcessingError(f"{path} has no video stream; pass a video of the person talking.")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if fps <= 0:
            raise ProcessingError(f"{path}: cannot tell the frame rate of the video stream.")
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000.0
        elif stream.frames:
            duration = stream.frames / fps
        else:
            duration = 0.0
        width, height = stream.codec_context.width, stream.codec_context.height
        has_audio = bool(container.streams.audio)
    if duration <= 0 or width <= 0 or height <= 0:
        raise ProcessingError(f"{path}: the video stream is empty.")
    return VideoInfo(path=path, width=width, height=height, fps=fps, duration=duration, has_audio=has_audio)


def _decoded_frames(path: Path, keyframes_only: bool = False) -> Iterator[Tuple[float, "object"]]:
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # let FFmpeg use both cores for decoding
        if keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        fps = float(stream.average_rate or stream.guessed_rate)
        index = 0
        try:
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base) if frame.pts is not None else index / fps
                index += 1
                yield t, frame
        except Exception as exc:
            if index == 0:
                raise ProcessingError(f"cannot decode any frame of {path}: {exc}") from exc
            # A truncated file: keep what decoded (the caller checks the count).


def iter_frames_at_rate(
    info: VideoInfo, target_fps: float, max_frames: Optional[int] = None
) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield ``(output_index, rgb_uint8[H, W, 3])`` resampled to ``target_fps`` by timestamps.

    Output frame ``k`` is at ``k / target_fps`` seconds and shows the source frame whose
    timestamp is nearest to it, so 30 fps input becomes 25 fps by dropping frames evenly, and
    input already at the target rate maps one to one.
    """
    src_dt = 1.0 / info.fps
    k = 0
    first_t: Optional[float] = None
    prev_t, prev_frame = None, None
    limit = max_frames if max_frames is not None else info.num_output_frames(target_fps)
    for t, frame in _decoded_frames(info.path):
        if first_t is None:
            first_t = t  # streams may start at a non-zero timestamp
        t = t - first_t
        if prev_frame is not None:
            midpoint = 0.5 * (prev_t + t)
            while k < limit and k / target_fps < midpoint:
                yield k, prev_frame.to_ndarray(format="rgb24")
                k += 1
        if k >= limit:
            return
        prev_t, prev_frame = t, frame
    if prev_frame is None:
        return
    end = prev_t + src_dt
    while k < limit and k / target_fps < end - 1e-6:
        yield k, prev_frame.to_ndarray(format="rgb24")
        k += 1


def prefetch(iterator: Iterator, depth: int = 8) -> Iterator:
    """Run ``iterator`` in a background thread (FFmpeg decoding releases the GIL), ``depth`` items ahead."""
    import queue
    import threading

    q: "queue.Queue" = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def worker():
        try:
            for item in iterator:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as exc:  # hand errors to the consumer
            q.put(exc)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a worker waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def sample_frames(info: VideoInfo, max_samples: int = 40) -> Iterator[np.ndarray]:
    """A few RGB frames spread over the clip, for finding the face region cheaply.

    Decodes keyframes only when there are enough of them, otherwise every n-th frame.
    """
    keyframes = [f for _, f in _decoded_frames(info.path, keyframes_only=True)]
    if len(keyframes) >= min(10, max_samples):
        step = max(1, len(keyframes) // max_samples)
        for frame in keyframes[::step]:
            yield frame.to_ndarray(format="rgb24")
        return
    total = max(1, int(info.duration * info.fps))
    step = max(1, total // max_samples)
    for i, (_, frame) in enumerate(_decoded_frames(info.path)):
        if i % step == 0:
            yield frame.to_ndarray(format="rgb24")
