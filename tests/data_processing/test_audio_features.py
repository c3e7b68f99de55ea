"""Audio feature kinds: windows per frame, running log-mel, viseme evidence, segment independence, user features."""

import numpy as np
import pytest

from data_processing import audio, audio_features, phonetics
from data_processing.errors import ProcessingError

from .conftest import SHARED_DATA, need, write_wav

SPEECH = SHARED_DATA / "speech_en_60s.wav"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """12 s of English speech: 3 s of silence, then talking."""
    return audio.load_audio(need(SPEECH))[: 12 * audio.SAMPLE_RATE]


def test_frame_windows_are_centred_on_each_frame():
    # Feature value == its step index, so a window shows which steps it took.
    steps = np.arange(100, dtype=np.float32)[:, None].repeat(3, axis=1)
    w = audio_features.frame_windows(steps, num_frames=40, fps=25.0)
    assert w.shape == (40, 16, 3)
    # Frame 10 at 25 fps is at 0.4 s = step 20: window covers steps 12..27.
    np.testing.assert_array_equal(w[10, :, 0], np.arange(12, 28))
    # Edges repeat the first/last step.
    np.testing.assert_array_equal(w[0, :8, 0], np.zeros(8))
    np.testing.assert_array_equal(w[0, 8:, 0], np.arange(0, 8))
    assert w[39, -1, 0] == min(99, 78 + 7)
    # Frame 15 at 30 fps = 0.5 s = step 25; a first frame 0.2 s in moves every centre 10 steps.
    assert audio_features.frame_windows(steps, num_frames=30, fps=30.0)[15, 8, 0] == 25
    assert audio_features.frame_windows(steps, 30, 30.0, first_frame_seconds=0.2)[15, 8, 0] == 35


def _voice_then_noisy_pause(seed: int = 0) -> np.ndarray:
    """1 s of a breathy 120 Hz voice with 4 Hz syllables, then 1 s of room noise 45 dB below it (16 kHz)."""
    rng = np.random.default_rng(seed)
    sr = audio.SAMPLE_RATE
    t = np.arange(sr) / sr
    buzz = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 30))
    buzz = buzz / np.sqrt(np.mean(buzz**2))
    breath = rng.normal(0, 10 ** (-10 / 20), sr)  # energy up to 8 kHz, as fricatives give real speech
    voice = 0.1 * (buzz + breath) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    rms = np.sqrt(np.mean(voice**2))
    pause = rng.normal(0, rms * 10 ** (-45 / 20), sr)
    return np.concatenate([voice, pause]).astype(np.float32)


@pytest.mark.parametrize("kind", ["logmel29-running-gated-30db", "logmel29-peak-gated-30db"])
def test_log_mel_is_referenced_to_the_voice_gated_and_level_free(kind):
    signal = _voice_then_noisy_pause()
    feats = audio_features.speech_features(signal, kind)
    assert feats.shape == (100, 29) and feats.dtype == np.float32
    voice, pause = feats[5:45], feats[55:95]  # steps well inside each second
    assert feats.min() >= 0.0 and 0.6 < voice.mean() and voice.max() <= 1.6
    # A room's noise floor 45 dB down reads exactly as silence, like digital silence.
    assert np.all(pause == 0.0)
    silent = np.concatenate([signal[:16000], np.zeros(16000, np.float32)])
    np.testing.assert_array_equal(audio_features.speech_features(silent, kind)[55:95], 0.0)
    np.testing.assert_allclose(audio_features.speech_features(0.05 * signal, kind), feats, atol=1e-4)


def test_running_log_mel_forgets_audio_older_than_its_context():
    # A 20 dB louder first half must not change features 8.4 s (context + block + look-ahead) after it ends.
    quiet = _voice_then_noisy_pause()[:16000]
    tail = np.tile(quiet, 12)
    loud_start, quiet_start = np.concatenate([10 * quiet, tail]), np.concatenate([quiet, tail])
    a = audio_features.speech_features(loud_start, "logmel29-running-gated-30db")
    b = audio_features.speech_features(quiet_start, "logmel29-running-gated-30db")
    assert np.abs(a[100:150] - b[100:150]).max() > 0.1  # within the context the loud start lowers the features
    np.testing.assert_allclose(a[480:], b[480:], atol=1e-5)


def test_viseme_posteriors_read_real_speech(speech):
    post = audio_features.visemes(speech)
    assert post.shape == (600, len(phonetics.VISEMES))
    np.testing.assert_allclose(post.sum(1), 1.0, atol=1e-5)
    labels = post.argmax(1)
    assert np.mean(labels[20:130] == 0) > 0.9  # the file's first 3 s are silent
    speaking = labels[170:]
    assert np.mean(speaking != 0) > 0.6
    assert {1, 10, 11} <= set(speaking.tolist())  # bilabials, open and rounded vowels all occur
    assert 0.02 < np.mean(post.max(1) < 0.99) < 0.6  # soft at phone boundaries, not everywhere


def test_a_span_gets_the_features_it_has_in_the_whole_file(speech):
    kind = audio_features.DEFAULT_KIND
    fps, start_frame, count = 25.0, 183, 75  # 7.32 s .. 10.32 s: mid-block start, context before it
    whole = audio_features.audio_windows_for_frames(speech, 300, fps, kind)
    span = audio_features.windows_for_span(speech[: int(10.32 * 16000)], start_frame / fps, count, fps, kind)
    assert span.shape == (count, 16, 41)
    # Identical except within the look-ahead of the span's end (block + look-ahead + half a window = 0.76 s).
    exact = count - int(np.ceil(0.76 * fps))
    np.testing.assert_array_equal(span[:exact], whole[start_frame : start_frame + exact])
    # Cutting the audio at the span (no context) changes the start only: the decode has no past to lean on.
    alone = audio_features.audio_windows_for_frames(speech[int(7.32 * 16000) :], count, fps, kind)
    assert not np.array_equal(alone, span)


def test_windows_for_a_whole_file_and_kinds(tmp_path):
    signal = audio.load_audio(write_wav(tmp_path / "tone.wav", seconds=2.0))
    for kind, channels in (("logmel29-running-gated-30db", 29), ("visemes12+logmel29", 41), ("visemes12-stream+logmel29", 41)):
        feats = audio_features.audio_windows_for_frames(signal, num_frames=50, fps=25, kind=kind)
        assert feats.shape == (50, 16, channels) and feats.dtype == np.float32
    with pytest.raises(ProcessingError, match="unknown audio feature kind 'deepspeech'; choose one of"):
        audio_features.speech_features(signal, "deepspeech")


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((49, 16, 29), np.float32), r"windows of shape \[49, 16, 29\] do not fit 50 frames"),
        (np.zeros((50, 8, 29), np.float32), r"expected \[50, 16, C\]"),
        (np.zeros((60, 1024), np.float32), r"60 steps at 50 Hz are 1.20 s but the video is 2.00 s"),
        (np.zeros(100, np.float32), r"of shape \[100\]"),
        (np.zeros((50, 16, 29), np.int64), "finite floating-point"),
        (np.full((100, 4), np.nan, np.float32), "finite floating-point"),
    ],
)
def test_user_features_with_wrong_shapes_are_refused_in_one_line(tmp_path, array, message):
    path = tmp_path / "feats.npy"
    np.save(path, array)
    with pytest.raises(ProcessingError, match=message) as info:
        audio_features.load_feature_file(path, num_frames=50, fps=25.0)
    assert "\n" not in str(info.value)


def test_user_features_are_windowed_per_frame(tmp_path):
    deepspeech = np.random.default_rng(0).normal(size=(50, 16, 29)).astype(np.float32)
    np.save(tmp_path / "ds.npy", deepspeech)
    np.testing.assert_array_equal(audio_features.load_feature_file(tmp_path / "ds.npy", 50, 25.0), deepspeech)
    hubert = np.arange(101, dtype=np.float32)[:, None].repeat(1024, 1)  # [T, C] at 50 Hz, one step over
    np.save(tmp_path / "hubert.npy", hubert)
    windows = audio_features.load_feature_file(tmp_path / "hubert.npy", 50, 25.0)
    assert windows.shape == (50, 16, 1024)
    np.testing.assert_array_equal(windows[10, :, 0], np.arange(12, 28))  # frame 10 = step 20, centred
    with pytest.raises(ProcessingError, match="not found"):
        audio_features.load_feature_file(tmp_path / "none.npy", 50, 25.0)
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(ProcessingError, match="cannot read .* as a .npy array"):
        audio_features.load_feature_file(tmp_path / "text.npy", 50, 25.0)
    assert audio_features.is_external(audio_features.feature_kind_of_file(tmp_path / "hubert.npy"))
