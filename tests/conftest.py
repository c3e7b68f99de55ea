"""Shared fixtures for the dtnerf_ns tests (a tiny processed dataset, tiny training runs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CLIP = REPO.parent / "shared" / "data" / "hdtf_aoc_8s.mp4"


@pytest.fixture(scope="session")
def tiny_dtnerf_dataset(tmp_path_factory) -> Path:
    """A 64 px, 24-frame dataset made once per session with dtnerf-process from the sample clip."""
    if not SAMPLE_CLIP.is_file():
        pytest.skip(f"sample clip {SAMPLE_CLIP} is absent (it lives in ../shared/data beside the repository)")
    exe = shutil.which("dtnerf-process") or str(Path(sys.executable).parent / "dtnerf-process")
    out = tmp_path_factory.mktemp("dtnerf") / "tiny"
    result = subprocess.run(
        [exe, str(SAMPLE_CLIP), "-o", str(out), "--size", "64", "--max-frames", "24"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"dtnerf-process failed:\n{result.stdout}\n{result.stderr}"
    return out


def _tiny_config(base, dataset: Path, output_dir: Path, iterations: int):
    """A preset adapted to the 64 px dataset and a handful of CPU iterations (config saved, ready to train)."""
    import copy  # noqa: PLC0415

    config = copy.deepcopy(base)
    config.output_dir = output_dir
    config.pipeline.datamanager.data = dataset
    config.pipeline.datamanager.dataparser.downscale_factor = 1.0  # the dataset is 64 px already
    config.machine.device_type = "cpu"
    config.pipeline.model.compile = "off"  # short runs; the compiled path has its own tests (test_compilation.py)
    config.max_num_iterations = iterations
    config.steps_per_save = iterations
    config.steps_per_eval_batch = 20
    config.steps_per_eval_image = 20
    config.steps_per_eval_all_images = 1_000_000
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    config.logging.local_writer.enable = False
    return config


def _tiny_train_config(dataset: Path, output_dir: Path, iterations: int, fine_stage_fraction=None):
    """dtnerf-small on the tiny dataset."""
    from dtnerf_ns.methods.dtnerf.dtnerf_config import dtnerf_small_config  # noqa: PLC0415

    config = _tiny_config(dtnerf_small_config, dataset, output_dir, iterations)
    config.pipeline.datamanager.fine_stage_fraction = fine_stage_fraction
    config.set_timestamp()
    config.save_config()
    return config


def _tiny_sahs_config(dataset: Path, output_dir: Path, iterations: int, driver: str = "audio"):
    """sahs-nerf-small on the tiny dataset."""
    from dtnerf_ns.methods.sahs.sahs_config import sahs_small_config  # noqa: PLC0415

    config = _tiny_config(sahs_small_config, dataset, output_dir, iterations)
    config.pipeline.model.driver = driver
    config.set_timestamp()
    config.save_config()
    return config


@pytest.fixture(scope="session")
def tiny_sahs_config():
    """Factory: ``tiny_sahs_config(dataset, output_dir, iterations, driver)`` -> a saved sahs-nerf-small TrainerConfig."""
    return _tiny_sahs_config


@pytest.fixture(scope="session")
def tiny_train_config():
    """Factory: ``tiny_train_config(dataset, output_dir, iterations, fine_stage_fraction)`` -> a saved TrainerConfig."""
    return _tiny_train_config


@pytest.fixture(scope="session")
def tiny_trained_config(tiny_dtnerf_dataset: Path, tmp_path_factory) -> Path:
    """config.yml of a dtnerf-small model trained for 30 iterations on the tiny dataset (for render/eval/viewer)."""
    import random  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    config = _tiny_train_config(tiny_dtnerf_dataset, tmp_path_factory.mktemp("trained"), 30)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return config.get_base_dir() / "config.yml"


@pytest.fixture(scope="session")
def tiny_sahs_trained_config(tiny_dtnerf_dataset: Path, tmp_path_factory) -> Path:
    """config.yml of a sahs-nerf-small model (audio driver) trained for 30 iterations on the tiny dataset."""
    import torch  # noqa: PLC0415

    torch.manual_seed(0)
    config = _tiny_sahs_config(tiny_dtnerf_dataset, tmp_path_factory.mktemp("sahs_trained"), 30)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return config.get_base_dir() / "config.yml"


@pytest.fixture(scope="session")
def tiny_sahs_expression_config(tiny_dtnerf_dataset: Path, tmp_path_factory) -> Path:
    """config.yml of a sahs-nerf-small model driven by expression coefficients, trained for 10 iterations on the tiny
    dataset (enough to load and render; for dtnerf-render --expressions-from)."""
    import torch  # noqa: PLC0415

    torch.manual_seed(0)
    config = _tiny_sahs_config(tiny_dtnerf_dataset, tmp_path_factory.mktemp("sahs_expression"), 10, driver="expression")
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return config.get_base_dir() / "config.yml"
