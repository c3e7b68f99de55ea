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
    np.testing.assert_allclose(feats.mean(0), 0, atol=1e-3)  # per-channel normalised


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
