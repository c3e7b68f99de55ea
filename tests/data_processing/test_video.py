import numpy as np
import pytest

from data_processing.errors import ProcessingError
from data_processing.video import iter_frames_at_rate, probe_video

from .conftest import index_frames, write_video


def _decoded_indices(path, fps, source):
    """Which source frame each decoded frame shows (nearest in mean brightness)."""
    info = probe_video(path)
    levels = source.reshape(len(source), -1).mean(1)
    return info, [int(np.argmin(np.abs(levels - f.mean()))) for _, f in iter_frames_at_rate(info, fps)]


def test_resample_30_to_25_fps_by_timestamps(tmp_path):
    source = index_frames(60)
    path = write_video(tmp_path / "30.mkv", source, fps=30)
    info, idx = _decoded_indices(path, 25.0, source)
    assert info.fps == pytest.approx(30)
    assert len(idx) == 50  # 2 s at 25 fps
    # Output k at k/25 s shows the source frame nearest in time: round(k * 30 / 25).
    expected = [int(np.floor(k * 30 / 25 + 0.5)) for k in range(50)]
    assert idx == expected
    assert len(set(idx)) == 50 and max(np.diff(idx)) == 2  # frames dropped evenly


def test_same_rate_maps_one_to_one(tmp_path):
    source = index_frames(30)
    path = write_video(tmp_path / "25.mkv", source, fps=25)
    _, idx = _decoded_indices(path, 25.0, source)
    assert idx == list(range(30))


def test_probe_errors(tmp_path):
    with pytest.raises(ProcessingError, match="video file not found"):
        probe_video(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    with pytest.raises(ProcessingError, match="cannot read .* as a video"):
        probe_video(text)
    from .conftest import write_wav

    wav = write_wav(tmp_path / "speech.wav", 1.0)
    with pytest.raises(ProcessingError, match="has no video stream"):
        probe_video(wav)
