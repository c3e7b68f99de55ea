"""Video probing and decoding at a target frame rate (PyAV).

Frames come out upright, as a player shows them: phones store portrait video sideways and say
how to turn it in the container (a display matrix, or the legacy ``rotate`` tag), so every
decoder here applies that rotation and :func:`probe_video` reports the displayed size.
"""

from __future__ import annotations

import itertools
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


def probe_video(path: Path, extra_rotation: int = 0) -> VideoInfo:
    """Read the header of a video file (and decode its first frame, which carries the display rotation).
    ``extra_rotation``: clockwise degrees to turn the frames besides that (a clip stored sideways without metadata).

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
        rotation = (_display_rotation(stream, _first_frame(container, stream)) + extra_rotation) % 360
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


def _decoded_frames(
    path: Path, keyframes_only: bool = False, seek_seconds: Optional[float] = None, threads: bool = True
) -> Iterator[Tuple[float, "object"]]:
    """``(presentation time in s, av.VideoFrame)`` in display order, as stored (not yet rotated); from the keyframe at
    or before ``seek_seconds`` (a presentation time) when given. ``threads``: let FFmpeg decode on several cores
    (decoding alone); without, 30% less CPU per frame (workers that keep every core busy already)."""
    container = _open(path)
    with container:
        stream = _video_stream(container)
        if stream is None:
            raise ProcessingError(f"{path} has no video stream; pass a video of the person talking.")
        if threads:
            stream.thread_type = "AUTO"
        if keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        fps = float(stream.average_rate or stream.guessed_rate)
        if seek_seconds is not None and stream.time_base is not None:
            container.seek(int(seek_seconds / stream.time_base), backward=True, any_frame=False, stream=stream)
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
    info: VideoInfo, target_fps: float, max_frames: Optional[int] = None, start: int = 0, threads: bool = True
) -> Iterator[Tuple[int, UInt8[np.ndarray, "height width 3"]]]:
    """Yield ``(output_index, rgb_uint8[H, W, 3])`` resampled to ``target_fps`` by timestamps, upright.

    Output frame ``k`` is at ``k / target_fps`` seconds after the first video frame and shows
    the source frame whose timestamp is nearest to it, so 30 fps input becomes 25 fps by dropping
    frames evenly, and input already at the target rate maps one to one. ``start`` > 0 yields frames ``start`` ..
    ``max_frames - 1`` only, decoding from a keyframe shortly before them (the same frames as a whole decode, so a
    clip can be split between workers). ``threads``: see :func:`_decoded_frames`.
    """
    limit = max_frames if max_frames is not None else info.num_output_frames(target_fps)
    if start > 0:
        origin = first_frame_time(info.path)
        if origin is not None:
            src_dt = 1.0 / info.fps
            # Two source frames before the first output's own, so its nearest frame and the one before are decoded.
            seek = origin + start / target_fps - 2 * src_dt
            frames = _decoded_frames(info.path, seek_seconds=seek, threads=threads)
            try:
                first_t, first = next(frames)
            except StopIteration:
                first_t, first = None, None
            if first_t is not None and first_t - origin <= start / target_fps - src_dt:  # landed early enough
                yield from _resampled(info, target_fps, start, limit, origin, itertools.chain([(first_t, first)], frames))
                return
            frames.close()  # an imprecise index: decode from the start instead
    yield from _resampled(info, target_fps, start, limit, None, _decoded_frames(info.path, threads=threads))


def _resampled(
    info: VideoInfo, target_fps: float, start: int, limit: int, origin: Optional[float], frames: Iterator
) -> Iterator[Tuple[int, UInt8[np.ndarray, "height width 3"]]]:
    """The nearest-timestamp resampling of :func:`iter_frames_at_rate` over decoded ``frames``; times count from
    ``origin`` (None: the first decoded frame's)."""
    src_dt = 1.0 / info.fps
    k = 0
    first_t: Optional[float] = origin
    prev_t, prev_frame = None, None
    for t, frame in frames:
        if first_t is None:
            first_t = t  # streams may start at a non-zero timestamp
        t = t - first_t
        if prev_frame is not None:
            midpoint = 0.5 * (prev_t + t)
            while k < limit and k / target_fps < midpoint:
                if k >= start:
                    yield k, _upright(prev_frame, info.rotation)
                k += 1
        if k >= limit:
            return
        prev_t, prev_frame = t, frame
    if prev_frame is None:
        return
    end = prev_t + src_dt
    while k < limit and k / target_fps < end - 1e-6:
        if k >= start:
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


def _keyframe_count(path: Path) -> int:
    """Keyframes of the video stream, counted from its packets (nothing decoded)."""
    container = _open(path)
    with container:
        stream = _video_stream(container)
        if stream is None:
            return 0
        return sum(1 for packet in container.demux(stream) if packet.is_keyframe and packet.size)


def sample_frames(info: VideoInfo, max_samples: int = 40) -> Iterator[UInt8[np.ndarray, "height width 3"]]:
    """Up to ``max_samples`` upright RGB frames spread over the clip (finding the face region, the background).

    Decodes keyframes only when there are enough of them (at least ``min(10, max_samples)``), otherwise every n-th
    frame; never holds more than one decoded frame.
    """
    keyframes = _keyframe_count(info.path)
    if keyframes >= min(10, max_samples):
        step = max(1, keyframes // max_samples)
        for i, (_, frame) in enumerate(_decoded_frames(info.path, keyframes_only=True)):
            if i % step == 0:
                yield _upright(frame, info.rotation)
        return
    total = max(1, int(info.duration * info.fps))
    step = max(1, total // max_samples)
    for i, (_, frame) in enumerate(_decoded_frames(info.path)):
        if i % step == 0:
            yield _upright(frame, info.rotation)
