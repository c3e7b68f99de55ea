"""Train ``dtnerf-small`` on the sample clip on this machine (its 3000 iterations, at most --minutes), then measure it.

    python benchmarks/train_benchmark.py                  # dtnerf-small's 3000 iterations (at most 15 minutes)
    python benchmarks/train_benchmark.py --minutes 2      # a quick look

Prints, on the held-out frames (last 1/8 of the clip): PSNR and SSIM over the whole frame and
over the mouth region (the bounding box of the dataset's mouth mask), iterations per second and
peak memory. Then the audio check: the same model evaluated with every frame's audio replaced by
the audio of a frame half a clip away; mouth-region PSNR with the true audio must be clearly
higher, which shows that audio drives the mouth.
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

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "hdtf_aoc_8s.mp4"


def ensure_dataset(out: Path) -> Path:
    if not (out / "report.json").is_file():
        subprocess.run([sys.executable, "-m", "data_processing", str(CLIP), "-o", str(out)], check=True)
    return out


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    from torchmetrics.functional import structural_similarity_index_measure

    return float(structural_similarity_index_measure(a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None], data_range=1.0))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(torch.mean((a - b) ** 2).clamp_min(1e-10)))


@torch.no_grad()
def evaluate(pipeline) -> dict:
    """Whole-frame and mouth-box PSNR/SSIM over the eval (test) split."""
    model, dataset = pipeline.model, pipeline.datamanager.eval_dataset
    model.eval()
    rows = []
    for i in range(len(dataset)):
        batch = dataset[i]
        camera = dataset.cameras[i : i + 1].to(model.device)
        out = model.get_outputs_for_camera(camera)
        gt = batch["image"][..., :3].to(model.device)
        pred = out["rgb"].clamp(0, 1)
        mouth = batch["mouth_mask"].reshape(gt.shape[:2]) > 0.5
        ys, xs = torch.nonzero(mouth, as_tuple=True)
        y0, y1 = int(ys.min()), int(ys.max()) + 1
        x0, x1 = int(xs.min()), int(xs.max()) + 1
        # SSIM's 11-px window needs a crop of at least 11 px a side.
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        half_h, half_w = max((y1 - y0) // 2, 6), max((x1 - x0) // 2, 6)
        crop = (slice(max(cy - half_h, 0), cy + half_h), slice(max(cx - half_w, 0), cx + half_w))
        rows.append(
            {
                "psnr": psnr(pred, gt),
                "ssim": ssim(pred, gt),
                "mouth_psnr": psnr(pred[crop], gt[crop]),
                "mouth_ssim": ssim(pred[crop], gt[crop]),
            }
        )
    model.train()
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} | {"frames": len(rows)}


def train_within(trainer, minutes: float, on_step=None) -> tuple:
    """Trains until ``trainer``'s iterations are done or ``minutes`` have passed since the first step (the check runs
    after each step); ``on_step(result)`` sees each step's result. Returns (steps, seconds)."""
    state = {"start": None, "steps": 0}
    step_fn = trainer.train_iteration

    def timed_step(step):
        state["start"] = state["start"] or time.perf_counter()
        result = step_fn(step)
        state["steps"] += 1
        if on_step is not None:
            on_step(result)
        if time.perf_counter() - state["start"] > minutes * 60:
            trainer.stop_training = True
        return result

    trainer.train_iteration = timed_step  # type: ignore[method-assign]
    trainer.train()
    return state["steps"], time.perf_counter() - state["start"]


def setup_trainer(base_config, data: Path, output_dir: Path, iterations: int):
    """A set-up Trainer for a copy of ``base_config`` on ``data``: no evaluations or checkpoints during training,
    ``iterations`` steps (the fine stage starts at the preset's fraction of them) unless the caller's time budget ends
    training first by setting ``trainer.stop_training``."""
    config = copy.deepcopy(base_config)
    config.output_dir = output_dir
    config.pipeline.datamanager.data = data
    config.max_num_iterations = iterations
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**9
    config.steps_per_save = 10**9
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0, help="training time budget (ends training early)")
    parser.add_argument("--iterations", type=int, default=3000, help="training iterations (dtnerf-small's 3000)")
    parser.add_argument("--output", type=Path, default=REPO / "outputs" / "train_benchmark")
    parser.add_argument("--data", type=Path, default=None, help="a processed dataset (default: process the sample clip)")
    args = parser.parse_args()
    if args.data is None and not CLIP.is_file():
        print(f"benchmark: sample clip not found: {CLIP}", file=sys.stderr)
        return 1
    data = args.data or ensure_dataset(args.output / "dataset")

    from dtnerf_ns.methods.dtnerf.dtnerf_config import dtnerf_small_config

    torch.manual_seed(0)
    np.random.seed(0)
    trainer = setup_trainer(dtnerf_small_config, data, args.output / "runs", args.iterations)

    losses = []
    steps, seconds = train_within(trainer, args.minutes, lambda result: losses.append(float(result[0])))

    pipeline = trainer.pipeline
    true_audio = evaluate(pipeline)
    model = pipeline.model
    original = model.conditioning.audio_features.clone()
    n = original.shape[0]
    model.conditioning.audio_features.copy_(torch.roll(original, shifts=n // 2, dims=0))  # frame i hears frame i + N/2
    wrong_audio = evaluate(pipeline)
    model.conditioning.audio_features.copy_(original)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    h = int(pipeline.datamanager.eval_dataset.cameras.height[0])
    result = {
        "method": "dtnerf-small",
        "resolution": h,
        "train_minutes": seconds / 60,
        "iterations": steps,
        "iterations_per_second": steps / seconds,
        "loss_first_100": float(np.mean(losses[:100])),
        "loss_last_100": float(np.mean(losses[-100:])),
        "test_true_audio": true_audio,
        "test_shuffled_audio": wrong_audio,
        "peak_memory_mb": peak_mb,
    }
    (args.output / "train_benchmark.json").write_text(json.dumps(result, indent=2))
    print(f"dtnerf-small on {data} at {h}x{h}: {steps} iterations in {seconds / 60:.1f} min = {steps / seconds:.2f} it/s; peak memory {peak_mb:.0f} MB")
    print(f"loss: first 100 steps {result['loss_first_100']:.4f} -> last 100 steps {result['loss_last_100']:.4f}")
    print(f"{'held-out (' + str(true_audio['frames']) + ' frames)':<28}{'PSNR':>8}{'SSIM':>8}{'mouth PSNR':>12}{'mouth SSIM':>12}")
    for name, m in (("true audio", true_audio), ("shuffled audio", wrong_audio)):
        print(f"{name:<28}{m['psnr']:>8.2f}{m['ssim']:>8.3f}{m['mouth_psnr']:>12.2f}{m['mouth_ssim']:>12.3f}")
    gap = true_audio["mouth_psnr"] - wrong_audio["mouth_psnr"]
    print(f"audio check: mouth PSNR true - shuffled = {gap:+.2f} dB ({'audio drives the mouth' if gap > 0.5 else 'NOT clearly higher'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
