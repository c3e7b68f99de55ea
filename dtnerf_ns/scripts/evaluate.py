"""``dtnerf-eval``: the metrics of the DT-NeRF and SAHS-NeRF papers' tables for a trained model's test split.

Example::

    dtnerf-eval --load-config outputs/me/dtnerf/2026-11-21_120000/config.yml

PSNR, SSIM, L1 (whole frame and face mask) and LMD always; LPIPS, FID and SyncNet confidence when their pretrained
weights are on this machine (torch hub cache, or ``--lpips-weights`` / ``--fid-weights`` / ``--syncnet-weights``),
otherwise they are reported unavailable with the reason. Definitions: :mod:`dtnerf_ns.evaluation`. Writes
``metrics.json``, ``metrics.md`` and ``strip.png`` into ``eval/`` beside the config (all three or none).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dtnerf_ns.evaluation.output_layout import METRICS_JSON, METRICS_MD, STRIP_PNG, is_eval_output
from dtnerf_ns.scripts.trained_model import TrainedModelError, load_trained_model


class EvalError(Exception):
    """dtnerf-eval cannot run; the message is printed as one line."""


def _check_output(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise EvalError(f"{folder}: exists and is not a folder; pass another --output.")
    if folder.is_dir() and any(folder.iterdir()) and not is_eval_output(folder):
        raise EvalError(f"{folder}: holds other files (not an earlier dtnerf-eval output); pass another --output.")


def _publish(partial: Path, folder: Path) -> None:
    """Moves the finished ``partial`` folder to ``folder``, replacing an earlier evaluation there."""
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    partial.rename(folder)
    if old.exists():
        shutil.rmtree(old)


def _summary_table(metrics: Dict[str, Dict[str, Any]]) -> Table:
    """The metrics as printed: whole frame, face mask, and a note (why unavailable, counts, ground-truth Sync)."""
    table = Table(title="dtnerf-eval (test split)", title_justify="left")
    table.add_column("metric")
    table.add_column("frame", justify="right")
    table.add_column("face", justify="right")
    table.add_column("notes")
    shown = {"psnr": ("PSNR", 2), "ssim": ("SSIM", 4), "l1": ("L1", 4), "lpips": ("LPIPS", 4), "fid": ("FID", 3),
             "lmd": ("LMD", 3), "sync": ("Sync", 3), "lip_sync": ("Lip sync (AUC)", 3)}  # fmt: skip
    for name, (label, d) in shown.items():
        entry = metrics[name]
        if not entry.get("available"):
            table.add_row(label, "[yellow]unavailable", "", entry["reason"])
        elif name == "lmd":
            note = f"px at 512x512, {entry['frames_scored']} frames; no face: {entry['no_face_render']} render(s), "
            note += f"{entry['no_face_ground_truth']} ground truth"
            table.add_row(label, f"{entry['value']:.{d}f}", "", note)
        elif name == "sync":
            render, gt = entry["render"], entry["ground_truth"]
            note = f"AV offset {render['av_offset']}; ground truth {gt['confidence']:.{d}f} (offset {gt['av_offset']})"
            table.add_row(label, f"{render['confidence']:.{d}f}", "", note)
        elif name == "lip_sync":
            render, gt = entry["render"], entry["ground_truth"]
            note = (f"open vowels vs p/b/m, offset 0 (not SyncNet); ground truth {gt['auc_at_zero']:.{d}f}; mouth-opening "
                    f"spread {render['opening_std']:.4f} vs {gt['opening_std']:.4f}, r = {entry['opening_pearson_r']:.2f}")
            table.add_row(label, f"{render['auc_at_zero']:.{d}f}", "", note)
        else:
            cells = [f"{entry[k]:.{d}f}" if math.isfinite(entry[k]) else "–" for k in ("frame", "face")]
            table.add_row(label, *cells, "")
    return table


@dataclass
class EvaluateDTNeRF:
    """Evaluate a trained model of this package (dtnerf, sahs-nerf) on its test split with the metrics of the DT-NeRF
    and SAHS-NeRF papers (PSNR, SSIM, L1, LPIPS, FID for the whole frame and the face; LMD; SyncNet confidence) and
    write metrics.json, a markdown table like the paper's and a ground truth / render / error strip."""

    load_config: Path
    """config.yml of a trained run of any method of this package, e.g. dtnerf / dtnerf-small (written by ns-train)."""
    output: Optional[Path] = None
    """Folder for the report; None: eval/ beside the config. An earlier report there is replaced."""
    lpips_weights: Optional[Path] = None
    """AlexNet ImageNet weights for LPIPS (torchvision's alexnet-owt-7be5be79.pth); None: the torch hub cache."""
    fid_weights: Optional[Path] = None
    """FID InceptionV3 weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth); None: the torch hub cache."""
    syncnet_weights: Optional[Path] = None
    """syncnet_python's syncnet_v2.model for SyncNet confidence; None: the torch hub cache."""
    strip_frames: int = 4
    """Test frames shown in strip.png, evenly spaced over the test split."""

    def main(self) -> None:
        """Evaluates and writes the report; raises EvalError (one line) when it cannot."""
        if self.strip_frames < 1:
            raise EvalError(f"--strip-frames must be at least 1, got {self.strip_frames}")
        folder = self.output if self.output is not None else Path(self.load_config).parent / "eval"
        _check_output(folder)
        try:
            trained = load_trained_model(Path(self.load_config), test_mode="test")
        except TrainedModelError as err:
            raise EvalError(str(err)) from err
        except Exception as err:  # noqa: BLE001 - e.g. a checkpoint that does not fit: one line, no traceback
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EvalError(f"{self.load_config}: cannot load the run ({reason})") from err

        # Lazy: torch, torchmetrics, mediapipe and the networks load only when there is something to evaluate.
        from dtnerf_ns.evaluation.evaluator import EvalOptions, evaluate  # noqa: PLC0415
        from dtnerf_ns.evaluation.report import write_report  # noqa: PLC0415

        options = EvalOptions(self.lpips_weights, self.fid_weights, self.syncnet_weights, self.strip_frames)
        num = len(trained.pipeline.datamanager.eval_dataset)
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=CONSOLE, transient=True) as progress:
            task = progress.add_task("rendering test frames", total=num)
            result = evaluate(
                trained.pipeline,
                options,
                on_frame=lambda: progress.advance(task),
                on_stage=lambda name: progress.update(task, description=name),
            )
        result.info.update(
            experiment=trained.config.experiment_name,
            method=trained.config.method_name,
            config=str(self.load_config),
            checkpoint=str(trained.checkpoint),
            step=trained.step,
            dataset=str(trained.data_dir),
        )

        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
        try:
            partial.mkdir()
            write_report(partial, result)
            _publish(partial, folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

        CONSOLE.print(_summary_table(result.metrics))
        width, height = result.info["resolution"]
        CONSOLE.print(f"{num} test frames at {width}x{height}, {result.info['render_fps']:.2f} frames/s rendering")
        for name in (METRICS_JSON, METRICS_MD, STRIP_PNG):
            CONSOLE.print(f"wrote {folder / name}")


def entrypoint() -> None:
    """Console script ``dtnerf-eval``: one line and exit status 1 when it cannot evaluate."""
    # mediapipe logs through glog/absl at start-up, and libraries' deprecation notices and nerfstudio's camera-indexing
    # warning say nothing about the evaluation: keep the terminal for the results.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    tyro.extras.set_accent_color("bright_yellow")
    command = tyro.cli(EvaluateDTNeRF)
    try:
        command.main()
    except EvalError as err:
        print(f"dtnerf-eval: error: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        print("dtnerf-eval: interrupted; nothing written.", file=sys.stderr, flush=True)
        sys.exit(130)


if __name__ == "__main__":
    entrypoint()

# For sphinx docs
get_parser_fn = lambda: tyro.extras.get_parser(EvaluateDTNeRF)  # noqa: E731
