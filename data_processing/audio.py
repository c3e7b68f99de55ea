"""Audio loading and per-frame speech features.

One implementation, shared by ``dtnerf-process`` (training data) and the talking-video export
(new driving audio), so a model always sees features computed the same way.

Features follow the AD-NeRF / ER-NeRF convention: a 50 Hz feature sequence (two steps per
25-fps video frame), cut into one window of 16 steps centred on each video frame, giving an
array of shape [num_frames, 16, C]. Those systems use DeepSpeech logits (C = 29), which are
phoneme-like and so the same for any speaker; its weights cannot be downloaded here, so we use
C = 29 log mel-filterbank energies from python_speech_features, made as speaker- and
recording-independent as a filterbank can be (see :func:`speech_features`):

* each channel is referenced to its own loud level over the utterance (95th percentile), which
  removes the speaker's and microphone's long-term spectrum and the recording gain, as cepstral
  mean normalisation does;
* everything more than ``GATE_DB`` below that level is gated to 0, so a pause reads the same
  whether it is digital silence or a room's noise floor. (Plain per-utterance mean/variance
  normalisation, our first version, mapped a noisy pause in new audio to values the model had
  only seen for speech, and the rendered mouth opened in silence.)

Values are about 0 in silence and 1 at the channel's loud level.
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
REFERENCE_PERCENTILE = 95.0
"""Each channel's loud level: this percentile of its energy over the utterance (robust to a few peaks)."""
GATE_DB = 30.0
"""Dynamic range kept below each channel's loud level; quieter energy (pauses, noise floor) reads as 0."""
FEATURE_KIND = "logmel29-peak-gated-30db"
"""Name of this feature definition, stored in datasets so a model is never driven by different features."""


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
    """50 Hz log mel-filterbank features referenced to each channel's loud level and noise-gated.

    ``x = max(0, 1 + (E - E_ref) / GATE_DB)`` per channel, with ``E`` the energy in dB and ``E_ref`` its
    ``REFERENCE_PERCENTILE``-th percentile over the utterance. Scaling the signal, or filtering it with any fixed
    equaliser, leaves the features (almost) unchanged; silence and a quiet noise floor both give 0.
    """
    from python_speech_features import logfbank

    log_energy = logfbank(
        signal, samplerate=SAMPLE_RATE, winlen=0.025, winstep=1.0 / FEATURE_RATE, nfilt=NUM_CHANNELS, nfft=512
    )
    energy_db = log_energy * (10.0 / np.log(10.0))  # logfbank returns natural-log energies
    reference = np.percentile(energy_db, REFERENCE_PERCENTILE, axis=0, keepdims=True)
    return np.maximum(0.0, 1.0 + (energy_db - reference) / GATE_DB).astype(np.float32)


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
