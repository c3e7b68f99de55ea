"""SAHS-NeRF's ablations (paper Tables 3-4, without texture enhancement) on a real clip, with dtnerf-small beside them.

    python benchmarks/sahs_ablation.py                        # macron_fr_50s, 4 minutes of training per row
    python benchmarks/sahs_ablation.py --minutes 1 --rows sahs-audio-full dtnerf-small

Each row trains its CPU preset (``sahs-nerf-small`` with switches, or ``dtnerf-small``) for the same time budget (at
most 3000 iterations) in its own process, on the first 7/8 of the clip, then renders every ``--test-stride``-th frame
of the last 1/8 through ``render_final_frame`` at 512x512 (the head rendered at the training resolution, 128 px, and
composited over the method's backdrop, as ``dtnerf-render`` does) and compares it with the 512x512 source frame:
L1, PSNR, SSIM, LMD (mediapipe lip landmarks, pixels at 512x512) and PSNR over the mouth's box. Prints a markdown
table (also written to ``--work``/ablation.md) with iterations/s and each row's peak host memory.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "macron_fr_50s.mp4"

# row name -> (preset, model switches)
ROWS: Dict[str, tuple] = {
    f"sahs-{driver}-{name}": ("sahs-nerf-small", {"driver": driver, **switches})
    for driver in ("audio", "expression")
    for name, switches in (
        ("full", {}),
        ("no-dws", {"use_dynamic_sampling": False}),
        ("no-dws-ldf", {"use_dynamic_sampling": False, "use_ambient": False}),
        ("no-dws-hdm", {"use_dynamic_sampling": False, "use_deformation": False}),
    )
}
ROWS["dtnerf-small"] = ("dtnerf-small", {})
LABELS = {"full": "full", "no-dws": "w/o DWS", "no-dws-ldf": "w/o DWS+LDF", "no-dws-hdm": "w/o DWS+HDM"}


def _config(preset: str):
    if preset == "dtnerf-small":
        from dtnerf_ns.methods.dtnerf.dtnerf_config import dtnerf_small_config  # noqa: PLC0415

        return copy.deepcopy(dtnerf_small_config)
    from dtnerf_ns.methods.sahs.sahs_config import sahs_small_config  # noqa: PLC0415

    return copy.deepcopy(sahs_small_config)


def run_row(row: str, data: Path, work: Path, minutes: float, stride: int) -> dict:
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
    torch.manual_seed(0)
    np.random.seed(0)
    trainer = setup_trainer(config, data, work / "runs" / row, 3000)
    steps, seconds = train_within(trainer, minutes)
    return {"row": row, "iterations": steps, "iterations_per_second": steps / seconds,
            **measure(trainer.pipeline, stride),
            "peak_host_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}  # fmt: skip


def measure(pipeline, stride: int) -> dict:
    """L1, PSNR, SSIM, mouth-box PSNR and LMD of the test frames at 512x512."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from data_processing import dataset_layout as layout  # noqa: PLC0415
    from data_processing.io_utils import read_image, read_mask  # noqa: PLC0415
    from dtnerf_ns.evaluation.image_metrics import l1, psnr, ssim  # noqa: PLC0415
    from dtnerf_ns.evaluation.landmark_distance import LandmarkDistance, to_uint8  # noqa: PLC0415

    model, dataset = pipeline.model, pipeline.datamanager.eval_dataset
    model.eval()
    lmd = LandmarkDistance()
    rows: List[dict] = []
    with torch.no_grad():
        for i in range(0, len(dataset), stride):
            gt = torch.from_numpy(read_image(dataset.image_filenames[i], size=(512, 512))).float() / 255
            camera = dataset.cameras[i : i + 1].to(model.device)
            pred = model.render_final_frame(camera, output_size=(512, 512))["rgb"].clamp(0, 1).cpu()
            frame = int(dataset.metadata["frame_indices"][i])
            mouth = torch.from_numpy(read_mask(layout.mask_path(dataset.metadata["data_dir"], "mouth", frame), size=(512, 512)))
            ys, xs = torch.nonzero(mouth, as_tuple=True)
            box = torch.zeros_like(mouth)
            if len(ys):
                box[int(ys.min()) : int(ys.max()) + 1, int(xs.min()) : int(xs.max()) + 1] = True
            rows.append({"l1": l1(pred, gt), "psnr": psnr(pred, gt), "ssim": ssim(pred, gt),
                         "mouth_psnr": psnr(pred, gt, box) if len(ys) else float("nan")})  # fmt: skip
            lmd.add(to_uint8(pred.numpy()), to_uint8(gt.numpy()))
    summary = lmd.summary()
    out = {key: float(np.nanmean([r[key] for r in rows])) for key in rows[0]}
    out["lmd"] = summary.get("value") if summary.get("available") else None
    out["test_frames"] = len(rows)
    return out


def markdown(results: List[dict], minutes: float, data: Path) -> str:
    def fmt(value, digits):
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [
        f"Test frames of `{data.name}` (last 1/8), at 512x512; each row trained {minutes:g} min on this CPU "
        "(at most 3000 iterations).",
        "",
        "| driver | method | L1 ↓ | PSNR ↑ | SSIM ↑ | LMD ↓ | mouth PSNR ↑ | it/s | iterations | peak GB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if r["row"] == "dtnerf-small":
            driver, method = "audio", "dtnerf-small (reference)"
        else:
            _, driver, variant = r["row"].split("-", 2)
            method = f"sahs-nerf-small {LABELS[variant]}"
        lines.append(
            f"| {driver} | {method} | {fmt(r['l1'], 4)} | {fmt(r['psnr'], 2)} | {fmt(r['ssim'], 3)} | {fmt(r['lmd'], 2)} "
            f"| {fmt(r['mouth_psnr'], 2)} | {fmt(r['iterations_per_second'], 2)} | {r['iterations']} | {fmt(r['peak_host_gb'], 2)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=CLIP)
    parser.add_argument("--minutes", type=float, default=4.0, help="training time per row")
    parser.add_argument("--test-stride", type=int, default=8, help="measure every n-th test frame (a full-frame CPU render takes seconds)")
    parser.add_argument("--dataset", type=Path, default=None, help="a dtnerf-process output of --video (default: made once)")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "sahs_ablation")
    parser.add_argument("--run", choices=list(ROWS), help=argparse.SUPPRESS)  # one row, in a child process
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print("RESULT " + json.dumps(run_row(args.run, args.data, args.work, args.minutes, args.test_stride)), flush=True)
        return 0
    if args.dataset is None and not args.video.is_file():
        print(f"sahs_ablation: clip not found: {args.video}", file=sys.stderr)
        return 1
    sys.path.insert(0, str(REPO / "benchmarks"))
    from memory_benchmark import make_dataset  # noqa: PLC0415

    data = args.dataset or make_dataset(args.video, 0, args.work)
    results = []
    for row in args.rows:
        print(f"{row}: training {args.minutes:g} min, then measuring ...", flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--run", row, "--data", str(data), "--work", str(args.work),
             "--minutes", str(args.minutes), "--test-stride", str(args.test_stride)],
            capture_output=True, text=True,
        )  # fmt: skip
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(proc.stdout[-2000:] + proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode or 1
        results.append(json.loads(lines[-1][len("RESULT ") :]))
        print(f"  {results[-1]}", flush=True)
        (args.work / "ablation.json").write_text(json.dumps(results, indent=2))
    table = markdown(results, args.minutes, data)
    (args.work / "ablation.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
