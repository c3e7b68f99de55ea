"""Cross-reenactment: an expression-driven sahs-nerf model follows another person's expressions.

    python benchmarks/cross_reenactment.py --load-config outputs/macron/sahs-nerf/<run>/config.yml \\
        --output outputs/cross_reenactment/macron_by_hdtf.mp4 --strip docs/images/cross_reenactment.png

The model (trained with ``--pipeline.model.driver expression``, e.g. on ``macron_fr_50s``) is rendered through
``dtnerf-render --expressions-from`` (the same code path: :class:`RenderTalkingVideo`) driven by ``--driver`` (by
default ``hdtf_aoc_8s.mp4``, another person): its face is tracked, its expression offsets are projected onto the
subject's expression basis, and its sound is muxed in. Prints the figures (frames, tracking and render speed, how far
the transferred expressions spread compared with the subject's own) and writes a PNG strip: driver frames on top, the
rendered frames below, at the same times.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DRIVER = REPO.parent / "shared" / "data" / "hdtf_aoc_8s.mp4"
TILE = 192


def driver_images(driver: Path, frames: np.ndarray, fps: float) -> Dict[int, np.ndarray]:
    """The driver's pictures at the given frames (video: index at ``fps``; dataset: its frame index)."""
    from data_processing import dataset_layout as layout  # noqa: PLC0415
    from data_processing.io_utils import read_image  # noqa: PLC0415
    from data_processing.video import iter_frames_at_rate, probe_video  # noqa: PLC0415

    wanted = {int(f) for f in frames}
    if driver.is_dir():
        return {f: read_image(layout.image_path(driver, f)) for f in wanted}
    found = {}
    for k, image in iter_frames_at_rate(probe_video(driver), fps, max(wanted) + 1):
        if k in wanted:
            found[k] = image
    return found


def rendered_images(path: Path) -> List[np.ndarray]:
    import av  # noqa: PLC0415

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def square(image: np.ndarray) -> np.ndarray:
    """The centred square of a picture."""
    h, w = image.shape[:2]
    side = min(h, w)
    return image[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]


def write_strip(path: Path, top: List[np.ndarray], bottom: List[np.ndarray], times: List[float], labels) -> None:
    """Two rows of tiles (driver above, render below) with the time over each column."""
    from PIL import Image, ImageDraw  # noqa: PLC0415

    margin, header = 96, 20
    sheet = Image.new("RGB", (margin + TILE * len(times), header + 2 * TILE), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (images, label) in enumerate(zip((top, bottom), labels)):
        y = header + row * TILE
        draw.text((6, y + TILE // 2 - 6), label, fill="black")
        for i, image in enumerate(images):
            sheet.paste(Image.fromarray(square(image)).resize((TILE, TILE), Image.BICUBIC), (margin + TILE * i, y))
    for i, t in enumerate(times):
        draw.text((margin + TILE * i + 4, 4), f"t={t:.2f}s", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of an expression-driven run")
    parser.add_argument("--driver", type=Path, default=DRIVER, help="video (or dtnerf-process dataset) to follow")
    parser.add_argument("--start", type=float, default=0.0, help="seconds of the driver to skip")
    parser.add_argument("--duration", type=float, default=None, help="seconds of the driver to render (default all)")
    parser.add_argument("--output", type=Path, default=Path("outputs/cross_reenactment/reenactment.mp4"))
    parser.add_argument("--strip", type=Path, required=True, help="PNG to write: driver frames over rendered frames")
    parser.add_argument("--columns", type=int, default=5, help="frames in the strip")
    parser.add_argument("--resolution-scale", type=float, default=1.0)
    args = parser.parse_args()
    # As dtnerf-render's entry point: nerfstudio's per-frame camera-indexing warning would bury the figures.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")

    from data_processing.errors import ProcessingError  # noqa: PLC0415
    from dtnerf_ns.scripts.render_errors import RenderError  # noqa: PLC0415
    from dtnerf_ns.scripts.render_talking_video import RenderTalkingVideo  # noqa: PLC0415
    from dtnerf_ns.scripts.trained_model import TrainedModelError  # noqa: PLC0415

    class TimedRender(RenderTalkingVideo):
        """dtnerf-render as is, keeping the driver's expressions and the time spent finding them."""

        def driver_expressions(self, data_dir, fps, console=None):
            started = time.perf_counter()
            self.drive = super().driver_expressions(data_dir, fps, console)
            self.drive_seconds, self.data_dir, self.fps = time.perf_counter() - started, data_dir, fps
            return self.drive

    args.output.parent.mkdir(parents=True, exist_ok=True)
    command = TimedRender(
        load_config=args.load_config, expressions_from=args.driver, start=args.start, duration=args.duration,
        output=args.output, resolution_scale=args.resolution_scale,
    )  # fmt: skip
    started = time.perf_counter()
    try:
        command.main()
    except (RenderError, ProcessingError, TrainedModelError) as err:
        sys.exit(f"cross_reenactment: error: {err}")
    total = time.perf_counter() - started
    drive, fps = command.drive, command.fps
    frames = len(drive.coefficients)
    rendered = rendered_images(args.output)
    # Render time: what main() spent after the driver's expressions (model load and encoding included).
    render_seconds = total - command.drive_seconds

    from data_processing import dataset_layout as layout  # noqa: PLC0415

    own = np.load(command.data_dir / layout.EXPRESSION)
    spread = drive.coefficients[:, :3].std(axis=0) / np.maximum(own[:, :3].std(axis=0), 1e-9)
    print(f"| cross-reenactment | {args.load_config} driven by {args.driver} |")
    print("| --- | --- |")
    print(f"| frames | {frames} ({frames / fps:.2f} s at {fps:g} fps), {len(rendered)} in {args.output} |")
    print(f"| transfer | {drive.transfer} |")
    print(f"| driver expressions | {command.drive_seconds:.1f} s ({frames / command.drive_seconds:.1f} frames/s, tracking included) |")
    print(f"| render | {render_seconds:.1f} s ({render_seconds / frames:.3f} s per frame, model load included) |")
    print(f"| total | {total:.1f} s ({total / frames:.3f} s per frame) |")
    print(f"| expression spread vs the subject's (first 3 components) | {', '.join(f'{s:.2f}' for s in spread)} |")
    print(f"| sound | {'muxed in' if drive.audio is not None else 'none (the driver has no audio)'} |")

    picks = np.linspace(0, len(rendered) - 1, min(args.columns, len(rendered))).round().astype(int)
    sources = driver_images(args.driver, drive.driver_frames[picks], fps)
    write_strip(
        args.strip, [sources[int(drive.driver_frames[k])] for k in picks], [rendered[k] for k in picks],
        [args.start + k / fps for k in picks], ("driver", "render"),
    )  # fmt: skip
    print(f"wrote {args.strip}")


if __name__ == "__main__":
    main()
