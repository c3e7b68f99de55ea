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
