"""Load a trained run of any method of this package (``config.yml`` + checkpoint) for ``dtnerf-render`` and ``dtnerf-eval``.

Everything that can be wrong with the run is checked before nerfstudio builds the pipeline, so the tools can stop with
one line (:class:`TrainedModelError`) instead of nerfstudio's asserts, ``sys.exit`` or a traceback.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from data_processing import dataset_layout


class TrainedModelError(Exception):
    """The run cannot be used. The message says which file is wrong and what to do."""


@dataclass
class TrainedModel:
    """A trained run, ready to render."""

    config: "TrainerConfig"  # type: ignore[name-defined]  # noqa: F821
    pipeline: "Pipeline"  # type: ignore[name-defined]  # noqa: F821
    model: "TalkingHeadModel"  # type: ignore[name-defined]  # noqa: F821
    data_dir: Path
    """The processed dataset the model was trained on (frames, head-less images, poses)."""
    checkpoint: Path
    step: int


def _check_run(config_path: Path) -> "TrainerConfig":  # type: ignore[name-defined]  # noqa: F821
    import yaml  # noqa: PLC0415
    from nerfstudio.engine.trainer import TrainerConfig  # noqa: PLC0415

    from dtnerf_ns.core.talking_head_model import TalkingHeadModelConfig  # noqa: PLC0415

    if not config_path.is_file():
        raise TrainedModelError(f"{config_path}: no such file; pass the config.yml that ns-train wrote for the run.")
    try:
        config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    except Exception as err:  # noqa: BLE001 - any parse failure means "not a run config"
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        missing = [line.strip() for line in str(err).splitlines() if "dtnerf_ns" in line]
        if missing:  # a class path of an older layout of this package
            raise TrainedModelError(
                f"{config_path}: written by an older dtnerf_ns whose checkpoints this version cannot load "
                f"({missing[0]}); retrain with ns-train."
            ) from err
        raise TrainedModelError(f"{config_path}: not a nerfstudio config.yml ({reason}).") from err
    if not isinstance(config, TrainerConfig):
        raise TrainedModelError(f"{config_path}: not a nerfstudio config.yml; pass the one ns-train wrote for the run.")
    if not isinstance(getattr(config.pipeline, "model", None), TalkingHeadModelConfig):
        method = getattr(config, "method_name", "?")
        raise TrainedModelError(
            f"{config_path}: a '{method}' model, not a talking-head model of dtnerf_ns; train one with ns-train dtnerf."
        )
    # Checkpoints sit beside config.yml (ns-train's layout); looking there also finds a run that was moved.
    config.load_dir = config_path.parent / config.relative_model_dir
    checkpoints = sorted(config.load_dir.glob("step-*.ckpt"))
    if not checkpoints:
        raise TrainedModelError(f"{config.load_dir}: no checkpoint (step-*.ckpt); train longer than steps_per_save first.")
    data = config.pipeline.datamanager.data or getattr(config.pipeline.datamanager.dataparser, "data", None)
    if data is None or not dataset_layout.is_dataset(Path(data)):
        raise TrainedModelError(
            f"{data}: the model's dataset is gone; it is needed for poses and head-less frames (re-run dtnerf-process)."
        )
    config.pipeline.datamanager.data = Path(data)
    return config


def load_trained_model(config_path: Path, test_mode: Literal["test", "inference"] = "inference") -> TrainedModel:
    """Checks and loads a trained run on the GPU when there is one, else the CPU.

    Raises:
        TrainedModelError: the file is not a dtnerf run config, it has no checkpoint, or its dataset is missing.
    """
    config_path = Path(config_path)
    config = _check_run(config_path)

    import torch  # noqa: PLC0415
    from nerfstudio.utils.eval_utils import eval_load_checkpoint  # noqa: PLC0415

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config.machine.device_type = device.type
    pipeline = config.pipeline.setup(device=device, test_mode=test_mode)
    pipeline.eval()
    with contextlib.redirect_stdout(io.StringIO()):  # nerfstudio prints "Loading latest checkpoint" chatter
        checkpoint, step = eval_load_checkpoint(config, pipeline)
    return TrainedModel(config, pipeline, pipeline.model, Path(config.pipeline.datamanager.data), checkpoint, step)
