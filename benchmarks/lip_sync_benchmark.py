"""Lip sync of dtnerf-small per audio feature kind and audio gating: the figures of issue 11.

    python benchmarks/lip_sync_benchmark.py --dataset outputs/lip_sync_benchmark/macron_fr_50s/dataset \\
        --speech ../shared/data/speech_en_60s.wav --speech-start 3 --speech-seconds 8 --minutes 6

Each row trains ``dtnerf-small`` for the same time budget (at most 3000 iterations) in its own process on the
dataset's training frames (first 7/8), with the row's audio features (recomputed from the dataset's audio.wav into a
variant dataset that links everything else) and gate switches, then measures:

* **test split** (last 1/8, each frame's own pose and audio, rendered at 512x512 as ``dtnerf-render`` composites):
  the offline lip-sync score (:mod:`dtnerf_ns.evaluation.lip_sync_score`; AUC at offset 0 and the best over +-0.2 s),
  the mouth-opening spread, the frame-by-frame Pearson r with the real frames' mouth opening, LMD and mouth-box PSNR;
* **new speech** (``--speech``, a voice and here a language the model never heard), at the fixed pose and blink of
  the first training frame: lip-sync score and mouth-opening spread, compared with the real video's (all its frames
  with their own audio), and the static-region flicker: mean absolute frame-to-frame change (0-255) outside the
  lower half of the face mask.

Prints a markdown table (also written to ``--work``/lip_sync.md, rows as JSON beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

NO_GATES = {"use_audio_gate": False, "use_eye_gate": False}
ROWS: Dict[str, tuple] = {
    "logmel-peak, no gates (before)": ("logmel29-peak-gated-30db", NO_GATES),
    "visemes, gates": ("visemes12-pocketsphinx", {}),
    "visemes+logmel, no gates": ("visemes12+logmel29", NO_GATES),
    "visemes+logmel, gates (default)": ("visemes12+logmel29", {}),
}
SIZE = 512


def slug(row: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in row).strip("-")


def variant_dataset(source: Path, kind: str, work: Path) -> Path:
    """``source`` with its audio features recomputed as ``kind`` (everything else linked)."""
    from data_processing import audio_features, dataset_layout as layout  # noqa: PLC0415
    from data_processing.audio import load_audio  # noqa: PLC0415

    info = json.loads((source / layout.TRANSFORMS).read_text())
    if info["dtnerf"]["audio_feature_kind"] == kind:
        return source
    out = work / "datasets" / kind.replace("+", "_")
    if (out / layout.TRANSFORMS).is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name not in (layout.AUDIO_FEATURES, layout.TRANSFORMS) and not (out / entry.name).exists():
            os.symlink(entry.resolve(), out / entry.name)
    fps, n = float(info["dtnerf"]["fps"]), int(info["dtnerf"]["num_frames"])
    feats = audio_features.audio_windows_for_frames(load_audio(source / layout.AUDIO_WAV), n, fps, kind)
    np.save(out / layout.AUDIO_FEATURES, feats)
    info["dtnerf"].update(audio_feature_kind=kind, audio_window=list(feats.shape[1:]))
    (out / layout.TRANSFORMS).write_text(json.dumps(info))
    return out


def eye_openness(frames) -> np.ndarray:
    """Eye aspect ratio (lid gap over eye width, both eyes) of each RGB frame, from mediapipe's mesh; NaN: no face."""
    from data_processing.face_tracking import FaceTracker  # noqa: PLC0415
    from data_processing.signals import eye_aspect_ratio  # noqa: PLC0415

    values = []
    with FaceTracker(max_faces=1) as tracker:
        for frame in frames:
            points = tracker.landmarks(frame)
            values.append(np.nan if points is None else float(eye_aspect_ratio(points[None])[0]))
    return np.asarray(values)


def real_figures(dataset: Path, work: Path) -> dict:
    """Mouth openings and lip-sync scores of the real frames (cached): the whole video and its test split."""
    cache = work / "real.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    from data_processing import dataset_layout as layout  # noqa: PLC0415
    from data_processing.audio import load_audio  # noqa: PLC0415
    from data_processing.io_utils import read_image  # noqa: PLC0415
    from dtnerf_ns.evaluation.lip_sync_score import audio_phone_classes, lip_sync_score, mouth_openings, offset_frames  # noqa: PLC0415

    info = json.loads((dataset / layout.TRANSFORMS).read_text())["dtnerf"]
    fps, n = float(info["fps"]), int(info["num_frames"])
    test_start, test_end = info["test_frames"]
    opening = mouth_openings(read_image(layout.image_path(dataset, i)) for i in range(n))
    classes = audio_phone_classes(load_audio(dataset / layout.AUDIO_WAV), n, fps)
    whole = lip_sync_score(opening, classes, offset_frames(fps))
    test = lip_sync_score(opening[test_start:test_end], classes[test_start:test_end], offset_frames(fps))
    figures = {"opening": opening.tolist(), "video": whole.to_dict(), "test": test.to_dict()}
    cache.write_text(json.dumps(figures))
    return figures


def run_row(row: str, source: Path, work: Path, minutes: float, speech: Path, speech_start: float, speech_seconds: float) -> dict:
    import torch  # noqa: PLC0415

    from train_benchmark import setup_trainer, train_within  # noqa: PLC0415

    from dtnerf_ns.methods.dtnerf.dtnerf_config import dtnerf_small_config  # noqa: PLC0415

    kind, switches = ROWS[row]
    data = variant_dataset(source, kind, work)
    config = dtnerf_small_config
    config.machine.device_type = "cpu"
    for key, value in switches.items():
        setattr(config.pipeline.model, key, value)
    torch.manual_seed(0)
    np.random.seed(0)
    trainer = setup_trainer(config, data, work / "runs" / slug(row), int(os.environ.get("LIP_SYNC_ITERATIONS", 3000)))
    steps, seconds = train_within(trainer, minutes)  # ends with a checkpoint: --remeasure reads it
    out = {"row": row, "kind": kind, "iterations": steps, "iterations_per_second": steps / seconds}
    return measure_row(trainer.pipeline, out, source, work, speech, speech_start, speech_seconds)


def measure_row(pipeline, out: dict, source: Path, work: Path, speech: Path, speech_start: float, speech_seconds: float) -> dict:
    row = out["row"]
    pipeline.model.eval()
    real = real_figures(source, work)
    out.update(test_split_figures(pipeline, real))
    out.update(new_speech_figures(pipeline, real, speech, speech_start, speech_seconds, work, row))
    return out


def training_resolution(pipeline, camera):
    """The camera at the resolution the model trained at: a run loaded for inference has full-resolution cameras."""
    factor = float(pipeline.datamanager.config.dataparser.downscale_factor or 1)
    full_height = int(json.loads((Path(pipeline.datamanager.train_dataset.metadata["data_dir"]) / "transforms.json").read_text())["h"])
    if int(camera.height[0]) >= full_height and factor > 1:
        camera.rescale_output_resolution(1.0 / factor)
    return camera


def test_split_figures(pipeline, real: dict) -> dict:
    """Renders of the test frames (own pose, own audio): lip sync, opening r and spread, LMD, mouth PSNR."""
    import torch  # noqa: PLC0415

    from data_processing import dataset_layout as layout  # noqa: PLC0415
    from data_processing.audio import load_audio  # noqa: PLC0415
    from data_processing.io_utils import read_image, read_mask  # noqa: PLC0415
    from dtnerf_ns.evaluation.image_metrics import psnr  # noqa: PLC0415
    from dtnerf_ns.evaluation.landmark_distance import LandmarkDistance, to_uint8  # noqa: PLC0415
    from dtnerf_ns.evaluation.lip_sync_score import (  # noqa: PLC0415
        audio_phone_classes,
        lip_sync_score,
        mouth_openings,
        offset_frames,
        opening_correlation,
    )

    model, dataset = pipeline.model, pipeline.datamanager.eval_dataset
    data_dir = Path(dataset.metadata["data_dir"])
    fps = float(dataset.metadata["fps"])
    frames = [int(f) for f in dataset.metadata["frame_indices"]][: int(os.environ.get("LIP_SYNC_TEST_FRAMES", 10**9))]
    assert frames == sorted(frames), "the test split is read in time order"
    renders, mouth_psnr, lmd = [], [], LandmarkDistance()
    with torch.no_grad():
        for i, frame in enumerate(frames):
            camera = training_resolution(pipeline, dataset.cameras[i : i + 1]).to(model.device)
            region = model.backdrops.head_region(frame, (int(camera.width), int(camera.height)))
            region = None if region is None else torch.from_numpy(region)
            pred = model.render_final_frame(camera, output_size=(SIZE, SIZE), region=region)["rgb"].clamp(0, 1).cpu()
            gt = torch.from_numpy(read_image(layout.image_path(data_dir, frame), size=(SIZE, SIZE))).float() / 255
            mouth = torch.from_numpy(read_mask(layout.mask_path(data_dir, "mouth", frame), size=(SIZE, SIZE)))
            ys, xs = torch.nonzero(mouth, as_tuple=True)
            if len(ys):
                box = torch.zeros_like(mouth)
                box[int(ys.min()) : int(ys.max()) + 1, int(xs.min()) : int(xs.max()) + 1] = True
                mouth_psnr.append(psnr(pred, gt, box))
            renders.append(to_uint8(pred.numpy()))
            lmd.add(renders[-1], to_uint8(gt.numpy()))
    opening = mouth_openings(renders)
    # Eyes: the renders' eye opening against the real frames' (same pose), and on the frames whose real eyes are
    # closed (the dataset's blink signal above 0.5) against the open ones.
    eyes = eye_openness(renders)
    real_eyes = eye_openness(read_image(layout.image_path(data_dir, f), size=(SIZE, SIZE)) for f in frames)
    blink = np.load(data_dir / layout.BLINK)[frames]
    closed, opened = blink > 0.5, blink < 0.2
    eye_r, _ = opening_correlation(eyes, real_eyes)
    # The phones of the whole file, as for the real frames: the decoder normalises over what it is given, and the
    # test span alone decodes worse (helper measurement: real-frame AUC 0.69 from the span, 0.92 from the whole file).
    num_frames = int(dataset.metadata["num_frames"]) if "num_frames" in dataset.metadata else max(frames) + 1
    classes = audio_phone_classes(load_audio(data_dir / layout.AUDIO_WAV), num_frames, fps)[frames]
    score = lip_sync_score(opening, classes, offset_frames(fps))
    real_opening = np.asarray(real["opening"], dtype=np.float64)[frames]
    r, _ = opening_correlation(opening, real_opening)
    real_score = lip_sync_score(real_opening, classes, offset_frames(fps))  # the same frames as the renders
    summary = lmd.summary()
    return {
        "test_frames": len(frames),
        "test_auc": score.auc_at_zero,
        "test_auc_best": score.auc,
        "test_offset": score.offset,
        "test_auc_real": real_score.auc_at_zero,
        "test_opening_r": r,
        "test_spread": score.opening_std,
        "test_spread_real": real_score.opening_std,
        "lmd": summary.get("value") if summary.get("available") else None,
        "mouth_psnr": float(np.nanmean(mouth_psnr)),
        "eye_r": eye_r,
        "closed_eye_frames": int(closed.sum()),
        "eye_ratio_closed_over_open": float(np.nanmean(eyes[closed]) / np.nanmean(eyes[opened])) if closed.any() else None,
        "eye_ratio_closed_over_open_real": float(np.nanmean(real_eyes[closed]) / np.nanmean(real_eyes[opened])) if closed.any() else None,
    }


def write_phone_strip(path: Path, renders: List[np.ndarray], classes: np.ndarray, mouth: np.ndarray, count: int = 8) -> None:
    """Mouth crops of renders on open-vowel frames (top row) and on p/b/m frames (bottom row), spread over the clip."""
    import cv2  # noqa: PLC0415

    from dtnerf_ns.evaluation.lip_sync_score import CLOSED, OPEN  # noqa: PLC0415

    ys, xs = np.nonzero(mouth)
    cy, cx, half = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2, int(0.75 * (xs.max() - xs.min()))
    rows = []
    for label, name in ((OPEN, "open vowels"), (CLOSED, "p / b / m")):
        frames = np.flatnonzero(classes == label)
        picks = frames[np.linspace(0, len(frames) - 1, min(count, len(frames))).astype(int)] if len(frames) else []
        crops = [cv2.resize(renders[k][max(0, cy - half) : cy + half, max(0, cx - half) : cx + half], (128, 128)) for k in picks]
        crops += [np.full((128, 128, 3), 255, np.uint8)] * (count - len(crops))
        row = np.concatenate([np.full((128, 150, 3), 255, np.uint8)] + crops, axis=1)
        cv2.putText(row, name, (6, 70), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(row)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


def new_speech_figures(pipeline, real: dict, speech: Path, start: float, seconds: float, work: Path, row: str) -> dict:
    """New speech at a fixed pose and blink: lip sync and spread against the real video's, and static flicker."""
    import torch  # noqa: PLC0415

    from data_processing import audio_features, dataset_layout as layout  # noqa: PLC0415
    from data_processing.audio import load_audio  # noqa: PLC0415
    from data_processing.io_utils import read_mask  # noqa: PLC0415
    from dtnerf_ns.evaluation.landmark_distance import to_uint8  # noqa: PLC0415
    from dtnerf_ns.evaluation.lip_sync_score import audio_phone_classes, lip_sync_score, mouth_openings, offset_frames  # noqa: PLC0415

    model, train = pipeline.model, pipeline.datamanager.train_dataset
    data_dir = Path(train.metadata["data_dir"])
    fps = float(train.metadata["fps"])
    kind = pipeline.datamanager.train_dataparser_outputs.metadata["audio_feature_kind"]
    whole = load_audio(speech)
    num = int(seconds * fps)
    windows = audio_features.windows_for_span(whole, start, num, fps, kind)
    frame = int(train.metadata["frame_indices"][0])
    camera = training_resolution(pipeline, train.cameras[0:1]).to(model.device)
    region = model.backdrops.head_region(frame, (int(camera.width), int(camera.height)))
    region = None if region is None else torch.from_numpy(region)
    backdrop = model.backdrops.tensor(frame, (SIZE, SIZE), model.device)
    renders = []
    with torch.no_grad(), model.driven_by(
        audio_features=torch.from_numpy(windows), source_frames=torch.full((num,), frame, dtype=torch.long)
    ):
        for k in range(num):
            camera.times = torch.full((1, 1), layout.frame_time(k, num), dtype=torch.float32)
            rgb = model.render_final_frame(camera, backdrop=backdrop, output_size=(SIZE, SIZE), region=region)["rgb"]
            renders.append(to_uint8(rgb.clamp(0, 1).cpu().numpy()))
    signal = whole[int(round(start * 16000)) :]
    classes = audio_phone_classes(signal, num, fps)
    score = lip_sync_score(mouth_openings(renders), classes, offset_frames(fps))
    mouth = read_mask(layout.mask_path(data_dir, "mouth", frame), size=(SIZE, SIZE)).astype(bool)
    write_phone_strip(work / f"{slug(row)}_phones.png", renders, classes, mouth)
    face = read_mask(layout.mask_path(data_dir, "face", frame), size=(SIZE, SIZE)).astype(bool)
    rows = np.nonzero(face.any(axis=1))[0]
    lower = face.copy()
    lower[: (rows.min() + rows.max()) // 2] = False
    stack = np.stack(renders).astype(np.float32)
    flicker = float(np.abs(np.diff(stack, axis=0))[:, ~lower].mean())
    return {
        "speech_frames": num,
        "speech_auc": score.auc_at_zero,
        "speech_auc_best": score.auc,
        "speech_offset": score.offset,
        "video_auc_real": real["video"]["auc_at_zero"],
        "speech_spread": score.opening_std,
        "video_spread_real": real["video"]["opening_std"],
        "flicker": flicker,
    }


def markdown(results: List[dict], args) -> str:
    def f(value, digits=3):
        return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"

    real = results[0]
    lines = [
        f"`{args.dataset}`, dtnerf-small, at most {args.iterations} iterations and {args.minutes:g} min of CPU training "
        f"per row; {args.test_frames or 'all'} test frames; new speech: "
        f"`{args.speech.name}` {args.speech_start:g}-{args.speech_start + args.speech_seconds:g} s at a fixed pose.",
        "",
        f"Real frames: test split AUC {f(real['test_auc_real'])}, spread {f(real['test_spread_real'], 4)}; "
        f"whole video AUC {f(real['video_auc_real'])}, spread {f(real['video_spread_real'], 4)}.",
        "",
        "| row | it | test AUC (best, offset) | test r | test spread | LMD | mouth PSNR | new-speech AUC (best, offset) "
        "| new-speech spread | flicker | eyes r | closed/open eyes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['row']} | {r['iterations']} | {f(r['test_auc'])} ({f(r['test_auc_best'])}, {r['test_offset']}) "
            f"| {f(r['test_opening_r'])} | {f(r['test_spread'], 4)} | {f(r['lmd'], 2)} | {f(r['mouth_psnr'], 2)} "
            f"| {f(r['speech_auc'])} ({f(r['speech_auc_best'])}, {r['speech_offset']}) | {f(r['speech_spread'], 4)} "
            f"| {f(r['flicker'], 2)} | {f(r.get('eye_r'), 2)} | {f(r.get('eye_ratio_closed_over_open'), 2)} "
            f"(real {f(r.get('eye_ratio_closed_over_open_real'), 2)}, {r.get('closed_eye_frames')} frames) |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True, help="a dataset made by dtnerf-process")
    parser.add_argument("--speech", type=Path, default=REPO.parent / "shared" / "data" / "speech_en_60s.wav")
    parser.add_argument("--speech-start", type=float, default=3.0, help="seconds into --speech (skips its silence)")
    parser.add_argument("--speech-seconds", type=float, default=8.0)
    parser.add_argument("--minutes", type=float, default=6.0, help="training time per row (at most --iterations)")
    parser.add_argument("--iterations", type=int, default=3000, help="training iterations per row (at most --minutes)")
    parser.add_argument("--test-frames", type=int, default=None, help="measure only the first N test frames")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--work", type=Path, default=None, help="default: outputs/lip_sync_benchmark/<dataset name>")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row in this process
    parser.add_argument("--remeasure", action="store_true", help="measure the rows' trained runs again (no training)")
    parser.add_argument("--config", type=Path, help="measure this trained run instead of training rows")
    parser.add_argument("--name", default=None, help="the row name of --config (default: its run directory)")
    args = parser.parse_args()
    work = args.work or REPO / "outputs" / "lip_sync_benchmark" / args.dataset.resolve().parent.name
    work.mkdir(parents=True, exist_ok=True)
    os.environ["LIP_SYNC_ITERATIONS"] = str(args.iterations)  # read by the row processes
    if args.test_frames:
        os.environ["LIP_SYNC_TEST_FRAMES"] = str(args.test_frames)
    if args.config:
        from dtnerf_ns.scripts.trained_model import load_trained_model  # noqa: PLC0415

        row = args.name or args.config.parent.name
        trained = load_trained_model(args.config)
        kind = trained.pipeline.datamanager.train_dataparser_outputs.metadata["audio_feature_kind"]
        result = measure_row(trained.pipeline, {"row": row, "kind": kind, "iterations": None, "iterations_per_second": None},
                             args.dataset, work, args.speech, args.speech_start, args.speech_seconds)  # fmt: skip
        (work / f"{slug(row)}.json").write_text(json.dumps(result, indent=1))
        print(markdown([result], args))
        return 0
    if args.row and args.remeasure:
        from dtnerf_ns.scripts.trained_model import load_trained_model  # noqa: PLC0415

        config = sorted((work / "runs" / slug(args.row)).glob("*/dtnerf-small/*/config.yml"))[-1]
        previous_file = work / f"{slug(args.row)}.json"
        if previous_file.is_file():
            previous = json.loads(previous_file.read_text())
        else:  # measurement interrupted: the iterations from the final checkpoint's name
            step = int(sorted(config.parent.glob("nerfstudio_models/step-*.ckpt"))[-1].stem.split("-")[1])
            previous = {"row": args.row, "kind": ROWS[args.row][0], "iterations": step + 1, "iterations_per_second": None}
        keep = {k: previous[k] for k in ("row", "kind", "iterations", "iterations_per_second")}
        result = measure_row(load_trained_model(config).pipeline, keep, args.dataset, work, args.speech,
                             args.speech_start, args.speech_seconds)  # fmt: skip
        (work / f"{slug(args.row)}.json").write_text(json.dumps(result, indent=1))
        return 0
    if args.row:
        result = run_row(args.row, args.dataset, work, args.minutes, args.speech, args.speech_start, args.speech_seconds)
        (work / f"{slug(args.row)}.json").write_text(json.dumps(result, indent=1))
        return 0
    results = []
    for row in args.rows:
        print(f"== {row}", flush=True)
        command = [sys.executable, __file__, "--row", row, "--dataset", str(args.dataset), "--speech", str(args.speech),
                   "--speech-start", str(args.speech_start), "--speech-seconds", str(args.speech_seconds),
                   "--minutes", str(args.minutes), "--iterations", str(args.iterations), "--work", str(work)]  # fmt: skip
        command += ["--remeasure"] if args.remeasure else []
        command += ["--test-frames", str(args.test_frames)] if args.test_frames else []
        if subprocess.run(command).returncode != 0:
            print(f"benchmark: row '{row}' failed", file=sys.stderr)
            return 1
        results.append(json.loads((work / f"{slug(row)}.json").read_text()))
        print(json.dumps(results[-1]), flush=True)
    table = markdown(results, args)
    (work / "lip_sync.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
