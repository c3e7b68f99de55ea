"""Audio loading and per-frame speech features.

One implementation, shared by ``dtnerf-process`` (training data) and the talking-video export
(new driving audio), so a model always sees features computed the same way.

Features follow the AD-NeRF / ER-NeRF convention: a 50 Hz feature sequence (two steps per
25-fps video frame), cut into one window of 16 steps centred on each video frame, giving an
array of shape [num_frames, 16, C]. Those systems use DeepSpeech logits (C = 29); its weights
cannot be downloaded here, so we use C = 29 log mel-filterbank energies from
python_speech_features, normalised per channel over the utterance (cepstral mean and variance
normalisation), which keeps the network's input width identical to ER-NeRF's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float

from data_processing.errors import ProcessingError

SAMPLE_RATE = 16000
"""Audio is resampled to 16 kHz mono, the rate speech models (and DeepSpeech) expect."""
FEATURE_RATE = 50
"""Feature steps per second (20 ms hop): two per frame at 25 fps, as in AD-NeRF/ER-NeRF."""
WINDOW_STEPS = 16
"""Feature steps per frame window, centred on the frame (AD-NeRF/ER-NeRF)."""
NUM_CHANNELS = 29
"""Channels per step; 29 matches DeepSpeech's output width used by ER-NeRF."""


def load_audio(path: Path) -> Float[np.ndarray, "samples"]:
    """Decode any audio (wav, mp3, m4a, or a video's audio track) to 16 kHz mono float32 in [-1, 1].

    Raises:
        ProcessingError: the file is missing, unreadable or has no audio stream.
    """
    import av  # lazy: keeps `import data_processing` light

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
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        chunks = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):  # flush
                chunks.append(out.to_ndarray().reshape(-1))
        except Exception as exc:
            raise ProcessingError(f"cannot decode the audio of {path}: {exc}") from exc
    if not chunks:
        raise ProcessingError(f"the audio track of {path} is empty.")
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def speech_features(signal: Float[np.ndarray, "samples"]) -> Float[np.ndarray, "steps channels"]:
    """50 Hz log mel-filterbank features, normalised per channel over the utterance."""
    from python_speech_features import logfbank

    feats = logfbank(
        signal, samplerate=SAMPLE_RATE, winlen=0.025, winstep=1.0 / FEATURE_RATE, nfilt=NUM_CHANNELS, nfft=512
    ).astype(np.float32)
    mean = feats.mean(axis=0, keepdims=True)
    std = feats.std(axis=0, keepdims=True)
    return (feats - mean) / (std + 1e-5)


def frame_windows(
    features: Float[np.ndarray, "steps channels"], num_frames: int, fps: float
) -> Float[np.ndarray, "num_frames window channels"]:
    """Cut a window of ``WINDOW_STEPS`` feature steps centred on each video frame.

    Frame ``i`` is at ``i / fps`` seconds, i.e. feature step ``c = round(i * 50 / fps)``; its window
    covers steps ``c - 8 .. c + 7``. Steps outside the sequence repeat the edge step.
    """
    centres = np.round(np.arange(num_frames) * FEATURE_RATE / fps).astype(np.int64)
    offsets = np.arange(WINDOW_STEPS) - WINDOW_STEPS // 2
    idx = np.clip(centres[:, None] + offsets[None, :], 0, len(features) - 1)
    return features[idx]


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


def audio_windows_for_frames(signal: Float[np.ndarray, "samples"], num_frames: int, fps: float) -> np.ndarray:
    """Features for a whole clip: [num_frames, WINDOW_STEPS, NUM_CHANNELS] float32."""
    return frame_windows(speech_features(signal), num_frames, fps).astype(np.float32)


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
