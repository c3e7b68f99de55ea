"""Short ``sahs-nerf-small`` runs (nerfstudio's Trainer, in-process) on the tiny dataset, one per driver: the loss goes
down, a checkpoint is written and reloads for dtnerf-render (audio) or dtnerf-eval on the test split's own expression
sequence (expression). And ``ns-train`` knows both presets."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ITERATIONS = 40


def _train(config):
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    losses = []
    step = trainer.train_iteration

    def record(i):
        result = step(i)
        losses.append(float(result[0]))
        return result

    trainer.train_iteration = record  # type: ignore[method-assign]
    trainer.train()
    return trainer, losses


@pytest.mark.parametrize("driver", ["audio", "expression"])
def test_train_checkpoint_reload(driver, tiny_dtnerf_dataset: Path, tiny_sahs_config, tmp_path: Path):
    from dtnerf_ns.scripts.evaluate import EvaluateDTNeRF
    from dtnerf_ns.scripts.render_talking_video import RenderError, RenderTalkingVideo

    config = tiny_sahs_config(tiny_dtnerf_dataset, tmp_path / "outputs", ITERATIONS, driver)
    trainer, losses = _train(config)
    assert len(losses) == ITERATIONS and all(np.isfinite(losses))
    assert np.mean(losses[-8:]) < 0.85 * np.mean(losses[:8]), losses
    model = trainer.pipeline.model
    assert type(model).__name__ == "SAHSModel" and model.config.driver == driver
    # Dynamic weighted sampling ran: the running class losses moved away from their start, the datamanager has them.
    assert not torch.allclose(model.ray_weights.class_loss, torch.ones_like(model.ray_weights.class_loss))
    assert trainer.pipeline.datamanager.ray_class_probabilities is not None
    checkpoints = sorted((config.get_base_dir() / "nerfstudio_models").glob("step-*.ckpt"))
    assert checkpoints, "no checkpoint written"
    saved = torch.load(checkpoints[-1], map_location="cpu", weights_only=False)["pipeline"]
    assert any(key.endswith("ray_weights.class_loss") for key in saved)

    config_yml = config.get_base_dir() / "config.yml"
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from test_render_talking_video import probe, write_audio  # noqa: PLC0415

    speech = write_audio(tmp_path / "a.wav", 0.6)
    if driver == "audio":
        out = tmp_path / "talk.mp4"
        RenderTalkingVideo(load_config=config_yml, audio=speech, output=out).main()
        info = probe(out)
        assert info["frames"] == 15 and info["size"] == (64, 64) and info["audio_codec"] == "aac"
        assert 10 < info["first"].mean() < 245
    else:
        report = tmp_path / "eval"
        EvaluateDTNeRF(load_config=config_yml, output=report).main()
        table = (report / "metrics.md").read_text()
        assert table.startswith("# sahs-nerf-small evaluation")
        assert "| sahs-nerf-small (this model) |" in table and "SAHS-NeRF (paper, its data)" in table
        with pytest.raises(RenderError, match="driven by expression coefficients"):
            RenderTalkingVideo(load_config=config_yml, audio=speech, output=tmp_path / "x.mp4").main()


def test_ns_train_lists_both_presets():
    from nerfstudio.plugins.registry import discover_methods

    methods, descriptions = discover_methods()
    assert {"sahs-nerf", "sahs-nerf-small", "dtnerf", "dtnerf-small"} <= set(methods)
    assert "SAHS-NeRF" in descriptions["sahs-nerf"]
    exe = shutil.which("ns-train") or str(Path(sys.executable).parent / "ns-train")
    help_text = subprocess.run([exe, "sahs-nerf-small", "--help"], capture_output=True, text=True, timeout=300).stdout
    assert "--pipeline.model.driver" in help_text and "--pipeline.model.use-dynamic-sampling" in help_text


def test_the_papers_template_trains_coarse_and_fine(tiny_dtnerf_dataset: Path, tiny_sahs_config, tmp_path: Path):
    config = tiny_sahs_config(tiny_dtnerf_dataset, tmp_path / "outputs", 6)
    config.pipeline.model.template = "mlp"
    config.steps_per_eval_image = config.steps_per_eval_batch = 10**6
    trainer, losses = _train(config)
    assert len(losses) == 6 and all(np.isfinite(losses))
    model = trainer.pipeline.model
    assert model.field_coarse is not None and model.field_coarse.deformation is model.field.deformation
    groups = model.get_param_groups()
    assert set(groups) == {"template_mlp", "deformation", "audio", "texture"}
    camera = trainer.pipeline.datamanager.eval_dataset.cameras[0:1]
    model.eval()
    outputs = model.get_outputs_for_camera(camera)
    assert outputs["rgb"].shape == (64, 64, 3) and outputs["semantics"].shape == (64, 64, 12)
    assert "rgb_head_coarse" in outputs
    torch.testing.assert_close(outputs["semantics"].sum(-1), torch.ones(64, 64))
