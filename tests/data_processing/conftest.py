"""Fixtures for the data-processing tests: sample clips, synthetic media, processed datasets."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
HDTF = SHARED_DATA / "hdtf_aoc_8s.mp4"
FACE30 = SHARED_DATA / "face_30fps_7s.mp4"


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"sample clip {path} is absent (it lives in ../shared/data beside the repository)")
    return path


def write_wav(path: Path, seconds: float, rate: int = 44100, channels: int = 2, freq: float = 220.0) -> Path:
    """A tone as 16-bit PCM wav."""
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    data = np.repeat(tone[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path


def write_video(path: Path, frames: np.ndarray, fps: int, audio_seconds: float | None = None) -> Path:
    """Encode RGB frames [N, H, W, 3] losslessly (FFV1; use a .mkv path), optionally with an AAC tone track."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p"
        astream = None
        if audio_seconds is not None:
            astream = out.add_stream("aac", rate=16000)
            astream.layout = "mono"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            n = int(audio_seconds * 16000)
            samples = (0.1 * np.sin(np.arange(n) / 16000 * 2 * np.pi * 200) * 32767).astype(np.int16)
            for start in range(0, n, 1024):
                chunk = samples[start : start + 1024][None, :]
                af = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
                af.sample_rate = 16000
                for packet in astream.encode(af):
                    out.mux(packet)
            for packet in astream.encode():
                out.mux(packet)
    return path


def ffmpeg(*args) -> None:
    """Run imageio-ffmpeg's ffmpeg program (quiet, overwriting outputs); fail the test on an error."""
    import subprocess

    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"


def write_clapper_clip(path: Path, flash_frame: int, video_offset: float = 0.0, audio_offset: float = 0.0) -> Path:
    """A 3 s, 25 fps H.264/AAC clip with a clapper: frames ``flash_frame..+2`` of the video stream are white (the
    rest black) and the audio stream beeps (1 kHz) from 1.0 s to 1.1 s of its own time. ``video_offset`` and
    ``audio_offset`` delay each stream's start in the file (ffmpeg's ``-itsoffset``), as phones and screen
    recorders do."""
    ffmpeg(
        "-itsoffset", video_offset, "-f", "lavfi", "-i", "color=c=black:s=64x48:r=25:d=3",
        "-itsoffset", audio_offset, "-f", "lavfi",
        "-i", "aevalsrc='if(between(t,1,1.1),0.5*sin(2*PI*1000*t),0)':s=44100:d=3",
        "-vf", f"drawbox=x=0:y=0:w=64:h=48:color=white:t=fill:enable='between(n,{flash_frame},{flash_frame + 2})'",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", path,
    )  # fmt: skip
    return path


def pattern_frame() -> np.ndarray:
    """A 48x64 RGB frame that shows which way is up: a red block top-left, a blue block bottom-left."""
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:16, :16] = (255, 0, 0)
    frame[-16:, :16] = (0, 0, 255)
    return frame


def write_pattern_clip(path: Path, frames: int = 10) -> Path:
    """``pattern_frame()`` as an H.264 mp4 at 25 fps, with no rotation metadata."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pattern_frame(), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def index_frames(n: int, size: int = 64) -> np.ndarray:
    """Frames whose brightness encodes their index, to check resampling."""
    frames = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        frames[i] = int(20 + 200 * i / max(n - 1, 1))
    return frames


@pytest.fixture(scope="session")
def hdtf_dataset(tmp_path_factory) -> Path:
    """The sample clip processed with default settings (about 10 s)."""
    from data_processing.pipeline import Pipeline, ProcessingOptions

    out = tmp_path_factory.mktemp("hdtf") / "dataset"
    Pipeline(need(HDTF), out, options=ProcessingOptions()).run()
    return out
