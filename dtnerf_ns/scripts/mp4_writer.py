"""H.264 (+ AAC) mp4 writing for ``dtnerf-render``: the file appears only when complete."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np
from jaxtyping import Float

from dtnerf_ns.scripts.render_errors import RenderError


class Mp4Writer:
    """H.264 video + AAC audio (none when ``audio`` is None) into an mp4, written to a hidden temporary file and
    renamed only when complete."""

    def __init__(
        self, path: Path, width: int, height: int, fps: float, audio: Optional[Float[np.ndarray, "samples"]], rate: int
    ):
        import av  # noqa: PLC0415

        self.path = path
        self.tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
        try:
            self.container = av.open(str(self.tmp), mode="w", format="mp4")
        except Exception as err:  # noqa: BLE001 - unwritable directory, bad name, ...
            raise RenderError(f"cannot write {path}: {err}") from err
        self.video = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self.video.width, self.video.height = width, height
        self.video.pix_fmt = "yuv420p"  # plays everywhere (browsers, phones, QuickTime)
        self.video.options = {"crf": "18", "preset": "medium"}
        self.audio = None
        if audio is not None:
            self.audio = self.container.add_stream("aac", rate=rate)
            self.audio.layout = "mono"
            self._audio_pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
        self._rate = rate

    def write_frame(self, rgb: np.ndarray) -> None:
        import av  # noqa: PLC0415

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.video.encode(frame):
            self.container.mux(packet)

    def _write_audio(self) -> None:
        import av  # noqa: PLC0415

        chunk = 1024  # AAC frame size
        for start in range(0, len(self._audio_pcm), chunk):
            samples = self._audio_pcm[start : start + chunk]
            frame = av.AudioFrame.from_ndarray(samples[None], format="s16", layout="mono")
            frame.sample_rate = self._rate
            frame.pts = start
            frame.time_base = Fraction(1, self._rate)
            for packet in self.audio.encode(frame):
                self.container.mux(packet)
        for packet in self.audio.encode(None):
            self.container.mux(packet)

    def close(self) -> None:
        """Flushes the streams and moves the finished file into place."""
        for packet in self.video.encode(None):
            self.container.mux(packet)
        if self.audio is not None:
            self._write_audio()
        self.container.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drops the partial file."""
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - the container may be half-initialised; the file goes either way
            pass
        self.tmp.unlink(missing_ok=True)
