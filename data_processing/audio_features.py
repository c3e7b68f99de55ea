"""Per-frame speech features: the kinds we compute, their windows per video frame, and features users bring.

One implementation, shared by ``dtnerf-process`` (training data) and ``dtnerf-render`` (new driving audio), so a model
is always driven by features of the kind it was trained on (the kind's name is stored in the dataset).

Features follow the AD-NeRF / ER-NeRF convention: a 50 Hz sequence (two steps per 25-fps frame), cut into one window
of 16 steps centred on each video frame, giving ``[num_frames, 16, C]``. Those systems use DeepSpeech logits
(C = 29) or wav2vec/HuBERT features, whose weights must be downloaded; users who have them pass their arrays with
``--audio-features FILE.npy`` (:func:`load_feature_file`). What we compute without downloads:

* ``visemes12-stream+logmel29`` (default): soft viseme evidence from pocketsphinx's packaged all-phone decoder
  (:mod:`data_processing.phonetics`; what is said, the same for any speaker), the file decoded once as a stream,
  beside the running log-mel channels (how loud and how it sounds).
* ``visemes12+logmel29``: the same with each 0.4 s block decoded again with 1.2 s of context (4x the decoding; the
  previous default, kept so that models trained on it still render).
* ``visemes12-pocketsphinx``: that kind's viseme evidence alone.
* ``logmel29-running-gated-30db``: 29 log mel-filterbank channels, each referenced to its own loud level (95th
  percentile) over the last 8 s and the next 0.2 s, and gated 30 dB below it, so pauses read 0 whatever the room noise
  and the speaker's and microphone's spectra cancel (as cepstral mean normalisation does).
* ``logmel29-peak-gated-30db``: the same referenced to the whole utterance: kept so that models trained on it still
  render; it is not segment-independent.

Every kind except the last is computed in blocks of ``BLOCK_SECONDS`` on a grid anchored at the signal's start,
each block from the audio before it (bounded, or the whole past for the streamed decode) and a fixed look-ahead, so
:func:`windows_for_span` gives a stretch of a file exactly the features it has inside the whole file (what
``dtnerf-render --start/--duration`` uses), and the features could be computed live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Literal, NamedTuple, Optional, get_args

import numpy as np
from jaxtyping import Float

from data_processing.errors import ProcessingError

SAMPLE_RATE = 16000
FEATURE_RATE = 50
"""Feature steps per second (20 ms hop): two per frame at 25 fps, as in AD-NeRF/ER-NeRF."""
WINDOW_STEPS = 16
"""Feature steps per frame window, centred on the frame (AD-NeRF/ER-NeRF)."""
NUM_MEL_CHANNELS = 29
"""Log-mel channels; 29 matches DeepSpeech's output width used by ER-NeRF."""
REFERENCE_PERCENTILE = 95.0
"""Each channel's loud level: this percentile of its energy (robust to a few peaks)."""
GATE_DB = 30.0
"""Dynamic range kept below each channel's loud level; quieter energy (pauses, noise floor) reads as 0."""
BLOCK_SECONDS = 0.4
"""Grid on which running statistics and phone decodes are updated (20 steps)."""
REFERENCE_CONTEXT_SECONDS = 8.0
"""Past audio over which a running log-mel reference is taken: several sentences, so one pause does not reset it."""
LOOKAHEAD_SECONDS = 0.2
"""Future audio a block may see beyond its end (so a step sees at most BLOCK + LOOKAHEAD = 0.6 s ahead)."""
SILENCE_DBFS = -50.0
"""Steps quieter than this are pauses for the viseme channels: speech in the sample clips is loud at -14 to -29 dBFS
and their rooms' noise floors sit at -53 to -73 dBFS (5th percentile of 20 ms steps)."""
PREROLL_SECONDS = 10.0
"""Past audio :func:`windows_for_span` decodes before a span: more than any kind's context."""


def _block_grid(num_steps: int):
    block = int(round(BLOCK_SECONDS * FEATURE_RATE))
    return [(first, min(num_steps, first + block)) for first in range(0, num_steps, block)]


def _log_mel_db(signal: Float[np.ndarray, "samples"]) -> Float[np.ndarray, "steps channels"]:
    from python_speech_features import logfbank

    num_steps = int(round(len(signal) / SAMPLE_RATE * FEATURE_RATE))
    log_energy = logfbank(
        signal, samplerate=SAMPLE_RATE, winlen=0.025, winstep=1.0 / FEATURE_RATE, nfilt=NUM_MEL_CHANNELS, nfft=512
    )
    energy_db = log_energy * (10.0 / np.log(10.0))  # logfbank returns natural-log energies
    if len(energy_db) < num_steps:  # pad the last partial step
        energy_db = np.concatenate([energy_db, np.repeat(energy_db[-1:], num_steps - len(energy_db), 0)])
    return energy_db[:num_steps]


def _step_level_dbfs(signal: Float[np.ndarray, "samples"], num_steps: int) -> Float[np.ndarray, "steps"]:
    """RMS level of each 20 ms step, in dB below full scale."""
    hop = SAMPLE_RATE // FEATURE_RATE
    padded = np.pad(signal, (0, max(0, num_steps * hop - len(signal))))[: num_steps * hop]
    return 20.0 * np.log10(np.sqrt(np.mean(padded.reshape(num_steps, hop) ** 2, axis=1)) + 1e-9)


def _gate(energy_db: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 + (energy_db - reference) / GATE_DB).astype(np.float32)


def log_mel_whole_utterance(signal: Float[np.ndarray, "samples"]) -> Float[np.ndarray, "steps 29"]:
    """``x = max(0, 1 + (E - E_ref) / GATE_DB)`` with ``E_ref`` each channel's percentile over the whole signal."""
    energy_db = _log_mel_db(signal)
    return _gate(energy_db, np.percentile(energy_db, REFERENCE_PERCENTILE, axis=0, keepdims=True))


def log_mel_running(signal: Float[np.ndarray, "samples"]) -> Float[np.ndarray, "steps 29"]:
    """As :func:`log_mel_whole_utterance`, with ``E_ref`` taken per block over the last 8 s and the next 0.2 s.

    Each step's filterbank window is 25 ms of audio, so the features are local apart from the reference. In more than
    8 s of silence the reference sinks to the noise floor; the viseme channels of the default kind still say silence.
    """
    energy_db = _log_mel_db(signal)
    out = np.empty_like(energy_db, dtype=np.float32)
    context = int(REFERENCE_CONTEXT_SECONDS * FEATURE_RATE)
    ahead = int(LOOKAHEAD_SECONDS * FEATURE_RATE)
    for first, last in _block_grid(len(energy_db)):
        stretch = energy_db[max(0, first - context) : last + ahead]
        reference = np.percentile(stretch, REFERENCE_PERCENTILE, axis=0, keepdims=True)
        out[first:last] = _gate(energy_db[first:last], reference)
    return out


def visemes(
    signal: Float[np.ndarray, "samples"], log_mel: Optional[np.ndarray] = None, streamed: bool = False
) -> Float[np.ndarray, "steps 12"]:
    """Viseme evidence (:func:`phonetics.viseme_posteriors`), forced to silence in pauses.

    A decode whose window holds only room noise normalises that noise as if it were speech and reads phones in it.
    A step is a pause when every log-mel channel is gated (more than 30 dB below its running loud level, as pauses
    read 0 there) or when it is quieter than ``SILENCE_DBFS`` (the relative gate has no loud level to refer to before
    the first word of a file).
    """
    from data_processing.phonetics import viseme_posteriors, viseme_posteriors_streamed

    decode = viseme_posteriors_streamed if streamed else viseme_posteriors
    post = decode(signal, rate=FEATURE_RATE, hop_seconds=BLOCK_SECONDS, lookahead_seconds=LOOKAHEAD_SECONDS)
    log_mel = log_mel_running(signal) if log_mel is None else log_mel
    quiet = ~np.any(log_mel > 0.0, axis=1) | (_step_level_dbfs(signal, len(post)) < SILENCE_DBFS)
    post[quiet] = 0.0
    post[quiet, 0] = 1.0
    return post


def visemes_and_log_mel(signal: Float[np.ndarray, "samples"]) -> Float[np.ndarray, "steps 41"]:
    log_mel = log_mel_running(signal)
    return np.concatenate([visemes(signal, log_mel), log_mel], axis=1)


def streamed_visemes_and_log_mel(signal: Float[np.ndarray, "samples"]) -> Float[np.ndarray, "steps 41"]:
    log_mel = log_mel_running(signal)
    return np.concatenate([visemes(signal, log_mel, streamed=True), log_mel], axis=1)


class FeatureKind(NamedTuple):
    compute: Callable[[np.ndarray], np.ndarray]
    channels: int
    segment_independent: bool
    """A step depends on bounded audio around it (the look-ahead after it, ``context`` before it)."""
    context: Optional[float] = PREROLL_SECONDS
    """Seconds of past audio :func:`windows_for_span` decodes before a span; None: from the start of the file."""


FEATURE_KINDS: Dict[str, FeatureKind] = {
    "visemes12-stream+logmel29": FeatureKind(streamed_visemes_and_log_mel, 12 + NUM_MEL_CHANNELS, True, None),
    "visemes12+logmel29": FeatureKind(visemes_and_log_mel, 12 + NUM_MEL_CHANNELS, True),
    "visemes12-pocketsphinx": FeatureKind(visemes, 12, True),
    "logmel29-running-gated-30db": FeatureKind(log_mel_running, NUM_MEL_CHANNELS, True),
    "logmel29-peak-gated-30db": FeatureKind(log_mel_whole_utterance, NUM_MEL_CHANNELS, False),
}
DEFAULT_KIND = "visemes12-stream+logmel29"
FeatureKindName = Literal[
    "visemes12-stream+logmel29", "visemes12+logmel29", "visemes12-pocketsphinx", "logmel29-running-gated-30db",
    "logmel29-peak-gated-30db",
]
"""The kinds as a type, for command-line choices."""
assert get_args(FeatureKindName) == tuple(FEATURE_KINDS)
EXTERNAL_KIND_PREFIX = "external:"
"""Kind recorded for features a user brought (``external:<file name>``): only the same encoder can drive the model."""


def check_kind(kind: str) -> FeatureKind:
    if kind not in FEATURE_KINDS:
        raise ProcessingError(f"unknown audio feature kind '{kind}'; choose one of {', '.join(FEATURE_KINDS)}.")
    return FEATURE_KINDS[kind]


def speech_features(signal: Float[np.ndarray, "samples"], kind: str = DEFAULT_KIND) -> Float[np.ndarray, "steps C"]:
    """50 Hz features of a 16 kHz signal (step ``k`` at ``k / 50`` s)."""
    return check_kind(kind).compute(signal).astype(np.float32)


def frame_windows(
    features: Float[np.ndarray, "steps channels"], num_frames: int, fps: float, first_frame_seconds: float = 0.0
) -> Float[np.ndarray, "num_frames window channels"]:
    """A window of ``WINDOW_STEPS`` steps centred on each video frame; steps outside the sequence repeat its edge.

    Frame ``i`` is at ``first_frame_seconds + i / fps`` seconds of the features' signal, i.e. step ``c = round(t * 50)``;
    its window covers steps ``c - 8 .. c + 7``.
    """
    centres = np.round((first_frame_seconds + np.arange(num_frames) / fps) * FEATURE_RATE).astype(np.int64)
    offsets = np.arange(WINDOW_STEPS) - WINDOW_STEPS // 2
    return features[np.clip(centres[:, None] + offsets[None, :], 0, len(features) - 1)]


def audio_windows_for_frames(
    signal: Float[np.ndarray, "samples"], num_frames: int, fps: float, kind: str = DEFAULT_KIND
) -> Float[np.ndarray, "num_frames window C"]:
    """Features for a whole clip: ``[num_frames, WINDOW_STEPS, C]`` float32."""
    return frame_windows(speech_features(signal, kind), num_frames, fps).astype(np.float32)


def windows_for_span(
    signal: Float[np.ndarray, "samples"], start_seconds: float, num_frames: int, fps: float, kind: str = DEFAULT_KIND
) -> Float[np.ndarray, "num_frames window C"]:
    """Windows of ``num_frames`` frames from ``start_seconds`` of a longer signal, as the whole signal would give them.

    Computed from the kind's context before the span (``PREROLL_SECONDS``, or the file's start for the streamed
    decode), starting on the block grid, to the span's end: a segment-independent kind then gives exactly the whole
    file's values, except within the look-ahead of the span's end, where the whole file would have seen the audio
    that follows.
    """
    feature_kind = check_kind(kind)
    if not feature_kind.segment_independent:
        return audio_windows_for_frames(signal[int(round(start_seconds * SAMPLE_RATE)) :], num_frames, fps, kind)
    block = BLOCK_SECONDS * SAMPLE_RATE
    context = start_seconds if feature_kind.context is None else feature_kind.context
    preroll = int(np.floor(max(0.0, start_seconds - context) * SAMPLE_RATE / block) * block)
    end = int(round((start_seconds + num_frames / fps) * SAMPLE_RATE))
    features = speech_features(signal[preroll:end], kind)
    return frame_windows(features, num_frames, fps, start_seconds - preroll / SAMPLE_RATE).astype(np.float32)


def load_feature_file(
    path: Path, num_frames: int, fps: float, video_frames: Optional[int] = None
) -> Float[np.ndarray, "num_frames window C"]:
    """Audio features a user computed (DeepSpeech ``[N, 16, 29]``, wav2vec/HuBERT ``[N, 16, 1024]`` or ``[T, C]`` at 50 Hz).

    The file describes the whole video (``video_frames``, default ``num_frames``), of which the first ``num_frames``
    are taken: ``[N, 16, C]`` arrays must have one window per video frame; ``[T, C]`` sequences are taken as 50 Hz
    steps (ER-NeRF's and SyncTalk's convention), must cover the video to within one frame, and are windowed here.

    Raises:
        ProcessingError: unreadable file or a shape that does not fit ``num_frames``, in one line.
    """
    path = Path(path)
    if not path.is_file():
        raise ProcessingError(f"--audio-features file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/UnpicklingError for non-npy input
        raise ProcessingError(f"cannot read {path} as a .npy array ({type(exc).__name__}); save it with numpy.save.") from exc
    if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise ProcessingError(f"{path}: audio features must be finite floating-point numbers, got {array.dtype}.")
    total = num_frames if video_frames is None else video_frames
    if array.ndim == 3:
        if array.shape[0] != total or array.shape[1] != WINDOW_STEPS:
            raise ProcessingError(
                f"{path}: windows of shape {list(array.shape)} do not fit {total} frames; expected "
                f"[{total}, {WINDOW_STEPS}, C] (one {WINDOW_STEPS}-step window per video frame) or [T, C] at 50 Hz."
            )
        return array[:num_frames].astype(np.float32)
    if array.ndim == 2:
        needed = total / fps * FEATURE_RATE
        if abs(array.shape[0] - needed) > FEATURE_RATE / fps + 1:
            raise ProcessingError(
                f"{path}: {array.shape[0]} steps at 50 Hz are {array.shape[0] / FEATURE_RATE:.2f} s but the video is "
                f"{total / fps:.2f} s ({total} frames); expected about [{int(round(needed))}, C]."
            )
        return frame_windows(array.astype(np.float32), num_frames, fps)
    raise ProcessingError(
        f"{path}: audio features of shape {list(array.shape)}; expected [{total}, {WINDOW_STEPS}, C] or [T, C] at 50 Hz."
    )


def feature_kind_of_file(path: Path) -> str:
    return f"{EXTERNAL_KIND_PREFIX}{Path(path).name}"


def is_external(kind: Optional[str]) -> bool:
    return bool(kind) and str(kind).startswith(EXTERNAL_KIND_PREFIX)
