"""Train ``dtnerf`` (the GPU config) on a CUDA machine for a fixed time, measuring it along the way.

    python benchmarks/gpu_benchmark.py                          # sample clip; measures after 10 and 30 minutes
    python benchmarks/gpu_benchmark.py --minutes 5 --data data/me
    python benchmarks/gpu_benchmark.py --sampler proposal       # the same with the proposal sampler, to compare

At each mark (minutes of training; measuring pauses the clock): iterations per second since the start, full-frame
render speed over the held-out frames (frames/s at the dataset's resolution: 512x512 for dtnerf-process's default;
``get_outputs_for_camera``, composited over the headless image), and held-out PSNR/SSIM over the whole frame and the
mouth (``evaluate`` of benchmarks/train_benchmark.py). Also the sampler in use ("auto" is nerfacc's occupancy grid
where its CUDA kernels load) and peak GPU memory. Without the dataset (``--data``) the sample clip is processed first.
Needs CUDA: on a machine without it, prints one line and exits with status 1.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from train_benchmark import CLIP, REPO, ensure_dataset, evaluate, setup_trainer


@torch.no_grad()
def render_fps(pipeline) -> float:
    """Frames per second of full-frame renders of every held-out camera (after one warm-up render)."""
    model, cameras = pipeline.model, pipeline.datamanager.eval_dataset.cameras.to(pipeline.model.device)
    model.eval()
    model.get_outputs_for_camera(cameras[0:1])
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(len(cameras)):
        model.get_outputs_for_camera(cameras[i : i + 1])
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    model.train()
    return len(cameras) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10.0, 30.0], help="training minutes to measure at")
    parser.add_argument("--data", type=Path, default=None, help="processed dataset (default: process the sample clip)")
    parser.add_argument("--output", type=Path, default=REPO / "outputs" / "gpu_benchmark")
    parser.add_argument("--sampler", choices=["auto", "proposal", "occupancy"], help="instead of the config's (auto)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_benchmark: needs a CUDA GPU (torch.cuda.is_available() is False); on a CPU run "
              "benchmarks/train_benchmark.py", file=sys.stderr)  # fmt: skip
        return 1
    if args.data is None and not CLIP.is_file():
        print(f"gpu_benchmark: sample clip not found: {CLIP} (give --data)", file=sys.stderr)
        return 1
    data = args.data or ensure_dataset(args.output / "dataset")
    marks = sorted(set(args.minutes))

    from dtnerf_ns.methods.dtnerf.dtnerf_config import dtnerf_config

    torch.manual_seed(0)
    np.random.seed(0)
    config = copy.deepcopy(dtnerf_config)
    if args.sampler is not None:
        config.pipeline.model.sampler = args.sampler
    trainer = setup_trainer(config, data, args.output / "runs", config.max_num_iterations)
    pipeline = trainer.pipeline
    cameras = pipeline.datamanager.eval_dataset.cameras
    height, width = int(cameras.height[0]), int(cameras.width[0])
    sampler = pipeline.model.sampler_kind
    # dtnerf asks for tiny-cuda-nn; without it the hash grids fall back to pure torch (much slower).
    grids = "tcnn" if importlib.util.find_spec("tinycudann") else "torch"
    print(f"gpu_benchmark: dtnerf on {data} at {width}x{height}, {sampler} sampler, {grids} hash grids, "
          f"{torch.cuda.get_device_name()}")  # fmt: skip

    rows = []
    clock = {"start": 0.0, "paused": 0.0, "steps": 0}
    train_iteration = trainer.train_iteration

    def timed_iteration(step):
        result = train_iteration(step)
        clock["steps"] += 1
        trained = time.perf_counter() - clock["start"] - clock["paused"]
        if trained >= marks[len(rows)] * 60:
            torch.cuda.synchronize()
            trained = time.perf_counter() - clock["start"] - clock["paused"]
            pause = time.perf_counter()
            fps = render_fps(pipeline)
            quality = evaluate(pipeline)
            rows.append(
                {
                    "minutes": trained / 60,
                    "iterations": clock["steps"],
                    "iterations_per_second": clock["steps"] / trained,
                    "render_fps": fps,
                    "test": quality,
                    "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20,
                }
            )
            m = rows[-1]
            print(f"gpu_benchmark: {m['minutes']:.1f} min, {m['iterations']} iterations "
                  f"({m['iterations_per_second']:.2f} it/s), {fps:.2f} frames/s, PSNR {quality['psnr']:.2f} dB, "
                  f"mouth PSNR {quality['mouth_psnr']:.2f} dB")  # fmt: skip
            clock["paused"] += time.perf_counter() - pause
            trainer.stop_training = len(rows) == len(marks)
        return result

    trainer.train_iteration = timed_iteration  # type: ignore[method-assign]
    clock["start"] = time.perf_counter()  # includes the callbacks (occupancy-grid updates) between iterations
    trainer.train()

    result = {
        "method": "dtnerf",
        "sampler": sampler,
        "hash_grids": grids,
        "device": torch.cuda.get_device_name(),
        "resolution": [width, height],
        "data": str(data),
        "marks": rows,
    }
    (args.output / "gpu_benchmark.json").write_text(json.dumps(result, indent=2))
    frames = rows[0]["test"]["frames"]
    print(f"\ndtnerf ({sampler} sampler, {grids} hash grids) on {torch.cuda.get_device_name()}, {width}x{height}, "
          f"{frames} held-out frames")  # fmt: skip
    print(f"{'minutes':>8}{'iters':>9}{'it/s':>8}{'render fps':>12}{'PSNR':>8}{'SSIM':>7}"
          f"{'mouth PSNR':>12}{'mouth SSIM':>12}")  # fmt: skip
    for m in rows:
        q = m["test"]
        print(f"{m['minutes']:>8.1f}{m['iterations']:>9}{m['iterations_per_second']:>8.2f}{m['render_fps']:>12.2f}"
              f"{q['psnr']:>8.2f}{q['ssim']:>7.3f}{q['mouth_psnr']:>12.2f}{q['mouth_ssim']:>12.3f}")  # fmt: skip
    print(f"peak GPU memory {rows[-1]['peak_gpu_memory_mb']:.0f} MB; results in {args.output / 'gpu_benchmark.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
