import numpy as np
import pytest

from data_processing import audio
from data_processing.errors import ProcessingError

from .conftest import ffmpeg, write_clapper_clip, write_wav


def test_load_audio_resamples_to_16k_mono(tmp_path):
    path = write_wav(tmp_path / "tone.wav", seconds=1.5, rate=44100, channels=2)
    signal = audio.load_audio(path)
    assert signal.ndim == 1
    assert abs(len(signal) - 24000) <= 64
    assert 0.2 < np.abs(signal).max() <= 1.0


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


def _onset(signal: np.ndarray) -> float:
    """Seconds to the first sample of the beep."""
    loud = np.abs(signal) > 0.1
    assert loud.any(), "no beep"
    return int(np.argmax(loud)) / audio.SAMPLE_RATE


def _flash_time(path) -> float:
    """Seconds from the first video frame to the white frame, in the timeline the frames are processed in."""
    from data_processing.video import iter_frames_at_rate, probe_video

    brightness = np.array([f.mean() for _, f in iter_frames_at_rate(probe_video(path), 25.0)])
    return int(np.argmax(brightness > 128)) / 25.0


def test_load_audio_pads_audio_that_starts_after_the_video(tmp_path):
    # The audio stream starts 0.44 s into the file; beep and flash are both at 1.44 s of the file.
    clip = write_clapper_clip(tmp_path / "late_audio.mp4", flash_frame=36, audio_offset=0.44)
    signal = audio.load_audio(clip)
    assert _flash_time(clip) == pytest.approx(1.44)
    assert _onset(signal) == pytest.approx(1.44, abs=0.02)  # from its first sample it would be 1.0
    assert np.all(signal[: int(0.4 * audio.SAMPLE_RATE)] == 0.0)  # silence before the audio stream starts
    assert len(signal) / audio.SAMPLE_RATE == pytest.approx(3.44, abs=0.05)


def test_load_audio_drops_audio_before_the_first_video_frame(tmp_path):
    # The video stream starts 0.4 s into the file; beep and flash are both at 1.0 s of the file, i.e. 0.6 s after
    # the first frame.
    clip = write_clapper_clip(tmp_path / "early_audio.mp4", flash_frame=15, video_offset=0.4)
    signal = audio.load_audio(clip)
    assert _flash_time(clip) == pytest.approx(0.6)
    assert _onset(signal) == pytest.approx(0.6, abs=0.02)
    assert len(signal) / audio.SAMPLE_RATE == pytest.approx(2.6, abs=0.05)


def test_load_audio_of_a_video_in_sync_and_of_its_audio_alone(tmp_path):
    clip = write_clapper_clip(tmp_path / "in_sync.mp4", flash_frame=25)
    assert _onset(audio.load_audio(clip)) == pytest.approx(1.0, abs=0.02)
    # The same audio as a pure audio file, even one with cover art (a picture "video" stream), starts at its first
    # sample.
    ffmpeg("-i", clip, "-map", "0:a", "-c:a", "pcm_s16le", tmp_path / "speech.wav")
    ffmpeg("-i", clip, "-frames:v", "1", tmp_path / "cover.jpg")
    # Its audio stream starts at 0.3 s; the picture must not be taken for a first video frame at 0 s.
    ffmpeg("-itsoffset", 0.3, "-i", tmp_path / "speech.wav", "-i", tmp_path / "cover.jpg", "-map", "0", "-map", "1",
           "-c:a", "aac", "-c:v", "copy", "-disposition:v", "attached_pic", tmp_path / "speech.m4a")  # fmt: skip
    assert _onset(audio.load_audio(tmp_path / "speech.wav")) == pytest.approx(1.0, abs=0.001)
    # (+23 ms: with a delayed start, FFmpeg's mp4 muxer leaves the AAC encoder's 1024 priming samples in.)
    assert _onset(audio.load_audio(tmp_path / "speech.m4a")) == pytest.approx(1.0, abs=0.03)


def test_load_audio_errors_for_a_video(tmp_path):
    silent = tmp_path / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x48:r=25:d=1", "-c:v", "libx264", silent)
    with pytest.raises(ProcessingError, match="has no audio track"):
        audio.load_audio(silent)
    after = write_clapper_clip(tmp_path / "audio_then_video.mp4", flash_frame=0, video_offset=3.5)
    with pytest.raises(ProcessingError, match="ends before its video starts"):
        audio.load_audio(after)
