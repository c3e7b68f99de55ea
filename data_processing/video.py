"""Video probing and decoding at a target frame rate (PyAV).

Frames come out upright, as a player shows them: phones store portrait video sideways and say
how to turn it in the container (a display matrix, or the legacy ``rotate`` tag), so every
decoder here applies that rotation and :func:`probe_video` reports the displayed size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np
from jaxtyping import UInt8

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
    rotation: int = 0
    """Clockwise degrees (0, 90, 180 or 270) that turn the stored picture upright; ``width`` and
    ``height`` are already those of the upright picture, and the decoders here apply it."""

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


def _video_stream(container):
    """The first real video stream; cover art in audio files (an attached picture) does not count."""
    import av

    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _has_display_matrix(frame) -> bool:
    side_data = frame.side_data
    # PyAV 18.1 made a frame's side data a mapping from its type to the entry; 18.0 gave a sequence of entries.
    entries = side_data.values() if hasattr(side_data, "values") else side_data
    return any(getattr(getattr(sd, "type", None), "name", "") == "DISPLAYMATRIX" for sd in entries)


def _display_rotation(stream, frame) -> int:
    """Clockwise degrees (0/90/180/270) that turn ``stream``'s stored picture upright.

    The display matrix (mp4/mov track matrix, mkv projection) is what players follow; FFmpeg attaches
    it to each decoded ``frame``, whose ``rotation`` is its counter-clockwise angle. Without one, the
    legacy ``rotate`` stream tag (clockwise, as FFmpeg < 6 exported it; mkv keeps it as a tag) is used.
    Angles are rounded to a quarter turn; mirroring in a display matrix is ignored.
    """
    if frame is not None and _has_display_matrix(frame):
        return (-round(frame.rotation / 90) * 90) % 360
    tag = {k.lower(): v for k, v in stream.metadata.items()}.get("rotate")
    try:
        return (round(float(tag) / 90) * 90) % 360
    except (TypeError, ValueError):
        return 0


def _first_frame(container, stream):
    """The first decodable frame of ``stream``, or None (the decoders report decoding errors themselves)."""
    try:
        return next(iter(container.decode(stream)), None)
    except Exception:
        return None


def probe_video(path: Path) -> VideoInfo:
    """Read the header of a video file (and decode its first frame, which carries the display rotation).

    Raises:
        ProcessingError: missing or unreadable file, or no video stream.
    """
    path = Path(path)
    container = _open(path)
    with container:
        stream = _video_stream(container)
        if stream is None:
            raise ProcessingError(f"{path} has no video stream; pass a video of the person talking.")
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
        rotation = _display_rotation(stream, _first_frame(container, stream))
    if duration <= 0 or width <= 0 or height <= 0:
        raise ProcessingError(f"{path}: the video stream is empty.")
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        path=path, width=width, height=height, fps=fps, duration=duration, has_audio=has_audio, rotation=rotation
    )


def _upright(frame, rotation: int) -> UInt8[np.ndarray, "height width 3"]:
    """A decoded frame as RGB, turned ``rotation`` degrees clockwise (np.rot90 turns counter-clockwise)."""
    rgb = frame.to_ndarray(format="rgb24")
    if rotation % 360 == 0:
        return rgb
    # Contiguous, as callers (OpenCV, torch.from_numpy) expect; rot90 alone returns a strided view.
    return np.ascontiguousarray(np.rot90(rgb, k=-(rotation // 90)))


def _decoded_frames(path: Path, keyframes_only: bool = False) -> Iterator[Tuple[float, "object"]]:
    """``(presentation time in s, av.VideoFrame)`` in display order, as stored (not yet rotated)."""
    container = _open(path)
    with container:
        stream = _video_stream(container)
        if stream is None:
            raise ProcessingError(f"{path} has no video stream; pass a video of the person talking.")
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


def first_frame_time(path: Path) -> Optional[float]:
    """Presentation time (s) of the first video frame: time 0 of :func:`iter_frames_at_rate`'s output.

    None when the file has no video stream or none of it decodes.
    """
    frames = _decoded_frames(Path(path))
    try:
        t, _ = next(frames)
    except (ProcessingError, StopIteration):
        return None
    finally:
        frames.close()
    return t


def iter_frames_at_rate(
    info: VideoInfo, target_fps: float, max_frames: Optional[int] = None
) -> Iterator[Tuple[int, UInt8[np.ndarray, "height width 3"]]]:
    """Yield ``(output_index, rgb_uint8[H, W, 3])`` resampled to ``target_fps`` by timestamps, upright.

    Output frame ``k`` is at ``k / target_fps`` seconds after the first video frame and shows
    the source frame whose timestamp is nearest to it, so 30 fps input becomes 25 fps by dropping
    frames evenly, and input already at the target rate maps one to one.
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
                yield k, _upright(prev_frame, info.rotation)
                k += 1
        if k >= limit:
            return
        prev_t, prev_frame = t, frame
    if prev_frame is None:
        return
    end = prev_t + src_dt
    while k < limit and k / target_fps < end - 1e-6:
        yield k, _upright(prev_frame, info.rotation)
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


def sample_frames(info: VideoInfo, max_samples: int = 40) -> Iterator[UInt8[np.ndarray, "height width 3"]]:
    """A few upright RGB frames spread over the clip, for finding the face region cheaply.

    Decodes keyframes only when there are enough of them, otherwise every n-th frame.
    """
    keyframes = [f for _, f in _decoded_frames(info.path, keyframes_only=True)]
    if len(keyframes) >= min(10, max_samples):
        step = max(1, len(keyframes) // max_samples)
        for frame in keyframes[::step]:
            yield _upright(frame, info.rotation)
        return
    total = max(1, int(info.duration * info.fps))
    step = max(1, total // max_samples)
    for i, (_, frame) in enumerate(_decoded_frames(info.path)):
        if i % step == 0:
            yield _upright(frame, info.rotation)
