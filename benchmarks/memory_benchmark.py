"""Host (and GPU) memory and start-up time of ``ns-train dtnerf`` on a long 512x512 dataset (prints its figures).

    python benchmarks/memory_benchmark.py                                 # 5 minutes: the sample clip repeated
    python benchmarks/memory_benchmark.py --video ../shared/data/macron_fr_50s.mp4 --minutes 0   # the 50 s clip

The dataset is made once with dtnerf-process (the process benchmark's concatenation for --minutes) and kept under
--work. Training runs in a fresh process through nerfstudio's own ``ns-train`` entry (``nerfstudio.scripts.train.main``)
with the ``dtnerf`` preset at full resolution, on the CPU unless CUDA is there, for 10 iterations. Printed: peak host
memory of that process (max RSS), seconds from its start to the end of the first iteration, per-iteration time, the
frame cache's decision, and peak GPU memory where CUDA exists.

Targets (2-core, 24 GB CPU machine): peak host memory <= 8 GB for 5 minutes at 512x512, <= 4 GB for the 50 s clip,
first iteration within 60 s of start for the 50 s clip.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "hdtf_aoc_8s.mp4"

CHILD = r"""
import json, resource, sys, time
started = float(sys.argv[1])
import torch
from nerfstudio.engine.trainer import Trainer
from nerfstudio.scripts.train import main
from dtnerf_ns.methods.dtnerf.dtnerf_config import dtnerf_config as config

config.pipeline.datamanager.data = __import__("pathlib").Path(sys.argv[2])
config.output_dir = __import__("pathlib").Path(sys.argv[3])
config.max_num_iterations = int(sys.argv[4])
config.machine.device_type = "cuda" if torch.cuda.is_available() else "cpu"
config.vis = "tensorboard"
config.viewer.quit_on_train_completion = True
config.steps_per_save = config.steps_per_eval_batch = config.steps_per_eval_image = 10**9
config.steps_per_eval_all_images = 10**9
config.logging.local_writer.enable = False
times = []
step = Trainer.train_iteration
def timed(self, i):
    out = step(self, i)
    times.append(time.time())
    return out
Trainer.train_iteration = timed
main(config)
result = {
    "first_iteration_s": times[0] - started,
    "iteration_s": (times[-1] - times[0]) / max(len(times) - 1, 1),
    "iterations": len(times),
    "peak_host_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    "peak_gpu_gb": torch.cuda.max_memory_allocated() / 1024**3 if torch.cuda.is_available() else None,
}
print("RESULT " + json.dumps(result))
"""


def make_dataset(video: Path, minutes: float, work: Path) -> Path:
    """dtnerf-process output for ``video`` (repeated to ``minutes`` when > 0), made once under ``work``."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from process_benchmark import repeat_clip  # noqa: PLC0415

    name = f"{video.stem}_{minutes:g}min" if minutes > 0 else video.stem
    dataset = work / name
    if (dataset / "report.json").is_file():
        return dataset
    work.mkdir(parents=True, exist_ok=True)
    source = video
    if minutes > 0:
        source = work / f"{name}.mp4"
        if not source.is_file():
            repeat_clip(video, source, minutes)
    print(f"processing {source} -> {dataset} (once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "data_processing", str(source), "-o", str(dataset)], check=True)
    return dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=SAMPLE, help="source clip (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=5.0, help="repeat the clip to this length (0: as is)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "memory_benchmark")
    args = parser.parse_args()
    if not args.video.is_file():
        print(f"memory_benchmark: clip not found: {args.video}", file=sys.stderr)
        return 1
    dataset = make_dataset(args.video, args.minutes, args.work)
    report = json.loads((dataset / "report.json").read_text())
    runs = args.work / "runs"
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(started), str(dataset), str(runs), str(args.iterations)],
        capture_output=True, text=True,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode or 1
    result = json.loads(lines[-1][len("RESULT ") :])
    cache = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("Training frames:")]
    frames, seconds = report["frames"], report["frames"] / float(report.get("fps", 25.0))
    print(f"dataset: {dataset} ({frames} frames, {seconds / 60:.1f} min at {report.get('size', 512)} px)")
    print(f"ns-train dtnerf, {result['iterations']} iterations on {'CUDA' if result['peak_gpu_gb'] is not None else 'the CPU'}")
    if cache:
        print(f"  {cache[0]}")
    print(f"  peak host memory:         {result['peak_host_gb']:.2f} GB")
    print(f"  start to first iteration: {result['first_iteration_s']:.1f} s")
    print(f"  then per iteration:       {result['iteration_s']:.2f} s")
    if result["peak_gpu_gb"] is not None:
        print(f"  peak GPU memory:          {result['peak_gpu_gb']:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
