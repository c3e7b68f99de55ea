import numpy as np
import pytest

from data_processing.errors import ProcessingError
from data_processing.video import iter_frames_at_rate, probe_video, sample_frames

from .conftest import ffmpeg, index_frames, write_pattern_clip, write_video


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


RED, BLUE, BLACK = (255, 0, 0), (0, 0, 255), (0, 0, 0)


def _corners(frame):
    """Colour at the centre of each 16x16 corner block: top-left, top-right, bottom-left, bottom-right."""
    return [tuple(int(round(c / 255)) * 255 for c in frame[y, x]) for y, x in [(8, 8), (8, -8), (-8, 8), (-8, -8)]]


def _as_ffmpeg_shows_it(path, height, width):
    """The first frame as the ffmpeg program shows it (upright by the display matrix, as players do)."""
    import subprocess

    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    cmd = [exe, "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


@pytest.mark.parametrize(
    "ccw, ext, rotation, corners",
    [
        # A phone held upright records sideways and stores "turn 90 degrees clockwise" (-90 counter-clockwise).
        (-90, "mp4", 90, [BLUE, RED, BLACK, BLACK]),
        (90, "mp4", 270, [BLACK, BLACK, RED, BLUE]),
        (180, "mp4", 180, [BLACK, BLUE, BLACK, RED]),
        (-90, "mkv", 90, [BLUE, RED, BLACK, BLACK]),
    ],
)
def test_display_matrix_rotation_gives_upright_frames(tmp_path, ccw, ext, rotation, corners):
    src = write_pattern_clip(tmp_path / "stored.mp4")
    path = tmp_path / f"rotated.{ext}"
    ffmpeg("-display_rotation", ccw, "-i", src, "-c", "copy", path)
    info = probe_video(path)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((48, 64) if rotation in (90, 270) else (64, 48))
    frames = [f for _, f in iter_frames_at_rate(info, 25.0)]
    assert len(frames) == 10 and all(f.shape == (info.height, info.width, 3) for f in frames)
    assert _corners(frames[0]) == corners
    # The same picture a player shows.
    assert np.abs(frames[0].astype(int) - _as_ffmpeg_shows_it(path, info.height, info.width)).mean() < 2
    # Both paths of sample_frames: keyframes only (max_samples=1), every n-th frame (too few keyframes for 40).
    for max_samples in (1, 40):
        assert all(_corners(f) == corners for f in sample_frames(info, max_samples=max_samples))


def test_legacy_rotate_tag_gives_upright_frames(tmp_path):
    # FFmpeg >= 6 neither writes nor reads a `rotate` tag in mp4 (it keeps only the display matrix); mkv keeps it
    # as a plain tag, as files from older tools carry it. It means "turn clockwise".
    src = write_pattern_clip(tmp_path / "stored.mp4")
    path = tmp_path / "tagged.mkv"
    ffmpeg("-i", src, "-c", "copy", "-metadata:s:v", "rotate=90", path)
    info = probe_video(path)
    assert (info.rotation, info.width, info.height) == (90, 48, 64)
    _, frame = next(iter_frames_at_rate(info, 25.0))
    assert _corners(frame) == [BLUE, RED, BLACK, BLACK]


def test_unrotated_clip_is_unchanged(tmp_path):
    info = probe_video(write_pattern_clip(tmp_path / "stored.mp4"))
    assert (info.rotation, info.width, info.height) == (0, 64, 48)
    _, frame = next(iter_frames_at_rate(info, 25.0))
    assert _corners(frame) == [RED, BLACK, BLUE, BLACK]
