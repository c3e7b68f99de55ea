"""The dtnerf-process pipeline: video -> dataset, in resumable stages.

Work happens in a staging directory beside the output (``.<name>.partial``). Each stage records
its completion in ``stages.json`` there, so re-running the same command after an interruption
resumes at the first unfinished stage. Only when every stage is done is the staging directory
renamed to the output directory, so the output is never half-written. Bad input raises
``ProcessingError`` and removes the staging directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from data_processing import dataset_layout as layout
from data_processing import frame_stages
from data_processing.audio_features import DEFAULT_KIND
from data_processing.errors import ProcessingError
from data_processing.io_utils import save_npy, write_json

STAGES = ("crop", "background", "track", "audio", "poses", "masks", "signals", "finish")
STAGE_LAYOUT = 2
"""Changes when the stages' work changes: a staging folder left by another layout is started afresh."""
BACKGROUND_SAMPLES = 200
"""Frames, spread over the clip, from which the static background is estimated."""


@dataclass
class ProcessingOptions:
    """Settings that change the dataset (part of the resume fingerprint)."""

    fps: float = 25.0
    size: int = 512
    crop_scale: float = 2.6
    pose_smoothing: float = 1.0
    min_face_rate: float = 0.9
    max_gap_seconds: float = 1.0
    expression_dim: int = 76
    val_fraction: float = 1.0 / 8.0
    max_frames: Optional[int] = None
    focal: Optional[float] = None
    audio_feature_kind: str = DEFAULT_KIND
    """One of ``audio_features.FEATURE_KINDS`` (ignored when the user brings a features file)."""
    rotate: int = 0
    """Clockwise degrees (0, 90, 180, 270) to turn the frames besides the file's own rotation metadata."""


def _file_id(path: Optional[Path]) -> Optional[dict]:
    if path is None:
        return None
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime": int(st.st_mtime)}


def _fingerprint(video: Path, audio: Optional[Path], options: ProcessingOptions, features: Optional[Path] = None) -> str:
    settings = asdict(options)
    if not settings["rotate"]:  # an option added later: datasets made without it keep their fingerprint
        del settings["rotate"]
    data = {"video": _file_id(video), "audio": _file_id(audio), "options": settings, "version": layout.DATASET_VERSION}
    if features is not None:
        data["audio_features"] = _file_id(features)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class Pipeline:
    """Runs the stages for one video; ``run()`` returns the finished dataset's report."""

    def __init__(
        self,
        video: Path,
        output_dir: Path,
        audio: Optional[Path] = None,
        options: ProcessingOptions = ProcessingOptions(),
        overwrite: bool = False,
        console=None,
        audio_features: Optional[Path] = None,
        workers: int = 2,
    ):
        from rich.console import Console

        self.video = Path(video)
        self.audio_path = Path(audio) if audio is not None else None
        self.features_path = Path(audio_features) if audio_features is not None else None
        """Audio features the user computed (DeepSpeech, wav2vec, HuBERT), used instead of ours."""
        self.output_dir = Path(output_dir)
        self.options = options
        self.overwrite = overwrite
        self.console = console or Console(stderr=True)
        self.stage_dir = self.output_dir.parent / f".{self.output_dir.name}.partial"
        self.workers = workers
        """Worker processes for the frames (and one more for the audio features); 0: all in this process."""
        self.state: Dict = {}
        self._audio_signal: Optional[np.ndarray] = None
        self._audio_offset = 0.0
        self._audio_features = None
        """The audio features being computed in a worker since the start (a future), while the video is tracked."""

    # -- bookkeeping -------------------------------------------------------------------------
    def _save_state(self) -> None:
        write_json(self.stage_dir / "stages.json", self.state)

    def progress_bar(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        return Progress(
            TextColumn("[bold blue]{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )

    def _check_inputs(self):
        """Everything that can be refused before any work: runs before the staging dir exists."""
        from data_processing.audio import decode_audio, fit_audio_to_video
        from data_processing.input_checks import check_speech
        from data_processing.video import probe_video

        info = probe_video(self.video, extra_rotation=self.options.rotate)
        if self.audio_path is None and not info.has_audio:
            raise ProcessingError(f"{self.video} has no audio track; pass the speech with --audio FILE.")
        n = self.expected_frames(info)
        if n < 16:
            raise ProcessingError(f"{self.video} gives only {n} frames at {self.options.fps:g} fps; at least 16 are needed (a talking clip of a few minutes is best).")
        # Decoded once: checked here, turned into features by the audio stage of this run.
        decoded = decode_audio(self.audio_path or self.video)
        self._audio_signal, self._audio_offset = decoded.signal, decoded.start_offset_seconds
        fit_audio_to_video(self._audio_signal, n / self.options.fps)
        if self.features_path is None:
            check_speech(self._audio_signal, self.audio_path or self.video, from_option=self.audio_path is not None)
        if self.features_path is not None:
            from data_processing.audio_features import load_feature_file

            # Refuse a wrong shape before any work.
            load_feature_file(self.features_path, n, self.options.fps, info.num_output_frames(self.options.fps))
        else:
            from data_processing.audio_features import check_kind

            check_kind(self.options.audio_feature_kind)
        if self.output_dir.exists():
            if self.output_dir.is_file():
                raise ProcessingError(f"--output-dir {self.output_dir} is a file; choose a directory.")
            contents = list(self.output_dir.iterdir())
            if contents and not self.overwrite:
                if layout.is_dataset(self.output_dir):
                    old = json.loads((self.output_dir / layout.REPORT).read_text(encoding="utf-8"))
                    if old.get("fingerprint") == _fingerprint(self.video, self.audio_path, self.options, self.features_path):
                        return info, True
                    raise ProcessingError(
                        f"{self.output_dir} already holds a different dataset (from {old.get('source', {}).get('video', '?')}); "
                        "choose another --output-dir or pass --overwrite."
                    )
                raise ProcessingError(f"{self.output_dir} is not empty and is not a dtnerf dataset; choose another --output-dir or pass --overwrite.")
        return info, False

    def expected_frames(self, info) -> int:
        n = info.num_output_frames(self.options.fps)
        return n if self.options.max_frames is None else min(n, self.options.max_frames)

    def run(self) -> dict:
        info, already = self._check_inputs()
        self.pool = None
        if already:
            self.console.print(f"[green]Already processed:[/green] {self.output_dir} (same video and options).")
            return json.loads((self.output_dir / layout.REPORT).read_text(encoding="utf-8"))
        self.info = info
        fingerprint = _fingerprint(self.video, self.audio_path, self.options, self.features_path)
        state_file = self.stage_dir / "stages.json"
        if state_file.is_file():
            try:
                self.state = json.loads(state_file.read_text(encoding="utf-8"))
            except ValueError:
                self.state = {}
        if self.state.get("fingerprint") != fingerprint or self.state.get("layout") != STAGE_LAYOUT:
            shutil.rmtree(self.stage_dir, ignore_errors=True)
            self.state = {"fingerprint": fingerprint, "layout": STAGE_LAYOUT, "done": {}, "timings": {}}
        elif self.state["done"]:
            self.console.print(f"Resuming: stages {', '.join(self.state['done'])} already done in {self.stage_dir}.")
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        self._save_state()
        from data_processing.frame_pass import Workers

        try:
            # One more worker than the frames' ranges: the audio features are computed meanwhile.
            with Workers(self.workers + 1 if self.workers > 0 else 0) as self.pool:
                self._start_audio_features()
                for name in STAGES:
                    self._run_stage(name)
        except ProcessingError:
            shutil.rmtree(self.stage_dir, ignore_errors=True)
            raise
        except KeyboardInterrupt:
            self.console.print(f"[yellow]Interrupted.[/yellow] Work so far is kept in {self.stage_dir}; run the same command again to resume.")
            raise
        (self.stage_dir / "stages.json").unlink()
        if self.output_dir.exists():
            shutil.rmtree(self.output_dir)
        self.stage_dir.rename(self.output_dir)
        return json.loads((self.output_dir / layout.REPORT).read_text(encoding="utf-8"))

    def _run_stage(self, name: str) -> None:
        if name not in self.state["done"]:
            self._started = time.perf_counter()
            self._record(name, getattr(self, f"_stage_{name}")() or {})

    def _record(self, name: str, result: dict) -> None:
        """Marks a stage done (the staging folder's stages.json) with its result and the seconds since it started."""
        self.state["timings"][name] = round(time.perf_counter() - self._started, 3)
        self.state["done"][name] = result
        self._save_state()

    def result(self, stage: str) -> dict:
        return self.state["done"][stage]

    @property
    def num_frames(self) -> int:
        return self.result("track")["num_frames"]

    # -- stages ------------------------------------------------------------------------------
    # Stages on the video's frames: data_processing/frame_stages.py.
    def _stage_crop(self) -> dict:
        return frame_stages.crop(self)

    def _stage_background(self) -> dict:
        return frame_stages.background(self)

    def _stage_track(self) -> dict:
        return frame_stages.track(self)

    def crop_box(self):
        from data_processing.face_tracking import CropBox

        return CropBox(**{k: self.result("crop")[k] for k in ("x0", "y0", "size")})

    def progress_callback(self, progress, name: str, total: int):
        """A progress task; returns the callback that advances it by the frames workers report."""
        task = progress.add_task(name, total=total, rate="")
        state = {"done": 0, "start": time.perf_counter()}

        def advance(frames: int) -> None:
            state["done"] += frames
            rate = state["done"] / max(1e-9, time.perf_counter() - state["start"])
            progress.update(task, advance=frames, rate=f"{rate:.0f} frames/s")

        return advance

    def _fitted_audio(self, n: int):
        from data_processing import audio as audio_mod

        return audio_mod.fit_audio_to_video(self._audio_signal, n / self.options.fps)

    def _start_audio_features(self) -> None:
        """Starts our audio features in a worker, for the frame count the video should give, before the video is
        tracked (the audio stage takes them, or computes them again if fewer frames decoded)."""
        if "audio" in self.state["done"] or self.features_path is not None:
            return
        from data_processing.audio_features import audio_windows_for_frames

        n = self.expected_frames(self.info)
        self._audio_features = (n, self.pool.submit(
            audio_windows_for_frames, self._fitted_audio(n).signal, n, self.options.fps, self.options.audio_feature_kind
        ))  # fmt: skip

    def _stage_audio(self) -> dict:
        from data_processing import audio as audio_mod
        from data_processing import audio_features

        n, fps = self.num_frames, self.options.fps
        source = self.audio_path or self.video
        signal = self._audio_signal
        raw_seconds = len(signal) / audio_mod.SAMPLE_RATE
        fit = self._fitted_audio(n)
        if fit.padded_seconds > 0:
            self.console.print(f"[yellow]note:[/yellow] the audio is {fit.padded_seconds:.2f} s shorter than the video; padded with silence.")
        if self.features_path is not None:
            feats = audio_features.load_feature_file(self.features_path, n, fps, self.info.num_output_frames(fps))
            kind = audio_features.feature_kind_of_file(self.features_path)
        else:
            kind = self.options.audio_feature_kind
            with self.console.status(f"Computing audio features ({kind})..."):
                started = self._audio_features
                if started is not None and started[0] == n:
                    feats = self.pool.wait([started[1]], lambda frames: None)[0]
                else:  # resumed, or fewer frames decoded than expected
                    feats = audio_features.audio_windows_for_frames(fit.signal, n, fps, kind)
        if feats.shape[0] != n:
            raise ProcessingError(f"audio features have {feats.shape[0]} frames but the video has {n}.")
        audio_mod.write_wav(self.stage_dir / layout.AUDIO_WAV, fit.signal)
        save_npy(self.stage_dir / layout.AUDIO_FEATURES, feats)
        return {
            "source": str(source),
            "seconds": raw_seconds,
            "start_offset_seconds": self._audio_offset,
            "padded_seconds": fit.padded_seconds,
            "trimmed_seconds": fit.trimmed_seconds,
            "feature_shape": list(feats.shape),
            "feature_kind": kind,
        }

    def _focal(self) -> float:
        from data_processing.head_pose import DEFAULT_FOCAL_AT_512

        return self.options.focal or DEFAULT_FOCAL_AT_512 * self.options.size / 512.0

    def _stage_poses(self) -> dict:
        from data_processing import head_pose as hp

        landmarks = np.load(self.stage_dir / layout.LANDMARKS)
        with self.console.status("Fitting head poses..."):
            fit = hp.fit_cameras(landmarks, self.options.size, self._focal(), self.options.pose_smoothing)
        save_npy(self.stage_dir / "camera_to_world.npy", fit.camera_to_world.astype(np.float32))
        save_npy(self.stage_dir / layout.CANONICAL_FACE, fit.canonical_world.astype(np.float32))
        before, after = fit.summary["jitter_before"], fit.summary["jitter_after"]
        self.console.print(
            f"head pose jitter: rotation {before['rotation_deg']:.3f} -> {after['rotation_deg']:.3f} deg, "
            f"translation {before['translation_pct_face']:.2f} -> {after['translation_pct_face']:.2f} % of face width; "
            f"reprojection {fit.summary['reprojection_px']:.2f} px"
        )
        return fit.summary

    def _stage_masks(self) -> dict:
        return frame_stages.gap_masks(self)

    def _stage_signals(self) -> dict:
        from data_processing import head_pose as hp
        from data_processing.signals import blink_signal, expression_coefficients

        landmarks = np.load(self.stage_dir / layout.LANDMARKS)
        canonical = np.load(self.stage_dir / layout.CANONICAL_FACE) @ hp.FLIP_YZ
        normalised = hp.fit_similarities(landmarks, canonical).to_canonical(landmarks)
        blink = blink_signal(normalised)
        coeffs, basis = expression_coefficients(normalised, self.options.expression_dim)
        save_npy(self.stage_dir / layout.BLINK, blink)
        save_npy(self.stage_dir / layout.EXPRESSION, coeffs)
        tmp = self.stage_dir / ".expression_basis.tmp.npz"
        np.savez(tmp, **basis)
        tmp.replace(self.stage_dir / layout.EXPRESSION_BASIS)
        return {"blink_frames": int((blink > 0.5).sum()), "expression_shape": list(coeffs.shape)}

    def _split(self) -> tuple:
        n = self.num_frames
        n_val = max(1, int(round(n * self.options.val_fraction)))
        return list(range(n - n_val)), list(range(n - n_val, n))

    def _stage_finish(self) -> dict:
        from data_processing import dataset_files

        root, n = self.stage_dir, self.num_frames
        c2w = np.load(root / "camera_to_world.npy")
        (root / "camera_to_world.npy").unlink()
        train, val = self._split()
        audio = self.result("audio")
        transforms = dataset_files.transforms_json(
            root, c2w, self.result("poses")["focal"], self.options.size, self.options.fps, train, val,
            dataset_files.mouth_box(np.load(root / layout.CANONICAL_FACE)), audio["feature_shape"][1:], audio["feature_kind"],
        )  # fmt: skip
        write_json(root / layout.TRANSFORMS, transforms)
        dataset_files.write_contact_sheet(root, c2w, n, train, val)
        timings = dict(self.state["timings"])
        source = {"video": str(self.video), "audio": str(self.audio_path or self.video), "width": self.info.width,
                  "height": self.info.height, "fps": self.info.fps, "duration": self.info.duration}  # fmt: skip
        report = {
            "format": layout.DATASET_FORMAT,
            "version": layout.DATASET_VERSION,
            "fingerprint": self.state["fingerprint"],
            "source": source,
            "options": asdict(self.options),
            "frames": n,
            "fps": self.options.fps,
            "size": self.options.size,
            "split": {"train": len(train), "test": len(val)},
            "crop": self.result("crop"),
            "audio": audio,
            "face_detection_rate": self.result("track")["face_rate"],
            "frames_without_face": self.result("track")["frames_without_face"],
            "background_filled_fraction": self.result("background")["filled_fraction"],
            "pose": self.result("poses"),
            "masks": self.result("masks"),
            "signals": self.result("signals"),
            "workers": self.result("track").get("workers", 1),
            "timings_seconds": timings,
            "frames_per_second": {k: round(n / v, 1) for k, v in timings.items() if k in ("track", "masks") and v > 0},
        }
        write_json(root / layout.REPORT, report)
        return {}
