import numpy as np
import pytest

from data_processing import audio
from data_processing.errors import ProcessingError

from .conftest import write_wav


def test_frame_windows_are_centred_on_each_frame():
    # Feature value == its step index, so a window shows which steps it took.
    steps = np.arange(100, dtype=np.float32)[:, None].repeat(3, axis=1)
    w = audio.frame_windows(steps, num_frames=40, fps=25.0)
    assert w.shape == (40, 16, 3)
    # Frame 10 at 25 fps is at 0.4 s = step 20: window covers steps 12..27.
    np.testing.assert_array_equal(w[10, :, 0], np.arange(12, 28))
    # Edges repeat the first/last step.
    np.testing.assert_array_equal(w[0, :8, 0], np.zeros(8))
    np.testing.assert_array_equal(w[0, 8:, 0], np.arange(0, 8))
    assert w[39, -1, 0] == min(99, 78 + 7)


def test_frame_windows_other_fps():
    steps = np.arange(200, dtype=np.float32)[:, None]
    w = audio.frame_windows(steps, num_frames=30, fps=30.0)
    # Frame 15 at 30 fps = 0.5 s = step 25.
    assert w[15, 8, 0] == 25


def test_load_audio_resamples_to_16k_mono(tmp_path):
    path = write_wav(tmp_path / "tone.wav", seconds=1.5, rate=44100, channels=2)
    signal = audio.load_audio(path)
    assert signal.ndim == 1
    assert abs(len(signal) - 24000) <= 64
    assert 0.2 < np.abs(signal).max() <= 1.0


def test_speech_features_rate_and_channels(tmp_path):
    signal = audio.load_audio(write_wav(tmp_path / "tone.wav", seconds=2.0))
    feats = audio.speech_features(signal)
    assert feats.shape[1] == audio.NUM_CHANNELS == 29
    assert abs(feats.shape[0] - 100) <= 2  # 50 Hz


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


def test_speech_features_are_referenced_to_the_voice_and_gated():
    feats = audio.speech_features(_voice_then_noisy_pause())
    voice, pause = feats[5:45], feats[55:95]  # steps well inside each second
    assert feats.min() >= 0.0
    # Each channel's loud level (95th percentile over the utterance) reads as 1.
    np.testing.assert_allclose(np.percentile(feats, audio.REFERENCE_PERCENTILE, axis=0), 1.0, atol=1e-4)
    assert voice.mean() > 0.6
    # A room's noise floor 45 dB down reads exactly as silence, like digital silence.
    assert np.all(pause == 0.0)
    silent = np.concatenate([_voice_then_noisy_pause()[:16000], np.zeros(16000, np.float32)])
    np.testing.assert_array_equal(audio.speech_features(silent)[55:95], 0.0)


def test_speech_features_ignore_recording_level():
    signal = _voice_then_noisy_pause()
    np.testing.assert_allclose(audio.speech_features(0.05 * signal), audio.speech_features(signal), atol=1e-4)


def test_audio_windows_for_frames_shape(tmp_path):
    signal = audio.load_audio(write_wav(tmp_path / "tone.wav", seconds=2.0))
    feats = audio.audio_windows_for_frames(signal, num_frames=50, fps=25)
    assert feats.shape == (50, 16, 29) and feats.dtype == np.float32


def test_fit_audio_pads_trims_and_refuses():
    sr = audio.SAMPLE_RATE
    fit = audio.fit_audio_to_video(np.ones(int(9.8 * sr), np.float32), video_seconds=10.0)
    assert len(fit.signal) == 10 * sr and fit.padded_seconds == pytest.approx(0.2)
    assert fit.signal[-1] == 0.0
    fit = audio.fit_audio_to_video(np.ones(12 * sr, np.float32), video_seconds=10.0)
    assert len(fit.signal) == 10 * sr and fit.trimmed_seconds == pytest.approx(2.0)
    with pytest.raises(ProcessingError, match="the audio is 5.00 s but the video is 10.00 s"):
        audio.fit_audio_to_video(np.ones(5 * sr, np.float32), video_seconds=10.0)


def test_load_audio_errors(tmp_path):
    with pytest.raises(ProcessingError, match="audio file not found"):
        audio.load_audio(tmp_path / "nope.wav")
    bad = tmp_path / "notes.txt"
    bad.write_text("not audio")
    with pytest.raises(ProcessingError, match="cannot read audio"):
        audio.load_audio(bad)
