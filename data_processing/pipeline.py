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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from data_processing import dataset_layout as layout
from data_processing.audio_features import DEFAULT_KIND
from data_processing.errors import ProcessingError
from data_processing.io_utils import read_image, read_mask, save_npy, write_image, write_json, write_mask

STAGES = ("crop", "track", "audio", "poses", "masks", "signals", "finish")


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


def _file_id(path: Optional[Path]) -> Optional[dict]:
    if path is None:
        return None
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime": int(st.st_mtime)}


def _fingerprint(video: Path, audio: Optional[Path], options: ProcessingOptions, features: Optional[Path] = None) -> str:
    data = {"video": _file_id(video), "audio": _file_id(audio), "options": asdict(options), "version": layout.DATASET_VERSION}
    if features is not None:
        data["audio_features"] = _file_id(features)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def interpolate_gaps(landmarks: List[Optional[np.ndarray]]) -> np.ndarray:
    """Fill frames without a face by linear interpolation between the nearest found frames
    (or by copying the nearest one at the ends)."""
    found = np.array([lm is not None for lm in landmarks])
    idx = np.flatnonzero(found)
    shape = landmarks[idx[0]].shape
    stacked = np.stack([lm if lm is not None else np.zeros(shape, np.float32) for lm in landmarks])
    flat = stacked.reshape(len(landmarks), -1)
    for col in range(flat.shape[1]):
        flat[~found, col] = np.interp(np.flatnonzero(~found), idx, flat[idx, col])
    return flat.reshape(stacked.shape).astype(np.float32)


def longest_gap(found: np.ndarray) -> int:
    best = run = 0
    for f in found:
        run = 0 if f else run + 1
        best = max(best, run)
    return best


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
        self.state: Dict = {}
        self._audio_signal: Optional[np.ndarray] = None

    # -- bookkeeping -------------------------------------------------------------------------
    def _save_state(self) -> None:
        write_json(self.stage_dir / "stages.json", self.state)

    def _progress(self):
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
        from data_processing.audio import fit_audio_to_video, load_audio
        from data_processing.video import probe_video

        info = probe_video(self.video)
        if self.audio_path is None and not info.has_audio:
            raise ProcessingError(f"{self.video} has no audio track; pass the speech with --audio FILE.")
        n = self._expected_frames(info)
        if n < 16:
            raise ProcessingError(f"{self.video} gives only {n} frames at {self.options.fps:g} fps; at least 16 are needed (a talking clip of a few minutes is best).")
        # Decoded once: checked here, turned into features by the audio stage of this run.
        self._audio_signal = load_audio(self.audio_path or self.video)
        fit_audio_to_video(self._audio_signal, n / self.options.fps)
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

    def _expected_frames(self, info) -> int:
        n = info.num_output_frames(self.options.fps)
        return n if self.options.max_frames is None else min(n, self.options.max_frames)

    def run(self) -> dict:
        info, already = self._check_inputs()
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
        if self.state.get("fingerprint") != fingerprint:
            shutil.rmtree(self.stage_dir, ignore_errors=True)
            self.state = {"fingerprint": fingerprint, "done": {}, "timings": {}}
        elif self.state["done"]:
            self.console.print(f"Resuming: stages {', '.join(self.state['done'])} already done in {self.stage_dir}.")
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        self._save_state()
        try:
            for name in STAGES:
                if name in self.state["done"]:
                    continue
                start = time.perf_counter()
                result = getattr(self, f"_stage_{name}")() or {}
                self.state["timings"][name] = round(time.perf_counter() - start, 3)
                self.state["done"][name] = result
                self._save_state()
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

    def _result(self, stage: str) -> dict:
        return self.state["done"][stage]

    @property
    def num_frames(self) -> int:
        return self._result("track")["num_frames"]

    # -- stages ------------------------------------------------------------------------------
    def _stage_crop(self) -> dict:
        from data_processing.face_tracking import find_crop
        from data_processing.video import sample_frames

        with self.console.status("Finding the face region..."):
            crop, rate = find_crop(sample_frames(self.info), self.info.width, self.info.height, self.options.crop_scale)
        self.console.print(f"crop: {crop.size}x{crop.size} px at ({crop.x0}, {crop.y0}) of {self.info.width}x{self.info.height}, resized to {self.options.size}")
        return {"x0": crop.x0, "y0": crop.y0, "size": crop.size, "sample_face_rate": rate}

    def _stage_track(self) -> dict:
        import cv2

        from data_processing.face_tracking import CropBox, FaceTracker
        from data_processing.masks import BackgroundAccumulator
        from data_processing.video import iter_frames_at_rate, prefetch

        root, size, opts = self.stage_dir, self.options.size, self.options
        for sub in ["images"] + [f"masks/{k}" for k in layout.MASK_KINDS] + ["semantics", "headless"]:
            (root / sub).mkdir(parents=True, exist_ok=True)
        crop = CropBox(**{k: self._result("crop")[k] for k in ("x0", "y0", "size")})
        expected = self._expected_frames(self.info)
        landmarks: List[Optional[np.ndarray]] = []
        background = BackgroundAccumulator(size, size)
        start = time.perf_counter()
        with FaceTracker() as tracker, ThreadPoolExecutor(2) as pool, self._progress() as progress:
            task = progress.add_task("frames", total=expected, rate="")
            pending = []
            for k, frame in prefetch(iter_frames_at_rate(self.info, opts.fps, expected)):
                image = crop.apply(frame)
                if image.shape[0] != size:
                    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC)
                image = np.ascontiguousarray(image)
                landmarks.append(tracker.landmarks(image))
                person = tracker.person_mask(image)
                background.add(image, person)
                pending.append(pool.submit(write_image, layout.image_path(root, k), image))
                pending.append(pool.submit(write_mask, layout.mask_path(root, "person", k), person))
                if len(pending) > 64:  # bound memory: frames stream to disk
                    for f in pending:
                        f.result()
                    pending = []
                progress.update(task, advance=1, rate=f"{(k + 1) / (time.perf_counter() - start):.0f} frames/s")
            for f in pending:
                f.result()
        n = len(landmarks)
        if n < 16:
            raise ProcessingError(f"only {n} frames could be decoded from {self.video}; at least 16 are needed.")
        found = np.array([lm is not None for lm in landmarks])
        rate = float(found.mean())
        gap = longest_gap(found)
        if rate < opts.min_face_rate or found.sum() < 2:
            raise ProcessingError(
                f"a face was found in only {int(found.sum())} of {n} frames ({100 * rate:.0f}%, at least {100 * opts.min_face_rate:.0f}% needed); "
                "use a clip where one face is visible throughout."
            )
        if gap > opts.max_gap_seconds * opts.fps:
            raise ProcessingError(f"no face for {gap} frames in a row ({gap / opts.fps:.1f} s, at most {opts.max_gap_seconds:g} s allowed); trim the clip to the part where the face is visible.")
        save_npy(root / layout.LANDMARKS, interpolate_gaps(landmarks))
        save_npy(root / "face_found.npy", found)
        bg, filled = background.result()
        write_image(root / layout.BACKGROUND, bg)
        return {"num_frames": n, "face_rate": rate, "frames_without_face": int((~found).sum()), "longest_gap": gap, "background_filled_fraction": filled}

    def _stage_audio(self) -> dict:
        from data_processing import audio as audio_mod
        from data_processing import audio_features

        n, fps = self.num_frames, self.options.fps
        source = self.audio_path or self.video
        signal = self._audio_signal
        raw_seconds = len(signal) / audio_mod.SAMPLE_RATE
        fit = audio_mod.fit_audio_to_video(signal, n / fps)
        if fit.padded_seconds > 0:
            self.console.print(f"[yellow]note:[/yellow] the audio is {fit.padded_seconds:.2f} s shorter than the video; padded with silence.")
        if self.features_path is not None:
            feats = audio_features.load_feature_file(self.features_path, n, fps, self.info.num_output_frames(fps))
            kind = audio_features.feature_kind_of_file(self.features_path)
        else:
            kind = self.options.audio_feature_kind
            with self.console.status(f"Computing audio features ({kind})..."):
                feats = audio_features.audio_windows_for_frames(fit.signal, n, fps, kind)
        if feats.shape[0] != n:
            raise ProcessingError(f"audio features have {feats.shape[0]} frames but the video has {n}.")
        audio_mod.write_wav(self.stage_dir / layout.AUDIO_WAV, fit.signal)
        save_npy(self.stage_dir / layout.AUDIO_FEATURES, feats)
        return {
            "source": str(source),
            "seconds": raw_seconds,
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
        size, focal = self.options.size, self._focal()
        with self.console.status("Fitting head poses..."):
            canonical = hp.canonical_face(landmarks)
            raw = hp.fit_head_poses(landmarks, canonical, focal, size / 2, size / 2)
            smooth = hp.smooth_head_poses(raw, self.options.pose_smoothing)
        c2w = hp.camera_to_world(smooth)
        save_npy(self.stage_dir / "camera_to_world.npy", c2w.astype(np.float32))
        save_npy(self.stage_dir / layout.CANONICAL_FACE, (canonical @ hp.FLIP_YZ).astype(np.float32))
        # How well the smoothed cameras explain the landmarks: mean reprojection error (pixels).
        from data_processing.face_regions import STABLE_POINTS

        world = canonical[STABLE_POINTS] @ hp.FLIP_YZ
        errors = [np.linalg.norm(hp.project(world, m, focal, size / 2, size / 2) - lm[STABLE_POINTS, :2], axis=1).mean() for m, lm in zip(c2w, landmarks)]
        before, after = hp.pose_jitter(raw), hp.pose_jitter(smooth)
        self.console.print(
            f"head pose jitter: rotation {before['rotation_deg']:.3f} -> {after['rotation_deg']:.3f} deg, "
            f"translation {before['translation_pct_face']:.2f} -> {after['translation_pct_face']:.2f} % of face width; "
            f"reprojection {np.mean(errors):.2f} px"
        )
        distance = np.linalg.norm(c2w[:, :3, 3], axis=1)
        return {"jitter_before": before, "jitter_after": after, "reprojection_px": float(np.mean(errors)), "focal": focal, "camera_distance": [float(distance.min()), float(distance.max())]}

    def _stage_masks(self) -> dict:
        from data_processing.masks import frame_masks, headless_image, semantic_map

        root, n = self.stage_dir, self.num_frames
        landmarks = np.load(root / layout.LANDMARKS)
        background = read_image(root / layout.BACKGROUND)
        counts = np.zeros(len(layout.MASK_KINDS))

        def one(i: int) -> np.ndarray:
            image = read_image(layout.image_path(root, i))
            person = read_mask(layout.mask_path(root, "person", i))
            m = frame_masks(landmarks[i], person, image)
            for kind in layout.MASK_KINDS:
                if kind != "person":
                    write_mask(layout.mask_path(root, kind, i), getattr(m, kind))
            write_image(layout.semantics_path(root, i), semantic_map(landmarks[i], m))
            write_image(layout.headless_path(root, i), headless_image(image, background, m))
            return np.array([getattr(m, k).any() for k in layout.MASK_KINDS])

        start = time.perf_counter()
        with ThreadPoolExecutor(2) as pool, self._progress() as progress:
            task = progress.add_task("masks", total=n, rate="")
            for done, nonempty in enumerate(pool.map(one, range(n)), 1):
                counts += nonempty
                progress.update(task, advance=1, rate=f"{done / (time.perf_counter() - start):.0f} frames/s")
        return {"nonempty_fraction": {k: float(c / n) for k, c in zip(layout.MASK_KINDS, counts)}}

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
        audio = self._result("audio")
        transforms = dataset_files.transforms_json(
            root, c2w, self._result("poses")["focal"], self.options.size, self.options.fps, train, val,
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
            "crop": self._result("crop"),
            "audio": audio,
            "face_detection_rate": self._result("track")["face_rate"],
            "frames_without_face": self._result("track")["frames_without_face"],
            "background_filled_fraction": self._result("track")["background_filled_fraction"],
            "pose": self._result("poses"),
            "masks": self._result("masks"),
            "signals": self._result("signals"),
            "timings_seconds": timings,
            "frames_per_second": {k: round(n / v, 1) for k, v in timings.items() if k in ("track", "masks") and v > 0},
        }
        write_json(root / layout.REPORT, report)
        return {}
