"""Speed and memory of dtnerf-process (a benchmark, not a test: it prints its figures).

    python benchmarks/process_benchmark.py                 # the 8 s sample clip
    python benchmarks/process_benchmark.py --minutes 5     # the clip repeated to 5 minutes

Targets on the 2-core CPU machine: at least 2.5x real time overall (62.5 frames/s for 25-fps video) and, because
frames stream to disk, under 2 GB peak memory for a 5-minute video, all of dtnerf-process's processes together (its
frame and audio workers included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared" / "data" / "hdtf_aoc_8s.mp4"


def repeat_clip(src: Path, dst: Path, minutes: float) -> None:
    """Concatenate ``src`` with itself (stream copy, no re-encoding) to about ``minutes`` long."""
    import av

    with av.open(str(src)) as probe:
        duration = float(probe.duration / 1e6)
    repeats = max(1, int(round(minutes * 60 / duration)))
    with av.open(str(dst), "w") as out:
        outs, offset, end = {}, {}, {}
        for _ in range(repeats):
            with av.open(str(src)) as inp:
                for s in inp.streams:
                    if s.index not in outs:
                        outs[s.index] = out.add_stream_from_template(s)
                        offset[s.index] = end[s.index] = 0
                first = {}
                for packet in inp.demux():
                    if packet.dts is None:
                        continue
                    i = packet.stream.index
                    # Each copy starts where the previous one ended, so timestamps keep rising.
                    first.setdefault(i, packet.dts)
                    shift = offset[i] - first[i]
                    packet.pts += shift
                    packet.dts += shift
                    end[i] = max(end[i], packet.dts + (packet.duration or 1))
                    packet.stream = outs[i]
                    out.mux(packet)
                offset.update(end)


def tree_peak_memory_mb(proc: subprocess.Popen, interval: float = 0.1) -> float:
    """Waits for ``proc``; the largest sum of resident memory of it and its descendants seen, sampled every
    ``interval`` s."""
    import psutil

    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(interval)
    return peak / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--minutes", type=float, default=0.0, help="repeat the clip to this length first (0: as is)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=None, help="dtnerf-process --workers (default: its own)")
    args = parser.parse_args()
    if not args.video.is_file():
        print(f"benchmark: clip not found: {args.video}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video
        if args.minutes > 0:
            video = Path(tmp) / "long.mp4"
            repeat_clip(args.video, video, args.minutes)
        out = Path(tmp) / "dataset"
        command = [sys.executable, "-m", "data_processing", str(video), "-o", str(out), "--size", str(args.size)]
        if args.workers is not None:
            command += ["--workers", str(args.workers)]
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peak_mb = tree_peak_memory_mb(proc)
        stderr = proc.stderr.read()
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            print(stderr, file=sys.stderr)
            return proc.returncode
        report = json.loads((out / "report.json").read_text())
        n = report["frames"]
        print(f"clip: {video.name} ({report['source']['width']}x{report['source']['height']} @ {report['source']['fps']:g} fps) -> {n} frames at {args.size}px")
        print(f"{'stage':<10}{'seconds':>10}{'frames/s':>12}")
        for stage, seconds in report["timings_seconds"].items():
            print(f"{stage:<10}{seconds:>10.2f}{n / seconds if seconds > 0 else float('inf'):>12.1f}")
        print(f"{'overall':<10}{wall:>10.2f}{n / wall:>12.1f}   (wall clock, process start to finish)")
        speed = n / report["fps"] / wall
        print(f"{speed:.2f}x real time ({n / report['fps']:.0f} s of video in {wall:.0f} s), frame workers: {report.get('workers', 1)}")
        print(f"peak memory, all processes together: {peak_mb:.0f} MB")
        print(f"target: >= 2.5x real time: {'met' if speed >= 2.5 else 'NOT met'}; < 2048 MB: {'met' if peak_mb < 2048 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
