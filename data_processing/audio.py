"""Audio loading, fitting to a video's length, and writing (16 kHz mono).

The features computed from it are in :mod:`data_processing.audio_features`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float

from data_processing.errors import ProcessingError

SAMPLE_RATE = 16000
"""Audio is resampled to 16 kHz mono, the rate speech models (and DeepSpeech) expect."""


@dataclass
class DecodedAudio:
    signal: Float[np.ndarray, "samples"]
    """16 kHz mono in [-1, 1], sample 0 at the first video frame (for a video file)."""
    start_offset_seconds: float
    """How much later than the first video frame the audio stream started (negative: earlier), corrected in
    ``signal``; 0 for an audio file."""


def load_audio(path: Path) -> Float[np.ndarray, "samples"]:
    """:func:`decode_audio`'s signal."""
    return decode_audio(path).signal


def decode_audio(path: Path) -> DecodedAudio:
    """Decode any audio (wav, mp3, m4a, or a video's audio track) to 16 kHz mono float32 in [-1, 1].

    For a file with a video stream, sample 0 is at the time of the first video frame (time 0 of
    :func:`data_processing.video.iter_frames_at_rate`), the way a player syncs the two: silence is
    prepended when the audio stream starts later (phone and screen recordings often start it a few
    hundred ms after the video) and audio from before the first frame is dropped. Both start times
    are decoded frames' timestamps, i.e. after FFmpeg has applied edit lists and dropped the AAC
    encoder's priming samples. Pure audio files start at their first sample.
    ``dtnerf-render`` reads its driving audio with this function, so a video passed as --audio is
    aligned the same way.

    Raises:
        ProcessingError: the file is missing, unreadable or has no audio stream.
    """
    import av  # lazy: keeps `import data_processing` light

    from data_processing.video import first_frame_time

    path = Path(path)
    if not path.is_file():
        raise ProcessingError(f"audio file not found: {path}")
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises several error types for unreadable input
        raise ProcessingError(f"cannot read audio from {path}: {exc}. Use a wav, mp3, m4a or mp4 file.") from exc
    with container:
        if not container.streams.audio:
            raise ProcessingError(f"{path} has no audio track; pass speech audio with --audio FILE.")
        has_video = bool(container.streams.video)
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        chunks = []
        audio_start, first = None, True
        try:
            for frame in container.decode(stream):
                if first:  # the resampler keeps sample 0 at the first decoded frame's time
                    audio_start = None if frame.pts is None else float(frame.pts * stream.time_base)
                    first = False
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):  # flush
                chunks.append(out.to_ndarray().reshape(-1))
        except Exception as exc:
            raise ProcessingError(f"cannot decode the audio of {path}: {exc}") from exc
    if not chunks:
        raise ProcessingError(f"the audio track of {path} is empty.")
    signal = np.concatenate(chunks).astype(np.float32) / 32768.0
    video_start = first_frame_time(path) if has_video else None  # also None for cover art in audio files
    offset = 0.0
    if audio_start is not None and video_start is not None:
        shift = int(round((audio_start - video_start) * SAMPLE_RATE))
        offset = shift / SAMPLE_RATE
        signal = np.concatenate([np.zeros(shift, np.float32), signal]) if shift > 0 else signal[-shift:]
        if len(signal) == 0:
            raise ProcessingError(f"the audio track of {path} ends before its video starts.")
    return DecodedAudio(signal, offset)


@dataclass
class AudioFit:
    """Audio matched to a video's length."""

    signal: Float[np.ndarray, "samples"]
    padded_seconds: float
    """Silence appended because the audio was a little shorter than the video."""
    trimmed_seconds: float
    """Audio cut from the end because it was longer than the video."""


def fit_audio_to_video(
    signal: Float[np.ndarray, "samples"], video_seconds: float, max_pad_seconds: float = 0.5, max_pad_fraction: float = 0.05
) -> AudioFit:
    """Pad (with silence) or trim audio to the video's duration.

    Audio a little shorter than the video (at most ``max(max_pad_seconds, max_pad_fraction *
    video_seconds)``) is padded; much shorter audio is refused, because the frames past its end
    would be trained with silence while the person is still talking.
    """
    target = int(round(video_seconds * SAMPLE_RATE))
    have = len(signal)
    if have >= target:
        return AudioFit(signal[:target], 0.0, (have - target) / SAMPLE_RATE)
    short = (target - have) / SAMPLE_RATE
    allowed = max(max_pad_seconds, max_pad_fraction * video_seconds)
    if short > allowed:
        raise ProcessingError(
            f"the audio is {have / SAMPLE_RATE:.2f} s but the video is {video_seconds:.2f} s "
            f"({short:.2f} s short, at most {allowed:.2f} s can be padded); pass the matching audio with --audio FILE."
        )
    return AudioFit(np.pad(signal, (0, target - have)), short, 0.0)


def write_wav(path: Path, signal: Float[np.ndarray, "samples"]) -> None:
    """Write 16 kHz mono 16-bit PCM (atomically)."""
    import os
    import wave

    tmp = path.with_name(f".{path.name}.tmp")
    pcm = (np.clip(signal, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    os.replace(tmp, path)
