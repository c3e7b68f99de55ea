"""SAHS-NeRF's texture enhancement: G's shapes and that it learns, the reference frame, patch crops, the texture stage
(NeRF frozen, G trained), the stage switch, and the post-process applied exactly once by every consumer."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dtnerf_ns.methods.sahs.field_components.texture_enhancer import TextureEnhancer
from dtnerf_ns.methods.sahs.texture_stage import TextureStage, choose_reference_frame


# ---------------------------------------------------------------------------------------------- G alone
def test_enhancer_shapes_identity_at_start_and_feature_required():
    torch.manual_seed(0)
    g = TextureEnhancer((8, 16, 32), feature_dim=5)
    image, reference = torch.rand(2, 3, 30, 34), torch.rand(2, 3, 30, 34)  # sides not multiples of 4: padded inside
    out = g(image, reference, torch.rand(2, 5))
    assert out.shape == (2, 3, 30, 34)
    torch.testing.assert_close(out, image)  # zero-initialised last layer: an untrained G changes nothing
    with pytest.raises(ValueError, match="driving feature"):
        g(image, reference)
    assert TextureEnhancer((8, 16), feature_dim=0)(image, reference).shape == (2, 3, 30, 34)


def test_a_few_steps_lower_l2_on_a_fixed_pair():
    torch.manual_seed(0)
    g = TextureEnhancer((8, 16, 32), feature_dim=4)
    rendered = torch.rand(1, 3, 32, 32) * 0.5 + 0.25
    reference = torch.rand(1, 3, 32, 32)
    target = (rendered + 0.2 * (reference - 0.5)).clamp(0, 1)  # detail the render lacks, present in the reference
    feature = torch.rand(1, 4)
    optimizer = torch.optim.Adam(g.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = torch.mean((g(rendered, reference, feature) - target) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses  # 0.50 here


def test_the_audio_feature_changes_the_output():
    torch.manual_seed(0)
    g = TextureEnhancer((8, 16), feature_dim=3)
    torch.nn.init.normal_(g.to_rgb.weight, std=0.1)  # trained-like: a non-zero output layer
    image, reference = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    a, b = g(image, reference, torch.zeros(1, 3)), g(image, reference, torch.ones(1, 3))
    assert float((a - b).abs().mean()) > 1e-4
    # The reference's features kept from an earlier frame (render time) give the same result.
    kept = g.textures(reference)
    torch.testing.assert_close(g.residual(image, feature=torch.ones(1, 3), textures=kept), b - image)


# ---------------------------------------------------------------------------------------------- reference and crops
def test_reference_frame_is_neutral_with_open_eyes():
    train = torch.arange(6)
    blink = torch.tensor([0.0, 0.9, 0.0, 0.0, 0.0, 0.0])
    expression = torch.tensor([[3.0, 0.0], [0.0, 0.0], [0.1, 0.0], [-2.0, 1.0], [0.0, 2.0], [0.5, -0.5]])
    # Frame 1 sits at the mean but blinks; frame 2 is the nearest with open eyes.
    expression = expression - expression.mean(0) + torch.tensor([0.0, 0.0])
    frame = choose_reference_frame(train, blink, expression)
    distances = ((expression - expression.mean(0)) / expression.std(0)).pow(2).sum(-1)
    open_eyes = [i for i in range(6) if blink[i] < 0.1]
    assert frame == min(open_eyes, key=lambda i: float(distances[i]))
    assert choose_reference_frame(torch.tensor([4, 5]), blink, torch.zeros(6, 0)) == 4  # no expressions: first


def _stage_with_image(tmp_path: Path, image: np.ndarray) -> TextureStage:
    from data_processing import dataset_layout
    from data_processing.io_utils import write_image

    path = dataset_layout.image_path(tmp_path, 0)
    path.parent.mkdir(parents=True)
    write_image(path.with_suffix(".png"), image)
    path.with_suffix(".png").rename(path)  # lossless pixels under the dataset's .jpg name (read by content)
    stage = TextureStage(0, tmp_path, (4, 8), feature_dim=0)
    stage.size.copy_(torch.tensor(image.shape[:2]))
    stage.trained_steps += 1
    return stage


def test_patches_are_enhanced_against_the_reference_at_their_place(tmp_path: Path):
    height, width, p = 12, 16, 4
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    stage = _stage_with_image(tmp_path, image)
    stage.enhancer.forward = lambda rendered, reference, feature=None: reference  # G that returns its reference crop
    corners = [(0, 0), (5, 9), (8, 12)]
    indices = torch.cat([
        torch.stack(torch.meshgrid(torch.arange(y, y + p), torch.arange(x, x + p), indexing="ij"), -1).reshape(-1, 2)
        for y, x in corners
    ])  # fmt: skip
    indices = torch.cat([torch.zeros(len(indices), 1, dtype=torch.long), indices], dim=1)
    out = stage.enhance_patches(torch.zeros(len(indices), 3), indices, p, None).reshape(len(corners), p, p, 3)
    for k, (y, x) in enumerate(corners):
        expected = torch.from_numpy(image[y : y + p, x : x + p]).float() / 255
        torch.testing.assert_close(out[k], expected)


def test_whole_frames_are_enhanced_at_the_training_resolution(tmp_path: Path):
    stage = _stage_with_image(tmp_path, np.full((16, 16, 3), 128, np.uint8))
    seen = []

    def residual(image, reference=None, feature=None, textures=None):
        seen.append((tuple(image.shape), tuple(textures[0].shape[-2:])))  # the reference's features, at G's size
        return torch.full_like(image, 0.25)

    stage.enhancer.residual = residual
    out = stage.enhance_frame(torch.zeros(48, 64, 3), None)
    assert seen == [((1, 3, 16, 16), (16, 16))]  # G at 16 px, the frame at 64x48
    assert out.shape == (48, 64, 3)
    torch.testing.assert_close(out, torch.full((48, 64, 3), 0.25))


# ---------------------------------------------------------------------------------------------- the stage in a model
def _train(config):
    from test_sahs_training import _train as train  # noqa: PLC0415  (tests/methods/sahs is on sys.path)

    return train(config)[0]


def _quiet(config, iterations):
    config.steps_per_eval_image = config.steps_per_eval_batch = 10**6
    config.max_num_iterations = config.steps_per_save = iterations
    return config


def test_texture_stage_trains_g_with_the_nerf_frozen(tiny_dtnerf_dataset: Path, tiny_sahs_config, tmp_path: Path):
    config = _quiet(tiny_sahs_config(tiny_dtnerf_dataset, tmp_path / "outputs", 10), 10)
    assert config.pipeline.datamanager.fine_stage_fraction == 0.9  # the preset's texture stage
    trainer = _train(config)
    model, datamanager = trainer.pipeline.model, trainer.pipeline.datamanager
    assert datamanager.fine_stage_start == 9 and int(model.texture.trained_steps) == 1
    assert model.texture.size.tolist() == [64, 64] and "texture" in model.get_param_groups()

    # One texture-stage step by hand: only G receives gradients, and the loss is G's L2.
    model.train()
    model._in_texture_stage = True
    ray_bundle, batch = datamanager.next_train(9)
    assert batch["patch_size"] == 64
    outputs = model(ray_bundle)
    metrics = model.get_metrics_dict(outputs, batch)
    losses = model.get_loss_dict(outputs, batch, metrics)
    assert set(losses) == {"texture_loss"} and {"psnr", "psnr_raw"} <= set(metrics)
    model.zero_grad(set_to_none=True)
    losses["texture_loss"].backward()
    texture = {id(p) for p in model.texture.parameters()}
    others = [name for name, p in model.named_parameters() if id(p) not in texture and p.grad is not None]
    assert others == [], f"the frozen NeRF got gradients: {others[:5]}"
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.texture.parameters())

    # The final frame is the enhanced one, the render is kept as rgb_raw.
    model.eval()
    outputs = model.get_outputs_for_camera(datamanager.eval_dataset.cameras[0:1])
    assert outputs["rgb"].shape == outputs["rgb_raw"].shape == (64, 64, 3)
    assert float((outputs["rgb"] - outputs["rgb_raw"]).abs().mean()) > 1e-5


def test_stage_switch(tiny_dtnerf_dataset: Path, tiny_sahs_config, tmp_path: Path, capsys):
    config = _quiet(tiny_sahs_config(tiny_dtnerf_dataset, tmp_path / "off", 4), 4)
    config.pipeline.model.use_texture_enhancement = False
    trainer = _train(config)
    model = trainer.pipeline.model
    assert model.texture is None and trainer.pipeline.datamanager.fine_stage_start is None  # every step trains the NeRF
    assert "texture" not in model.get_param_groups()
    model.eval()
    outputs = model.get_outputs_for_camera(trainer.pipeline.datamanager.eval_dataset.cameras[0:1])
    assert "rgb_raw" not in outputs  # no post-process: frames as rendered

    config = _quiet(tiny_sahs_config(tiny_dtnerf_dataset, tmp_path / "no_stage", 4), 4)
    config.pipeline.datamanager.fine_stage_fraction = None
    with pytest.raises(SystemExit) as exit_info:
        _train(config)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "texture enhancement is trained in the datamanager's patch stage" in err and "fine-stage-fraction" in err


def test_post_process_applied_once_by_every_consumer(tiny_sahs_trained_config: Path, tmp_path: Path, monkeypatch):
    """The viewer and ns-render (get_outputs_for_camera), dtnerf-eval and dtnerf-render each enhance every frame once
    (counted in this process; ns-render, a subprocess, by its rgb and rgb_raw outputs)."""
    from PIL import Image

    from dtnerf_ns.methods.sahs.sahs_model import SAHSModel
    from dtnerf_ns.scripts.evaluate import EvaluateDTNeRF
    from dtnerf_ns.scripts.render_talking_video import RenderTalkingVideo
    from dtnerf_ns.scripts.trained_model import load_trained_model

    calls = []
    enhance = SAHSModel.post_process

    def counting(self, rgb, frame):
        out = enhance(self, rgb, frame)
        assert out is not rgb, "G is trained: the post-process must enhance"
        calls.append(frame)
        return out

    monkeypatch.setattr(SAHSModel, "post_process", counting)
    trained = load_trained_model(tiny_sahs_trained_config)
    model, cameras = trained.model, trained.pipeline.datamanager.eval_dataset.cameras
    outputs = model.get_outputs_for_camera(cameras[0:1])
    assert len(calls) == 1 and "rgb_raw" in outputs

    calls.clear()
    EvaluateDTNeRF(load_config=tiny_sahs_trained_config, output=tmp_path / "eval").main()
    assert sorted(calls) == sorted(set(calls)) and len(calls) == len(cameras)  # each test frame once

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from test_ns_render import ns_render  # noqa: PLC0415
    from test_render_talking_video import probe, write_audio  # noqa: PLC0415

    # ns-render (a subprocess: counted by its output) writes the final frames and, on request, those before G.
    renders = tmp_path / "renders"
    ns_render("dataset", "--load-config", str(tiny_sahs_trained_config), "--split", "test", "--output-path",
              str(renders), "--rendered-output-names", "rgb", "rgb_raw")  # fmt: skip
    final, raw = sorted((renders / "test" / "rgb").glob("*")), sorted((renders / "test" / "rgb_raw").glob("*"))
    assert len(final) == len(raw) == len(cameras)
    read = [np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) for path in (final[0], raw[0])]
    assert np.abs(read[0] - read[1]).mean() > 0.01

    calls.clear()
    out = tmp_path / "talk.mp4"
    RenderTalkingVideo(load_config=tiny_sahs_trained_config, audio=write_audio(tmp_path / "a.wav", 0.4), output=out).main()
    assert probe(out)["frames"] == 10 and calls == list(range(10))
