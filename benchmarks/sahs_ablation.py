"""SAHS-NeRF's ablation (paper Tables 3-4, texture enhancement included) on a real clip, both drivers.

    python benchmarks/sahs_ablation.py --dataset outputs/lip_sync_benchmark/macron_fr_50s/dataset
    python benchmarks/sahs_ablation.py --iterations 200 --texture-iterations 100 --rows sahs-audio-full

Every row trains ``sahs-nerf-small`` with the same number of NeRF iterations (``--iterations``) in its own process,
on the first 7/8 of the clip. The full row then trains its texture network G for ``--texture-iterations`` more steps
with the NeRF frozen (the paper's stage II, the preset's patch stage), so its render before G *is* the paper's
"w/o TE" model: both are measured from that one run, and the stage's cost and gain are exact. The other rows switch
off TE and then, step by step, dynamic weighted sampling (DWS), the local deformation (LDF) or the whole hyper-space
deformation module (HDM), as in the paper.

Each row renders every ``--test-stride``-th frame of the last 1/8 through ``render_final_frame`` at 512x512 (the head
rendered at the training resolution, 128 px, composited over the background, then enhanced at 128 px), and compares
it with the 512x512 source frame: L1, PSNR, SSIM, LMD (mediapipe lip landmarks, pixels at 512x512) and PSNR over the
mouth's box. Writes ``ablation.md`` / ``ablation.json`` and, for each full row, a strip of mouth crops (ground truth,
before G, after G) to ``--work``. ``dtnerf-small`` can be added as a reference row.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "macron_fr_50s.mp4"

NO_TE = {"use_texture_enhancement": False}
# row name -> (preset, model switches)
ROWS: Dict[str, tuple] = {
    f"sahs-{driver}-{name}": ("sahs-nerf-small", {"driver": driver, **switches})
    for driver in ("audio", "expression")
    for name, switches in (
        ("full", {}),
        ("no-te-dws", {**NO_TE, "use_dynamic_sampling": False}),
        ("no-te-dws-ldf", {**NO_TE, "use_dynamic_sampling": False, "use_ambient": False}),
        ("no-te-dws-hdm", {**NO_TE, "use_dynamic_sampling": False, "use_deformation": False}),
    )
}
ROWS["dtnerf-small"] = ("dtnerf-small", {})
LABELS = {"full": "Ours (TE)", "full-raw": "w/o TE", "no-te-dws": "w/o TE+DWS", "no-te-dws-ldf": "w/o TE+DWS+LDF",
          "no-te-dws-hdm": "w/o TE+DWS+HDM"}  # fmt: skip
DEFAULT_ROWS = [row for row in ROWS if row != "dtnerf-small"]


def _config(preset: str):
    if preset == "dtnerf-small":
        from dtnerf_ns.methods.dtnerf.dtnerf_config import dtnerf_small_config  # noqa: PLC0415

        return copy.deepcopy(dtnerf_small_config)
    from dtnerf_ns.methods.sahs.sahs_config import sahs_small_config  # noqa: PLC0415

    return copy.deepcopy(sahs_small_config)


def run_row(row: str, data: Path, work: Path, iterations: int, texture_iterations: int, stride: int) -> dict:
    """Trains and measures one row in this process."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_benchmark import setup_trainer, train_within  # noqa: PLC0415

    preset, switches = ROWS[row]
    config = _config(preset)
    config.machine.device_type = "cpu"
    for key, value in switches.items():
        setattr(config.pipeline.model, key, value)
    total = iterations
    if preset == "sahs-nerf-small" and switches.get("use_texture_enhancement", True):
        total = iterations + texture_iterations
        config.pipeline.datamanager.fine_stage_fraction = iterations / total  # G's stage after the NeRF's iterations
    torch.manual_seed(0)
    np.random.seed(0)
    trainer = setup_trainer(config, data, work / "runs" / row, total)
    stage_seconds: Dict[str, float] = {}
    marks = {"last": None}

    def on_step(_result) -> None:  # wall time of each stage (the texture stage starts at the NeRF's last step)
        now = time.perf_counter()
        stage = "texture" if trainer.pipeline.model.__dict__.get("_in_texture_stage") else "nerf"
        if marks["last"] is not None:
            stage_seconds[stage] = stage_seconds.get(stage, 0.0) + now - marks["last"]
        marks["last"] = now

    steps, seconds = train_within(trainer, 10**6, on_step)
    result = {"row": row, "iterations": min(steps, iterations), "texture_iterations": max(0, steps - iterations),
              "iterations_per_second": steps / seconds, "stage_seconds": stage_seconds,
              "config": str(trainer.config.get_base_dir() / "config.yml"),
              "peak_host_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}  # fmt: skip
    strip = work / f"te_mouth_strip_{switches.get('driver', 'audio')}.png" if row.endswith("-full") else None
    result.update(measure(trainer.pipeline, stride, strip))
    return result


def measure(pipeline, stride: int, strip: "Path | None") -> dict:
    """L1, PSNR, SSIM, mouth-box PSNR and LMD of the test frames at 512x512; with a texture network also of the frames
    before it (``raw_*``), the seconds it adds per frame, and a strip of mouth crops."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from data_processing import dataset_layout as layout  # noqa: PLC0415
    from data_processing.io_utils import read_image, read_mask  # noqa: PLC0415
    from dtnerf_ns.evaluation.image_metrics import l1, psnr, ssim  # noqa: PLC0415
    from dtnerf_ns.evaluation.landmark_distance import LandmarkDistance, to_uint8  # noqa: PLC0415

    model, dataset = pipeline.model, pipeline.datamanager.eval_dataset
    model.eval()
    seconds = {"post_process": 0.0, "frames": 0}
    enhance = model.post_process

    def timed(rgb, frame):
        start = time.perf_counter()
        out = enhance(rgb, frame)
        seconds["post_process"] += time.perf_counter() - start
        return out

    model.post_process = timed  # type: ignore[method-assign]
    scorers = {"": LandmarkDistance(), "raw_": LandmarkDistance()}
    rows: List[dict] = []
    crops = []
    with torch.no_grad():
        for i in range(0, len(dataset), stride):
            gt = torch.from_numpy(read_image(dataset.image_filenames[i], size=(512, 512))).float() / 255
            camera = dataset.cameras[i : i + 1].to(model.device)
            start = time.perf_counter()
            outputs = model.render_final_frame(camera, output_size=(512, 512))
            seconds["render"] = seconds.get("render", 0.0) + time.perf_counter() - start
            seconds["frames"] += 1
            frame = int(dataset.metadata["frame_indices"][i])
            mouth = torch.from_numpy(read_mask(layout.mask_path(dataset.metadata["data_dir"], "mouth", frame), size=(512, 512)))
            ys, xs = torch.nonzero(mouth, as_tuple=True)
            box = torch.zeros_like(mouth)
            if len(ys):
                box[int(ys.min()) : int(ys.max()) + 1, int(xs.min()) : int(xs.max()) + 1] = True
            row = {}
            versions = {"": outputs["rgb"]}
            if "rgb_raw" in outputs:
                versions["raw_"] = outputs["rgb_raw"]
            for prefix, image in versions.items():
                pred = image.clamp(0, 1).cpu()
                row.update({f"{prefix}l1": l1(pred, gt), f"{prefix}psnr": psnr(pred, gt), f"{prefix}ssim": ssim(pred, gt),
                            f"{prefix}mouth_psnr": psnr(pred, gt, box) if len(ys) else float("nan")})  # fmt: skip
                scorers[prefix].add(to_uint8(pred.numpy()), to_uint8(gt.numpy()))
            rows.append(row)
            if strip is not None and "rgb_raw" in outputs and len(ys) and len(crops) < 6:
                crops.append(_mouth_crops([gt, outputs["rgb_raw"].cpu(), outputs["rgb"].cpu()], ys, xs))
    out = {key: float(np.nanmean([r[key] for r in rows])) for key in rows[0]}
    for prefix, scorer in scorers.items():
        summary = scorer.summary()
        if prefix == "" or "raw_psnr" in out:
            out[f"{prefix}lmd"] = summary.get("value") if summary.get("available") else None
    out["test_frames"] = len(rows)
    out["render_seconds_per_frame"] = seconds.get("render", 0.0) / max(1, seconds["frames"])
    if "raw_psnr" in out:
        out["texture_seconds_per_frame"] = seconds["post_process"] / max(1, seconds["frames"])
    if crops and strip is not None:
        from PIL import Image  # noqa: PLC0415

        from PIL import ImageDraw  # noqa: PLC0415

        columns = np.concatenate(crops, axis=1)  # each crop: ground truth / before G / after G, top to bottom
        side = columns.shape[0] // 3
        labels = Image.new("RGB", (110, columns.shape[0]), "white")
        draw = ImageDraw.Draw(labels)
        for k, text in enumerate(("ground truth", "before G (w/o TE)", "after G (Ours)")):
            draw.text((4, k * side + side // 2 - 6), text, fill="black")
        Image.fromarray(np.concatenate([np.asarray(labels), columns], axis=1)).save(strip)
        out["strip"] = str(strip)
    return out


def _mouth_crops(images, ys, xs, side: int = 128):
    """The mouth's square box (twice the mouth's size) of each image, stacked top to bottom, uint8."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    cy, cx = (int(ys.min()) + int(ys.max())) // 2, (int(xs.min()) + int(xs.max())) // 2
    half = max(int(ys.max()) - int(ys.min()), int(xs.max()) - int(xs.min()), 16)
    y0, x0 = max(0, cy - half), max(0, cx - half)
    tiles = []
    for image in images:
        crop = image[y0 : cy + half, x0 : cx + half].permute(2, 0, 1)[None].float()
        crop = F.interpolate(crop, size=(side, side), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
        tiles.append((crop.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
    return np.concatenate(tiles, axis=0)


def markdown(results: List[dict], data: Path) -> str:
    def fmt(value, digits):
        return "–" if value is None or value != value else f"{value:.{digits}f}"

    lines = [
        f"Test frames of `{data.name}` (last 1/8), at 512x512. Every row: the same NeRF iterations; Ours adds G's "
        "stage (NeRF frozen); w/o TE is the same run's frame before G.",
        "",
        "| driver | variant | L1 ↓ | PSNR ↑ | SSIM ↑ | LMD ↓ | mouth PSNR ↑ | NeRF it | G it | train s | render s/frame | peak GB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if r["row"] == "dtnerf-small":
            driver, variants = "audio", [("dtnerf-small (reference)", "")]
        else:
            _, driver, variant = r["row"].split("-", 2)
            variants = [(LABELS[variant], "")] + ([(LABELS["full-raw"], "raw_")] if "raw_psnr" in r else [])
        for label, p in variants:
            train_s = sum(r.get("stage_seconds", {}).values()) if not p else r.get("stage_seconds", {}).get("nerf")
            lines.append(
                f"| {driver} | {label} | {fmt(r[p + 'l1'], 4)} | {fmt(r[p + 'psnr'], 2)} | {fmt(r[p + 'ssim'], 3)} "
                f"| {fmt(r[p + 'lmd'], 2)} | {fmt(r[p + 'mouth_psnr'], 2)} | {r['iterations']} "
                f"| {0 if p else r.get('texture_iterations', 0)} | {fmt(train_s, 0)} "
                f"| {fmt(r['render_seconds_per_frame'] - (r.get('texture_seconds_per_frame', 0.0) if p else 0.0), 2)} "
                f"| {fmt(r['peak_host_gb'], 2)} |"
            )
    for r in results:
        if "raw_psnr" in r:
            lines.append(
                f"\n{r['row']}: G adds {r['texture_seconds_per_frame']:.3f} s per 512x512 frame on this CPU "
                f"(the frame's render: {r['render_seconds_per_frame']:.2f} s) and {r['psnr'] - r['raw_psnr']:+.2f} dB PSNR, "
                f"{r['mouth_psnr'] - r['raw_mouth_psnr']:+.2f} dB mouth PSNR; its stage trained "
                f"{r['texture_iterations']} steps in {r.get('stage_seconds', {}).get('texture', 0.0):.0f} s."
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=CLIP)
    parser.add_argument("--iterations", type=int, default=600, help="NeRF iterations of every row")
    parser.add_argument("--texture-iterations", type=int, default=300, help="G's steps after them (full rows)")
    parser.add_argument("--test-stride", type=int, default=8, help="measure every n-th test frame (a full-frame CPU render takes seconds)")
    parser.add_argument("--dataset", type=Path, default=None, help="a dtnerf-process output of --video (default: made once)")
    parser.add_argument("--rows", nargs="*", default=DEFAULT_ROWS, choices=list(ROWS))
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "sahs_ablation")
    parser.add_argument("--run", choices=list(ROWS), help=argparse.SUPPRESS)  # one row, in a child process
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        result = run_row(args.run, args.data, args.work, args.iterations, args.texture_iterations, args.test_stride)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    if args.dataset is None and not args.video.is_file():
        print(f"sahs_ablation: clip not found: {args.video}", file=sys.stderr)
        return 1
    sys.path.insert(0, str(REPO / "benchmarks"))
    from memory_benchmark import make_dataset  # noqa: PLC0415

    data = args.dataset or make_dataset(args.video, 0, args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    saved = args.work / "ablation.json"
    earlier = json.loads(saved.read_text()) if saved.is_file() else []
    results = [r for r in earlier if r["row"] in ROWS and r["row"] not in args.rows]
    for row in args.rows:
        print(f"{row}: training {args.iterations} iterations (+{args.texture_iterations} for G in full rows), then measuring ...", flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--run", row, "--data", str(data), "--work", str(args.work),
             "--iterations", str(args.iterations), "--texture-iterations", str(args.texture_iterations),
             "--test-stride", str(args.test_stride)],
            capture_output=True, text=True,
        )  # fmt: skip
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(proc.stdout[-2000:] + proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode or 1
        results.append(json.loads(lines[-1][len("RESULT ") :]))
        print(f"  {results[-1]}", flush=True)
        results.sort(key=lambda r: list(ROWS).index(r["row"]))
        saved.write_text(json.dumps(results, indent=2))  # rows measured earlier with other settings are kept: re-run them
    table = markdown(results, data)
    (args.work / "ablation.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
