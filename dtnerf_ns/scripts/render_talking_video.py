"""``dtnerf-render``: a talking video of the trained person, driven by any speech audio, with the sound in the file,
or (a model driven by expressions) by the facial expressions of a video or dataset.

Examples::

    dtnerf-render --load-config outputs/me/dtnerf/2026-11-21_120000/config.yml --audio speech.mp3 --output talk.mp4
    dtnerf-render --load-config outputs/me/sahs-nerf/2026-11-21_120000/config.yml --expressions-from other.mp4 -o re.mp4

The audio goes through the same feature pipeline as ``dtnerf-process`` (:mod:`data_processing.audio`). Each output frame
is rendered with the new audio window, a head pose and the eye blink of a training frame (by default the training
frames are walked forward and back, so the head keeps moving naturally for any audio length), and the head is
composited over that training frame's head-less image (torso + background), as ER-NeRF renders new audio. With
``--expressions-from`` each frame gets the driver's expression instead (:mod:`dtnerf_ns.scripts.expression_driver`).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import numpy as np
import tyro
from jaxtyping import Float
from typing_extensions import Annotated

from data_processing.dataset_layout import frame_time
from data_processing.errors import ProcessingError
from dtnerf_ns.scripts.mp4_writer import Mp4Writer
from dtnerf_ns.scripts.render_errors import RenderError
from dtnerf_ns.scripts.render_poses import nearest_poses, ping_pong, read_pose_file
from dtnerf_ns.scripts.trained_model import TrainedModelError

MIN_RMS = 1e-4
"""Audio quieter than this (RMS of the [-1, 1] signal, about -80 dBFS) counts as silent."""


# ---------------------------------------------------------------- audio
def smooth_windows(
    windows: Float[np.ndarray, "frames steps channels"],
) -> Float[np.ndarray, "frames steps channels"]:
    """Average each frame's audio window with its neighbours' (weights 1-2-1), for steadier lips on noisy speech.

    AD-NeRF / ER-NeRF smooth audio codes over 8 neighbouring frames with a learned attention net (ours does too); this
    extra input smoothing is the ``--smooth`` option, off by default.
    """
    padded = np.concatenate([windows[:1], windows, windows[-1:]], axis=0)
    return (0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]).astype(np.float32)


# ---------------------------------------------------------------- the command
@dataclass
class RenderTalkingVideo:
    """Render a talking video of a trained model (dtnerf or any method of this package) driven by new speech, with
    the audio muxed in (H.264 mp4); or, for a model trained with --pipeline.model.driver expression, driven by the
    facial expressions of a video or dataset (--expressions-from), with its sound when it has one.

    Head poses and eye blinks replay the training frames (forward and back) unless --pose-frame or --poses is given.
    The render is composited over the backdrop of the training frame of the same pose (the head-less frame for
    dtnerf), at the dataset's full resolution.
    """

    load_config: Path
    """config.yml of the trained run (written by ns-train)."""
    audio: Optional[Path] = None
    """Driving speech: wav, mp3, m4a, or a video file's audio track (any sample rate, any channels). Give either
    --audio (audio-driven models) or --expressions-from (expression-driven models)."""
    expressions_from: Optional[Path] = None
    """Drive an expression-driven model with the facial expressions of this video (its face is tracked as
    dtnerf-process does) or dtnerf-process dataset directory, resampled to the model's frame rate; its sound, if
    any, is muxed in. Another person's expressions transfer as changes from their own mean face."""
    split: Literal["all", "train", "test"] = "all"
    """With a dataset in --expressions-from: follow its frames of this split (test: the held-out frames)."""
    output: Annotated[Path, tyro.conf.arg(aliases=["-o"])] = Path("talking.mp4")
    """The mp4 to write (H.264, with AAC sound when the driver has sound)."""
    audio_features: Optional[Path] = None
    """The driving audio's features from your own encoder (.npy), for a model whose dataset was made with
    dtnerf-process --audio-features: [N, 16, C] windows (one per output frame) or [T, C] at 50 Hz, covering the
    --start/--duration span of --audio."""
    start: float = 0.0
    """Seconds to skip at the start of the audio (or of the --expressions-from driver). The features of the span are
    those it has inside the whole file (computed with the audio before it as context)."""
    duration: Optional[float] = None
    """Seconds of audio (or driver) to render (default: all of it)."""
    pose_frame: Optional[int] = None
    """Keep the head still in the pose of this training frame (dataset frame index; blinks still replay the training
    frames)."""
    poses: Optional[Path] = None
    """Poses to follow (.npy [K,4,4] or a transforms.json-style file, dataset convention), walked forward and back;
    the backdrop and blink come from the training frame with the nearest pose."""
    head_only: bool = False
    """Render the head over the static background (no torso) instead of over the head-less frames."""
    resolution_scale: float = 1.0
    """Output size relative to the dataset's frames (1.0 = full resolution, e.g. 512x512)."""
    smooth: bool = False
    """Smooth the audio features over neighbouring frames (1-2-1 weights) before rendering."""
    all_rays: bool = False
    """Render every ray. By default, with the training frames' own poses, only rays inside the source frame's head
    region (its person mask less the torso, grown by 6% of the width) are rendered: elsewhere the head is empty and
    the frame is its backdrop (about 2x faster). --poses and --pose-frame always render every ray."""

    # ------------------------------------------------------------ inputs
    def _read_audio(self) -> Tuple[np.ndarray, np.ndarray]:
        """The whole driving audio (16 kHz mono) and its --start/--duration span; refuses silence."""
        from data_processing.audio import SAMPLE_RATE, load_audio  # noqa: PLC0415

        whole = load_audio(self.audio)
        begin = int(round(self.start * SAMPLE_RATE))
        end = len(whole) if self.duration is None else begin + int(round(self.duration * SAMPLE_RATE))
        signal = whole[begin:end]
        if len(signal) == 0:
            raise RenderError(f"{self.audio}: no audio left after --start {self.start} s.")
        if float(np.sqrt(np.mean(signal.astype(np.float64) ** 2))) < MIN_RMS:
            raise RenderError(f"{self.audio}: the audio is silent; pass a file with speech in it.")
        return whole, signal

    def _driving_windows(self, whole: np.ndarray, metadata: dict, num_frames: int, fps: float) -> np.ndarray:
        """The span's feature windows, of the kind and shape the model was trained on (smoothed with --smooth)."""
        windows = self._feature_windows(whole, str(metadata["audio_feature_kind"]), num_frames, fps)
        trained_shape = tuple(metadata["audio_features"].shape[1:])
        if windows.shape[1:] != trained_shape:
            raise RenderError(
                f"--audio-features {self.audio_features}: windows of {list(windows.shape[1:])} per frame, but the model "
                f"was trained on {list(trained_shape)}; use the encoder that made the training features."
            )
        return smooth_windows(windows) if self.smooth else windows

    def _feature_windows(self, whole: np.ndarray, trained_kind: str, num_frames: int, fps: float) -> np.ndarray:
        from data_processing import audio_features  # noqa: PLC0415

        if audio_features.is_external(trained_kind) or self.audio_features is not None:
            if self.audio_features is None:
                raise RenderError(
                    f"the model was trained on your own audio features ({trained_kind}); pass the same encoder's "
                    f"features of {self.audio} with --audio-features FILE.npy."
                )
            if not audio_features.is_external(trained_kind):
                raise RenderError(
                    f"the model was trained on '{trained_kind}' features computed by dtnerf-process, not on features "
                    f"from a file; drop --audio-features."
                )
            return audio_features.load_feature_file(self.audio_features, num_frames, fps)
        if trained_kind not in audio_features.FEATURE_KINDS:
            # Features of another definition would drive the mouth with numbers it never learnt.
            raise RenderError(
                f"the model was trained on '{trained_kind}' audio features, which this version does not compute "
                f"(it computes {', '.join(audio_features.FEATURE_KINDS)}); re-run dtnerf-process on the video, then ns-train."
            )
        return audio_features.windows_for_span(whole, self.start, num_frames, fps, trained_kind)

    @staticmethod
    def _frames_for(signal: np.ndarray, fps: float) -> Tuple[np.ndarray, int]:
        """Video frames the audio spans, and the audio trimmed to whole frames (durations then agree to the sample)."""
        from data_processing.audio import SAMPLE_RATE  # noqa: PLC0415

        num_frames = int(round(len(signal) / SAMPLE_RATE * fps))
        if num_frames < 1:
            raise RenderError(f"the audio is shorter than one video frame ({1 / fps:.3f} s).")
        return signal[: int(round(num_frames / fps * SAMPLE_RATE))], num_frames

    def _check_options(self) -> None:
        if (self.audio is None) == (self.expressions_from is None):
            raise RenderError("give either --audio SPEECH or --expressions-from VIDEO_OR_DATASET (exactly one).")
        if self.expressions_from is not None and (self.audio_features is not None or self.smooth):
            raise RenderError("--audio-features and --smooth apply to --audio; drop them with --expressions-from.")
        if self.audio is not None and self.split != "all":
            raise RenderError("--split applies to a dataset given to --expressions-from; drop it with --audio.")
        for name, ok, hint in (
            ("--start", self.start >= 0, "0 or more seconds"),
            ("--duration", self.duration is None or self.duration > 0, "a positive number of seconds"),
            ("--resolution-scale", 0.05 <= self.resolution_scale <= 4.0, "between 0.05 and 4"),
        ):
            if not ok:
                raise RenderError(f"{name} must be {hint}.")
        if self.pose_frame is not None and self.poses is not None:
            raise RenderError("use either --pose-frame or --poses, not both.")
        if self.output.suffix.lower() != ".mp4":
            raise RenderError(f"--output must be an .mp4 file, got {self.output}.")
        parent = self.output.resolve().parent
        if not parent.is_dir():
            raise RenderError(f"cannot write {self.output}: directory {parent} does not exist.")
        if not os.access(parent, os.W_OK):
            raise RenderError(f"cannot write {self.output}: directory {parent} is not writable.")

    # ------------------------------------------------------------ main
    def main(self) -> Path:
        self._check_options()
        import torch  # noqa: PLC0415
        from rich.console import Console  # noqa: PLC0415

        from data_processing.audio import SAMPLE_RATE  # noqa: PLC0415
        from dtnerf_ns.core.compositing import Backdrops  # noqa: PLC0415
        from dtnerf_ns.scripts.expression_driver import driver_kind  # noqa: PLC0415
        from dtnerf_ns.scripts.trained_model import load_trained_model  # noqa: PLC0415

        console = Console(stderr=True)
        # Before the (slow) model load, so bad input fails fast.
        if self.audio is not None:
            whole, signal = self._read_audio()
        else:
            driver_kind(self.expressions_from, self.split)
        with console.status("Loading the model"):
            trained = load_trained_model(self.load_config)
        model, data_dir = trained.model, trained.data_dir
        if self.audio is not None and not model.driven_by_audio:
            raise RenderError(
                f"{self.load_config}: this model is driven by expression coefficients, not audio; drive it with "
                f"--expressions-from VIDEO_OR_DATASET instead of --audio."
            )
        if self.expressions_from is not None and model.driven_by_audio:
            raise RenderError(
                f"{self.load_config}: this model is driven by audio, not expressions; pass speech with --audio (or train "
                f"sahs-nerf with --pipeline.model.driver expression to use --expressions-from)."
            )
        outputs = trained.pipeline.datamanager.train_dataparser_outputs
        fps = float(outputs.metadata["fps"])
        if self.audio is not None:
            signal, num_frames = self._frames_for(signal, fps)
            with console.status("Computing audio features"):
                windows = self._driving_windows(whole, outputs.metadata, num_frames, fps)
            drive = {"audio_features": torch.from_numpy(windows)}
            driver = "the audio"
        else:
            expressions = self.driver_expressions(data_dir, fps, console)
            signal, num_frames = expressions.audio, len(expressions.coefficients)
            drive = {"expression": torch.from_numpy(expressions.coefficients)}
            driver = f"the expressions of {self.expressions_from} ({expressions.transfer} transfer)"

        # Poses: which training image (camera row) gives each output frame its pose, backdrop and blink.
        cameras = outputs.cameras  # full resolution (inference mode), dataset coordinates
        frame_indices = np.asarray(outputs.metadata["frame_indices"])
        c2w = cameras.camera_to_worlds.numpy()
        order = np.argsort(frame_indices)  # walk in time order
        pose_override: Optional[np.ndarray] = None
        if self.poses is not None:
            given = read_pose_file(self.poses)
            pose_override = given[ping_pong(len(given), num_frames)]
            scale = float(np.linalg.norm(c2w[:, :, 3], axis=-1).mean()) or 1.0
            source = nearest_poses(pose_override, c2w, scale)
        else:
            source = order[ping_pong(len(order), num_frames)]
        if self.pose_frame is not None:
            known = {int(f): i for i, f in enumerate(frame_indices)}
            if self.pose_frame not in known:
                raise RenderError(
                    f"--pose-frame {self.pose_frame} is not a training frame (training frames: "
                    f"{int(frame_indices.min())}..{int(frame_indices.max())}, the test frames excluded)."
                )
            pose_override = np.repeat(c2w[known[self.pose_frame]][None], num_frames, axis=0)
        source_frames = frame_indices[source]  # dataset frame of each output frame: backdrop, blink, expression

        # Sizes: output at the dataset's resolution x scale; the head is rendered at most at the training resolution
        # (what the model learned; finer renders cost time without adding detail) and upsampled.
        full_h, full_w = int(cameras.height[0]), int(cameras.width[0])
        out_w = max(2, int(round(full_w * self.resolution_scale / 2)) * 2)  # H.264 needs even sizes
        out_h = max(2, int(round(full_h * self.resolution_scale / 2)) * 2)
        train_scale = 1.0 / float(getattr(trained.config.pipeline.datamanager.dataparser, "downscale_factor", 1.0))
        render_scale = min(self.resolution_scale, train_scale)
        # Head-only: over the static background; else over the source frame's backdrop (the method's kind).
        backdrops = Backdrops(data_dir, "background" if self.head_only else model.backdrop_kind)

        writer = Mp4Writer(self.output, out_w, out_h, fps, signal, SAMPLE_RATE)
        console.print(
            f"Rendering {num_frames} frames ({num_frames / fps:.2f} s at {fps:g} fps) driven by {driver}, head at "
            f"{int(full_w * render_scale)}x{int(full_h * render_scale)}, video at {out_w}x{out_h}"
        )
        try:
            with model.driven_by(**drive, source_frames=torch.from_numpy(source_frames)):
                self._render_frames(
                    model, cameras, source, source_frames, pose_override, render_scale, (out_h, out_w), backdrops,
                    writer, console,
                )
            writer.close()
        except BaseException:
            writer.abort()
            raise
        sound = "no audio" if signal is None else "with audio"
        console.print(f"[bold green]Wrote {self.output}[/] ({num_frames} frames, {num_frames / fps:.2f} s, {sound})")
        return self.output

    def driver_expressions(self, data_dir: Path, fps: float, console=None):
        """The expression coefficients handed to the model, one per output frame (and the driver's sound)."""
        from dtnerf_ns.scripts.expression_driver import expressions_from  # noqa: PLC0415

        return expressions_from(self.expressions_from, data_dir, fps, self.start, self.duration, self.split, console)

    def _render_frames(
        self, model, cameras, source, source_frames, pose_override, render_scale, out_hw, backdrops, writer, console
    ) -> None:
        """Renders each output frame with its camera row (pose) and new-audio time, over its backdrop, and encodes it.

        Three stages overlap: backdrops are decoded ahead by reader threads, the model renders on the main thread, and
        the previous frame is encoded by a writer thread meanwhile (PyAV and libx264 release the GIL), so on a GPU
        the render is not serialised behind disk and encoder. The only host-device transfer is the finished frame.
        """
        import torch  # noqa: PLC0415
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

        num_frames = len(source)
        out_h, out_w = out_hw
        lookahead = 8
        progress = Progress(
            TextColumn("[bold]render"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[fps]:.2f} frames/s"), TimeRemainingColumn(), console=console, transient=False,
        )

        probe = cameras[0:1]
        probe.rescale_output_resolution(render_scale)
        render_size = (int(probe.width[0, 0]), int(probe.height[0, 0]))
        use_region = pose_override is None and not self.all_rays

        def read_backdrop(k: int):
            image = backdrops.read(int(source_frames[k]), (out_w, out_h))
            if image is None:
                raise RenderError(f"{backdrops.path(int(source_frames[k]))}: missing; re-run dtnerf-process.")
            region = backdrops.head_region(int(source_frames[k]), render_size) if use_region else None
            return torch.from_numpy(image), None if region is None else torch.from_numpy(region)

        started = time.perf_counter()
        with progress, ThreadPoolExecutor(2, thread_name_prefix="backdrop") as readers, ThreadPoolExecutor(
            1, thread_name_prefix="encode"
        ) as encoder:
            task = progress.add_task("render", total=num_frames, fps=0.0)
            ahead = {k: readers.submit(read_backdrop, k) for k in range(min(lookahead, num_frames))}
            encoding = None
            for k in range(num_frames):
                backdrop, region = ahead.pop(k).result()
                if k + lookahead < num_frames:
                    ahead[k + lookahead] = readers.submit(read_backdrop, k + lookahead)
                camera = cameras[int(source[k]) : int(source[k]) + 1]
                if pose_override is not None:
                    camera.camera_to_worlds = torch.from_numpy(pose_override[k : k + 1]).to(camera.camera_to_worlds)
                camera.rescale_output_resolution(render_scale)
                camera.times = torch.full((1, 1), frame_time(k, num_frames), dtype=torch.float32)
                rgb = model.render_final_frame(
                    camera.to(model.device), backdrop=backdrop, output_size=(out_h, out_w), region=region
                )["rgb"]
                frame = (rgb.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
                if encoding is not None:
                    encoding.result()  # frames stay in order; an encoder error surfaces here
                encoding = encoder.submit(writer.write_frame, frame)
                progress.update(task, advance=1, fps=(k + 1) / (time.perf_counter() - started))
            if encoding is not None:
                encoding.result()


def entrypoint() -> None:
    """Console script ``dtnerf-render``."""
    # Libraries' deprecation notices and nerfstudio's per-frame camera-indexing warning bury the progress bar.
    os.environ.setdefault("GLOG_minloglevel", "2")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")
    command = tyro.cli(RenderTalkingVideo)
    try:
        command.main()
    except (RenderError, ProcessingError, TrainedModelError) as err:
        print(f"dtnerf-render: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("dtnerf-render: interrupted; no video written.", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    entrypoint()
