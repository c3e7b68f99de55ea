"""A short dtnerf-small training run (coarse then fine stage) (nerfstudio's Trainer, in-process) on a tiny dataset: the loss goes down, a
checkpoint is written and reloads for rendering."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch


ITERATIONS = 40
FINE_FRACTION = 0.8
FINE_START = 32  # 0.8 x 40: the last 8 iterations run the fine stage (patches; MSE only offline)


def test_train_checkpoint_reload_render(tiny_dtnerf_dataset: Path, tiny_train_config, tmp_path: Path):
    from nerfstudio.utils.eval_utils import eval_setup

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    config = tiny_train_config(tiny_dtnerf_dataset, tmp_path / "outputs", ITERATIONS, FINE_FRACTION)

    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    losses, keys = [], []
    train_iteration = trainer.train_iteration

    def record(step):
        loss, loss_dict, metrics = train_iteration(step)
        losses.append(float(loss))
        keys.append(set(loss_dict))
        return loss, loss_dict, metrics

    trainer.train_iteration = record  # type: ignore[method-assign]
    trainer.train()
    assert trainer.pipeline.datamanager.fine_stage_start == FINE_START

    assert len(losses) == ITERATIONS and all(np.isfinite(losses))
    assert np.mean(losses[FINE_START - 8 : FINE_START]) < 0.8 * np.mean(losses[:8]), losses
    assert "face_loss" in keys[FINE_START - 1] and "rgb_loss" not in keys[FINE_START - 1]
    assert "rgb_loss" in keys[FINE_START] and "face_loss" not in keys[FINE_START]
    checkpoints = sorted((config.get_base_dir() / "nerfstudio_models").glob("step-*.ckpt"))
    assert checkpoints, "no checkpoint written"

    _, pipeline, ckpt_path, step = eval_setup(config.get_base_dir() / "config.yml", test_mode="test")
    assert ckpt_path == checkpoints[-1] and step == ITERATIONS - 1
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    outputs = pipeline.model.get_outputs_for_camera(camera)
    assert outputs["rgb"].shape == (64, 64, 3) and torch.isfinite(outputs["rgb"]).all()
    assert {"rgb_face", "rgb_mouth", "depth", "accumulation"} <= set(outputs)
    # eval metrics on a test image (PSNR / SSIM / mouth PSNR; no LPIPS offline)
    metrics, _ = pipeline.get_eval_image_metrics_and_images(step)
    assert {"psnr", "ssim"} <= set(metrics)
