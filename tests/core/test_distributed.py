"""Multi-process training through nerfstudio's trainer and DDP: 2 CPU processes (gloo), then the checkpoint reloads."""

from __future__ import annotations

from pathlib import Path

import torch

ITERATIONS = 4


def test_two_cpu_processes_train_and_the_checkpoint_reloads(tiny_dtnerf_dataset: Path, tiny_train_config, tmp_path):
    from nerfstudio.utils.eval_utils import eval_setup

    from dtnerf_ns.core.distributed import train_on_cpu_processes

    config = tiny_train_config(tiny_dtnerf_dataset, tmp_path / "outputs", ITERATIONS)
    train_on_cpu_processes(config, num_processes=2)

    checkpoints = sorted((config.get_base_dir() / "nerfstudio_models").glob("step-*.ckpt"))
    assert [c.name for c in checkpoints] == [f"step-{ITERATIONS - 1:09d}.ckpt"]  # rank 0 alone writes it
    state = torch.load(checkpoints[0], map_location="cpu", weights_only=True)["pipeline"]
    # The model was wrapped in DistributedDataParallel (its parameters sit under "module.").
    assert any(key.startswith("_model.module.field.") for key in state)

    _, pipeline, path, step = eval_setup(config.get_base_dir() / "config.yml", test_mode="test")
    assert path == checkpoints[0] and step == ITERATIONS - 1
    outputs = pipeline.model.get_outputs_for_camera(pipeline.datamanager.eval_dataset.cameras[0:1])
    assert outputs["rgb"].shape == (64, 64, 3) and torch.isfinite(outputs["rgb"]).all()
