"""``dtnerf-process``: turn a talking video into a DT-NeRF training dataset.

Example::

    dtnerf-process talking.mp4 --output-dir data/me
    dtnerf-process talking.mp4 --output-dir data/me --audio speech.wav --fps 25 --size 512
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import tyro
from typing_extensions import Annotated

from data_processing.audio_features import DEFAULT_KIND, FeatureKindName
from data_processing.errors import ProcessingError


def default_workers() -> int:
    """One frame worker per CPU core (mediapipe runs on one), at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


@dataclass
class ProcessVideo:
    """Turn a video of one person talking into a dataset for `ns-train dtnerf`.

    Stages: find the face region, decode and crop frames, track the face mesh and the person,
    extract audio features, fit head poses (cameras), draw masks and semantic maps, compute
    blink and expression signals, then write transforms.json, report.json and a contact sheet.
    An interrupted run resumes when the same command is run again.
    """

    video: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="VIDEO")]
    """Input video (mp4, mov, mkv, ...) of one person talking, a few minutes long."""
    output_dir: Annotated[Path, tyro.conf.arg(aliases=["-o"])]
    """Directory to write the dataset to."""
    audio: Optional[Path] = None
    """Speech audio to use instead of the video's own track (wav, mp3, m4a or a video file)."""
    audio_feature_kind: FeatureKindName = DEFAULT_KIND
    """Audio features to compute: soft viseme evidence from pocketsphinx's packaged phone decoder beside running
    log-mel channels (default), either alone, or the old whole-utterance log-mel (see data_processing/audio_features.py)."""
    audio_features: Optional[Path] = None
    """Your own audio features (.npy) instead of ours: DeepSpeech [N, 16, 29], wav2vec/HuBERT [N, 16, 1024], or
    [T, C] at 50 Hz, N = the dataset's frame count. dtnerf-render then needs the same encoder's features of the new
    audio (--audio-features)."""
    fps: float = 25.0
    """Frame rate of the dataset; other rates are resampled by timestamps."""
    size: int = 512
    """Side of the square frames, in pixels."""
    crop_scale: float = 2.6
    """Side of the square crop as a multiple of the face's size (the crop is clamped to the frame)."""
    pose_smoothing: float = 1.0
    """Gaussian smoothing of head poses over time, in frames (0 turns it off)."""
    min_face_rate: float = 0.9
    """Refuse the video when a face is found in fewer than this fraction of frames."""
    max_frames: Optional[int] = None
    """Only process the first N frames (for quick trials)."""
    rotate: Literal[0, 90, 180, 270] = 0
    """Turn the frames this many degrees clockwise, besides the video's own rotation metadata: for a clip stored
    sideways without it (dtnerf-process says which turn stands the head upright)."""
    workers: int = field(default_factory=default_workers)
    """Worker processes that track the frames side by side (default: one per CPU core, at most 8), plus one for the
    audio features meanwhile; 0 runs everything in this process."""
    overwrite: bool = False
    """Replace an existing dataset in --output-dir."""

    def main(self) -> int:
        from rich.console import Console

        from data_processing.pipeline import Pipeline, ProcessingOptions

        console = Console(stderr=True)
        options = ProcessingOptions(
            fps=self.fps,
            size=self.size,
            crop_scale=self.crop_scale,
            pose_smoothing=self.pose_smoothing,
            min_face_rate=self.min_face_rate,
            max_frames=self.max_frames,
            audio_feature_kind=self.audio_feature_kind,
            rotate=self.rotate,
        )
        for name, ok, hint in (
            ("--fps", self.fps > 0, "a positive number such as 25"),
            ("--size", self.size >= 32, "at least 32"),
            ("--crop-scale", self.crop_scale >= 1.0, "at least 1"),
            ("--min-face-rate", 0.0 <= self.min_face_rate <= 1.0, "between 0 and 1"),
            ("--max-frames", self.max_frames is None or self.max_frames >= 16, "at least 16"),
            ("--workers", self.workers >= 0, "0 or more"),
        ):
            if not ok:
                raise ProcessingError(f"{name} must be {hint}.")
        start = time.perf_counter()
        report = Pipeline(
            self.video, self.output_dir, self.audio, options, self.overwrite, console, audio_features=self.audio_features,
            workers=self.workers,
        ).run()
        seconds = time.perf_counter() - start
        console.print(
            f"[bold green]Dataset ready:[/bold green] {self.output_dir}  ({report['frames']} frames, "
            f"{report['split']['train']} train / {report['split']['test']} test, face found in "
            f"{100 * report['face_detection_rate']:.0f}% of frames, {seconds:.1f} s)"
        )
        console.print(f"  report:        {self.output_dir / 'report.json'}")
        console.print(f"  contact sheet: {self.output_dir / 'contact_sheet.png'}")
        console.print(f"  train with:    ns-train dtnerf --data {shlex.quote(str(self.output_dir))}")
        return 0


def entrypoint() -> None:
    """Console-script entry point: one clear line and a non-zero exit on bad input."""
    # mediapipe logs through glog/absl at start-up; keep the terminal for our own messages.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = tyro.cli(ProcessVideo)
    try:
        code = args.main()
    except ProcessingError as exc:
        print(f"dtnerf-process: error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    entrypoint()
