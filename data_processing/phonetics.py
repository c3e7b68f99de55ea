"""Phones of speech from pocketsphinx's all-phone decoder, grouped into visemes (mouth shapes).

pocketsphinx (5.1.x) ships a US-English acoustic model and a phone language model inside its wheel, so this needs no
download. The English phone set is only a proxy for mouth shapes: for other languages it still tells closures (p/b/m)
from open vowels, which is what lips show. Phones are grouped into the 12 visemes below (after the usual
phoneme-to-viseme tables, e.g. Lee & Yook 2002 / the MPEG-4 visemes, merged where the mouth looks the same).

Two uses:

* :func:`phone_segments` decodes a whole signal once (the offline lip-sync score, :mod:`dtnerf_ns.evaluation.lip_sync_score`);
* :func:`viseme_posteriors` gives 50 Hz soft viseme evidence with bounded context (an audio feature kind,
  :mod:`data_processing.audio_features`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
from jaxtyping import Float, Int

SAMPLE_RATE = 16000
"""pocketsphinx's en-us model is trained on 16 kHz audio."""
DECODER_RATE = 100
"""pocketsphinx frames per second (10 ms)."""

VISEMES: Dict[str, Sequence[str]] = {
    "silence": ("SIL", "+NSN+", "+SPN+"),
    "bilabial": ("P", "B", "M"),
    "labiodental": ("F", "V"),
    "dental": ("TH", "DH"),
    "alveolar": ("T", "D", "N", "L", "S", "Z"),
    "postalveolar": ("SH", "ZH", "CH", "JH"),
    "velar_glottal": ("K", "G", "NG", "HH"),
    "rounded_approximant": ("R", "W", "ER"),
    "close_front": ("IY", "IH", "Y"),
    "mid_front": ("EH", "EY", "AE"),
    "open": ("AA", "AH", "AY", "AW"),
    "rounded": ("AO", "OW", "OY", "UH", "UW"),
}
"""Viseme groups of the en-us phone set; any phone not listed reads as silence."""
VISEME_NAMES = tuple(VISEMES)
VISEME_OF_PHONE: Dict[str, int] = {phone: i for i, phones in enumerate(VISEMES.values()) for phone in phones}
OPEN_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "EY", "OW")
"""Vowels said with the jaw open: the lip-sync score contrasts them with bilabial closures."""
BILABIALS = VISEMES["bilabial"]


@dataclass(frozen=True)
class PhoneSegment:
    phone: str
    start: float
    """Seconds from the signal's first sample."""
    end: float
    """Seconds (exclusive)."""


class PhoneDecoder:
    """pocketsphinx's all-phone decoder with its packaged en-us models (created once, reused per utterance)."""

    def __init__(self, language_weight: float = 2.0):
        # Lazy: pocketsphinx loads a ~30 MB model; only dataset processing and lip-sync scoring need it.
        from pocketsphinx import Decoder, get_model_path

        model = get_model_path()
        self._decoder = Decoder(
            hmm=os.path.join(model, "en-us", "en-us"),
            allphone=os.path.join(model, "en-us", "en-us-phone.lm.bin"),
            lw=language_weight,
            backtrace=False,
            loglevel="FATAL",
        )

    def start_stream(self) -> None:
        """Starts decoding a stream fed with :meth:`feed` (one utterance, cepstra normalised as they come)."""
        self._decoder.start_utt()

    def feed(self, signal: Float[np.ndarray, "samples"]) -> None:
        pcm = (np.clip(signal, -1.0, 1.0) * 32767.0).astype("<i2")
        self._decoder.process_raw(pcm.tobytes(), full_utt=False)

    def best_path(self, final: bool = False) -> List[PhoneSegment]:
        """The phones of the best path through what was fed so far (``final``: ends the stream first)."""
        if final:
            self._decoder.end_utt()
        return [
            PhoneSegment(seg.word, seg.start_frame / DECODER_RATE, (seg.end_frame + 1) / DECODER_RATE)
            for seg in self._decoder.seg()
        ]

    def decode(self, signal: Float[np.ndarray, "samples"]) -> List[PhoneSegment]:
        """One utterance: its phones with times relative to ``signal[0]``."""
        pcm = (np.clip(signal, -1.0, 1.0) * 32767.0).astype("<i2")
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), full_utt=True)
        self._decoder.end_utt()
        return [
            PhoneSegment(seg.word, seg.start_frame / DECODER_RATE, (seg.end_frame + 1) / DECODER_RATE)
            for seg in self._decoder.seg()
        ]


def phone_segments(signal: Float[np.ndarray, "samples"]) -> List[PhoneSegment]:
    """Decode a whole 16 kHz signal in one utterance."""
    return PhoneDecoder().decode(signal)


def step_labels(segments: Sequence[PhoneSegment], num_steps: int, rate: float) -> List[str]:
    """The phone at each of ``num_steps`` steps at ``rate`` Hz (step ``k`` is at ``k / rate`` s); "SIL" where none."""
    labels = ["SIL"] * num_steps
    for seg in segments:
        first = max(0, int(np.ceil(seg.start * rate - 1e-9)))
        last = min(num_steps, int(np.ceil(seg.end * rate - 1e-9)))
        for k in range(first, last):
            labels[k] = seg.phone
    return labels


def viseme_indices(phones: Sequence[str]) -> Int[np.ndarray, "steps"]:
    return np.array([VISEME_OF_PHONE.get(p, 0) for p in phones], dtype=np.int64)


def _block_labels(
    signal: Float[np.ndarray, "samples"], offset: int, total: int, blocks: Sequence[int], rate: int, hop: int, context: int,
    lookahead: int,
) -> List[Tuple[int, np.ndarray]]:
    """(first step, viseme per step) of each block; ``signal`` is the file's samples from ``offset`` on."""
    decoder = PhoneDecoder()
    num_steps = int(round(total / SAMPLE_RATE * rate))
    out = []
    for block_start in blocks:
        block_end = min(total, block_start + hop)
        first_step = int(np.ceil(block_start / SAMPLE_RATE * rate - 1e-9))
        last_step = min(num_steps, int(np.ceil(block_end / SAMPLE_RATE * rate - 1e-9)))
        if last_step <= first_step:
            continue
        window_start = max(0, block_start - context)
        segments = decoder.decode(signal[window_start - offset : min(total, block_end + lookahead) - offset])
        # Times relative to the block's first step, so only the block's own steps are labelled.
        shift = window_start / SAMPLE_RATE - first_step / rate
        labels = step_labels(
            [PhoneSegment(s.phone, s.start + shift, s.end + shift) for s in segments], last_step - first_step, rate
        )
        out.append((first_step, viseme_indices(labels)))
    return out


def viseme_posteriors_streamed(
    signal: Float[np.ndarray, "samples"],
    rate: int = 50,
    hop_seconds: float = 0.4,
    lookahead_seconds: float = 0.2,
    blur_steps: float = 1.5,
) -> Float[np.ndarray, "steps visemes"]:
    """Soft viseme evidence at ``rate`` Hz from one decode of the whole signal as a stream.

    The signal is fed to one utterance in ``lookahead_seconds`` pieces on a grid anchored at its first sample; each
    ``hop_seconds`` block is labelled with the best path as it stands once ``lookahead_seconds`` of audio after the
    block have been fed (the last blocks, when the stream ends). A step thus depends on all the audio before it and on
    at most ``hop + lookahead`` (0.6 s) after it: a prefix of a file decodes exactly as the same stretch of the whole
    file, up to its last 0.6 s (``audio_features.windows_for_span``), and a live stream could be decoded the same way.
    Against :func:`viseme_posteriors` (each block decoded again with 1.2 s of context) this decodes every sample once,
    ~4x faster, and agrees better with a whole-file decode (90% of steps against 81% on ``macron_fr_50s``), its
    cepstral normalisation having all the past to lean on.
    """
    num_steps = int(round(len(signal) / SAMPLE_RATE * rate))
    labels = np.zeros(num_steps, dtype=np.int64)
    piece, hop = int(round(lookahead_seconds * SAMPLE_RATE)), int(round(hop_seconds * SAMPLE_RATE))
    blocks = list(range(0, len(signal), hop))

    def label(block_start: int, segments: Sequence[PhoneSegment]) -> None:
        first = int(np.ceil(block_start / SAMPLE_RATE * rate - 1e-9))
        last = min(num_steps, int(np.ceil(min(len(signal), block_start + hop) / SAMPLE_RATE * rate - 1e-9)))
        if last <= first:
            return
        # Times relative to the block's first step, so only the block's own steps are labelled.
        shift = first / rate
        own = [PhoneSegment(s.phone, s.start - shift, s.end - shift) for s in segments if s.end * rate > first and s.start * rate < last]
        labels[first:last] = viseme_indices(step_labels(own, last - first, rate))

    decoder = PhoneDecoder()
    decoder.start_stream()
    fed, done = 0, 0
    while fed < len(signal):
        decoder.feed(signal[fed : fed + piece])
        fed = min(len(signal), fed + piece)
        while done < len(blocks) and fed < len(signal) and fed >= blocks[done] + hop + piece:
            label(blocks[done], decoder.best_path())
            done += 1
    final = decoder.best_path(final=True)
    for block_start in blocks[done:]:
        label(block_start, final)
    out = np.zeros((num_steps, len(VISEMES)), dtype=np.float32)
    out[np.arange(num_steps), labels] = 1.0
    return _blurred(out, blur_steps)


def _blurred(onehot: np.ndarray, blur_steps: float) -> np.ndarray:
    """Each phone spread into its neighbours, as lips move towards a sound before it is heard (coarticulation)."""
    if blur_steps <= 0:
        return onehot
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(onehot, blur_steps, axis=0, mode="nearest")


def viseme_posteriors(
    signal: Float[np.ndarray, "samples"],
    rate: int = 50,
    hop_seconds: float = 0.4,
    context_seconds: float = 1.2,
    lookahead_seconds: float = 0.2,
    blur_steps: float = 1.5,
) -> Float[np.ndarray, "steps visemes"]:
    """Soft viseme evidence at ``rate`` Hz whose every step depends only on nearby audio.

    The signal is cut into blocks of ``hop_seconds`` on a grid anchored at its first sample. Each block is labelled
    by decoding the audio from ``context_seconds`` before it to ``lookahead_seconds`` after it, so a step depends on
    at most ``context + hop`` seconds of past and ``hop + lookahead`` (0.6 s by default) of future audio, never on the
    rest of the file: a span decoded with its context (``audio_features.windows_for_span``) gives the same features
    as the whole file, and a live stream could be decoded the same way. Each decode normalises its cepstra over its
    own window (pocketsphinx's batch CMN), which is what keeps the context bounded.

    The decoder's one-hot labels are made soft by a Gaussian blur of ``blur_steps`` (truncated at 4 sigma, so the
    context stays bounded): each phone spreads into its neighbours, as the lips move towards a sound before it is
    heard (coarticulation). pocketsphinx's all-phone search gives no usable per-phone scores (its segment
    posteriors are all 1), and decoding each block twice from staggered starts softened only 8% of steps for
    twice the time (measured on ``macron_fr_50s``), so one decode per block it is.
    """
    num_steps = int(round(len(signal) / SAMPLE_RATE * rate))
    out = np.zeros((num_steps, len(VISEMES)), dtype=np.float32)
    hop = int(round(hop_seconds * SAMPLE_RATE))
    context, lookahead = int(round(context_seconds * SAMPLE_RATE)), int(round(lookahead_seconds * SAMPLE_RATE))
    blocks = list(range(0, len(signal), hop))
    # One process: the decoder holds the GIL (threads gain nothing) and a spawned pool would re-import the caller's
    # main module.
    results = [_block_labels(signal, 0, len(signal), blocks, rate, hop, context, lookahead)]
    for result in results:
        for first_step, visemes in result:
            out[np.arange(first_step, first_step + len(visemes)), visemes] = 1.0
    return _blurred(out, blur_steps)
