"""Does a trained model's mouth follow new speech? Renders only the mouth, at one pose, for every frame of the audio.

For each video frame of the driving audio (default: the first 10 s of ../shared/data/speech_en_60s.wav) the model
renders the box around training frame 0's mouth mask at frame 0's pose (about a thousand rays per frame, so 10 s of
audio takes well under a minute on a CPU). With the head still, every change in the crops comes from the audio.
Printed figures:

* mouth motion: mean absolute change of the crop's pixels from the previous frame (0..1), in pauses (audio more than
  45 dB below full scale) and in speech (louder than -30 dB). A mouth that follows speech is still in pauses and moves
  in speech; the ratio says by how much.
* the correlation of that motion with loudness (3-frame averages).
* the same figures for the model driven by its own training audio, and for the real training frames cropped at the
  same box (there the head moves too, which adds some motion in pauses), for comparison.

It also writes a montage (PNG) of 40 evenly spaced crops with a red bar under each showing the audio level, to look
at. Compare with ``benchmarks/lip_sync_check.py``, which measures lip landmarks on a full rendered video, where head
motion and the 128 px renders of ``dtnerf-small`` blur the figures.

    python benchmarks/mouth_motion_check.py outputs/hdtf_aoc_8s/runs/dataset/dtnerf-small/<run>/config.yml \
        [--audio ../shared/data/speech_en_60s.wav] [--seconds 10] [--montage mouth_montage.png]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech_en_60s.wav"
PAUSE_DB, SPEECH_DB = -45.0, -30.0


def frame_levels_db(signal: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
    """RMS level of the audio over each video frame, in dB below full scale."""
    from lip_sync_check import frame_rms  # noqa: PLC0415  (benchmarks/ is on sys.path when run as a script)

    return 20 * np.log10(frame_rms(signal, num_frames, fps))


def render_mouth_crops(model, camera, box, num_frames: int):
    """Crops [num_frames, h, w, 3] of the mouth box, frame k addressed by time k / (num_frames - 1)."""
    import torch  # noqa: PLC0415

    from data_processing.dataset_layout import frame_time  # noqa: PLC0415

    y0, y1, x0, x1 = box
    crops = []
    with torch.no_grad():
        for k in range(num_frames):
            rays = camera.generate_rays(camera_indices=0, keep_shape=True)[y0:y1, x0:x1]
            rays.times = torch.full((*rays.shape, 1), frame_time(k, num_frames))
            crops.append(model.get_outputs_for_camera_ray_bundle(rays)["rgb_head"].clamp(0, 1).cpu().numpy())
    return np.stack(crops)


def motion_figures(crops: np.ndarray, level_db: np.ndarray) -> dict:
    motion = np.r_[np.nan, np.abs(np.diff(crops, axis=0)).mean(axis=(1, 2, 3))]
    pause, speech = level_db < PAUSE_DB, level_db > SPEECH_DB
    pause[0] = speech[0] = False  # no previous frame
    valid = np.isfinite(motion)
    kernel = np.ones(3) / 3
    smooth_motion = np.convolve(np.where(valid, motion, 0.0), kernel, mode="same")
    smooth_level = np.convolve(level_db, kernel, mode="same")
    return {
        "pause_frames": int(pause.sum()),
        "speech_frames": int(speech.sum()),
        "motion_pause": float(np.mean(motion[pause])) if pause.any() else float("nan"),
        "motion_speech": float(np.mean(motion[speech])) if speech.any() else float("nan"),
        "correlation": float(np.corrcoef(smooth_motion[valid], smooth_level[valid])[0, 1]),
    }


def write_montage(path: Path, crops: np.ndarray, level_db: np.ndarray, count: int = 40, per_row: int = 10) -> None:
    from PIL import Image  # noqa: PLC0415

    picks = np.linspace(0, len(crops) - 1, min(count, len(crops))).round().astype(int)
    h, w = crops.shape[1:3]
    rows = -(-len(picks) // per_row)
    sheet = np.zeros((rows * (h + 6), per_row * (w + 2), 3), np.uint8)
    for j, i in enumerate(picks):
        r, c = divmod(j, per_row)
        top, left = r * (h + 6), c * (w + 2)
        sheet[top : top + h, left : left + w] = (crops[i] * 255).astype(np.uint8)
        fill = int(w * np.clip((level_db[i] + 60) / 50, 0, 1))  # -60 dB empty .. -10 dB full
        sheet[top + h + 1 : top + h + 5, left : left + fill] = (255, 0, 0)
    Image.fromarray(sheet).resize((sheet.shape[1] * 4, sheet.shape[0] * 4), Image.NEAREST).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="config.yml of a trained dtnerf model")
    parser.add_argument("--audio", type=Path, default=SPEECH, help="driving speech (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="use the first SECONDS of the audio")
    parser.add_argument("--montage", type=Path, default=Path("mouth_montage.png"), help="PNG of mouth crops")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # nerfstudio's deprecation and camera-indexing warnings, once per frame

    import torch  # noqa: PLC0415

    from data_processing import dataset_layout as layout  # noqa: PLC0415
    from data_processing.io_utils import read_image, read_mask  # noqa: PLC0415
    from data_processing.audio import SAMPLE_RATE, load_audio  # noqa: PLC0415
    from data_processing.audio_features import audio_windows_for_frames  # noqa: PLC0415
    from dtnerf_ns.scripts.trained_model import load_trained_model  # noqa: PLC0415

    from data_processing.errors import ProcessingError  # noqa: PLC0415
    from dtnerf_ns.scripts.trained_model import TrainedModelError  # noqa: PLC0415

    try:
        trained = load_trained_model(args.config)
        speech = load_audio(args.audio)  # bad audio fails before any rendering
    except (TrainedModelError, ProcessingError) as err:
        sys.exit(f"mouth_motion_check: error: {err}")
    model = trained.model
    model.eval()
    outputs = trained.pipeline.datamanager.train_dataparser_outputs
    fps = float(outputs.metadata["fps"])
    first = int(np.argmin(np.asarray(outputs.metadata["frame_indices"])))
    camera = outputs.cameras[first : first + 1]
    camera.rescale_output_resolution(1.0 / float(trained.config.pipeline.datamanager.dataparser.downscale_factor))
    height, width = int(camera.height[0]), int(camera.width[0])
    frame = int(np.asarray(outputs.metadata["frame_indices"])[first])
    ys, xs = np.nonzero(read_mask(layout.mask_path(trained.data_dir, "mouth", frame), (width, height)))
    if len(ys) == 0:
        sys.exit(f"mouth_motion_check: frame {frame} has an empty mouth mask; nothing to measure.")
    box = (max(ys.min() - 3, 0), min(ys.max() + 4, height), max(xs.min() - 3, 0), min(xs.max() + 4, width))

    own_signal = load_audio(trained.data_dir / layout.AUDIO_WAV)
    own_crops = render_mouth_crops(model, camera, box, model.num_frames)
    own = motion_figures(own_crops, frame_levels_db(own_signal, model.num_frames, fps))

    # The real frames, for reference: the dataset's images at the training resolution, same box.
    y0, y1, x0, x1 = box
    real_crops = np.stack(
        [read_image(layout.image_path(trained.data_dir, i), size=(width, height))[y0:y1, x0:x1] for i in range(model.num_frames)]
    ).astype(np.float32) / 255
    real = motion_figures(real_crops, frame_levels_db(own_signal, model.num_frames, fps))

    signal = speech[: int(args.seconds * SAMPLE_RATE)]
    num_frames = int(len(signal) / SAMPLE_RATE * fps)
    kind = str(outputs.metadata["audio_feature_kind"])  # the features the model was trained on
    windows = torch.from_numpy(audio_windows_for_frames(signal, num_frames, fps, kind))
    source = torch.full((num_frames,), frame, dtype=torch.long)  # blink (and pose) of the frame whose pose is used
    with model.driven_by(audio_features=windows, source_frames=source) if num_frames else contextlib.nullcontext():
        crops = render_mouth_crops(model, camera, box, num_frames)
    level = frame_levels_db(signal, num_frames, fps)
    new = motion_figures(crops, level)
    write_montage(args.montage, crops, level)

    print(f"model: {args.config} (step {trained.step}); mouth box {box[1] - box[0]}x{box[3] - box[2]} px at frame {frame}'s pose")
    runs = (
        (f"model driven by new speech: {args.audio.name}, first {args.seconds:g} s", new),
        ("model driven by its own training audio", own),
        ("real frames of the training video (head moving)", real),
    )
    for name, fig in runs:
        ratio = fig["motion_speech"] / fig["motion_pause"] if fig["motion_pause"] > 0 else float("nan")
        print(f"{name}")
        print(f"  mouth motion in pauses ({fig['pause_frames']} frames): {fig['motion_pause']:.4f}")
        print(f"  mouth motion in speech ({fig['speech_frames']} frames): {fig['motion_speech']:.4f}  ({ratio:.1f}x pauses)")
        print(f"  correlation of mouth motion with loudness: r = {fig['correlation']:+.3f}")
    print(f"wrote {args.montage} (40 crops of the new-speech render; red bars: audio level, -60..-10 dB)")


if __name__ == "__main__":
    main()
