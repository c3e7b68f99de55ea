"""DTNeRFModel forward / losses on tiny synthetic batches (no dataset needed)."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from nerfstudio.data.scene_box import SceneBox
from tiny_models import N_FRAMES, NO_AUDIO_AUGMENTATION, make_batch, make_model, make_rays, small_config  # same folder

from dtnerf_ns.core.compositing import composite

def test_frame_index_from_times():
    model = make_model()
    times = torch.tensor([0.0, 1.0 / 9, 0.5, 1.0, 1.2])
    assert model.conditioning.frames_of_times(times).tolist() == [0, 1, 4, 9, 9]


def test_forward_outputs_and_coarse_losses():
    model = make_model()
    model.train()
    rays, batch = make_rays(), make_batch()
    outputs = model(rays)
    for key in ("rgb", "rgb_head", "rgb_face", "rgb_mouth"):
        assert outputs[key].shape == (64, 3)
    assert outputs["accumulation"].shape == (64, 1) and outputs["depth"].shape == (64, 1)
    metrics = model.get_metrics_dict(outputs, batch)
    losses = model.get_loss_dict(outputs, batch, metrics)
    assert {"face_loss", "mouth_loss", "image_loss", "interlevel_loss", "distortion_loss"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.conditioning.audio_encoder.audio_net.encoder_fc[0].weight.grad is not None  # audio conditions the image
    groups = model.get_param_groups()
    assert set(groups) == {"proposal_networks", "fields", "audio"}


def test_composite_uses_headless_background():
    model = make_model()
    model.eval()
    outputs = model(make_rays())
    bg = torch.rand(64, 3)
    expected = outputs["rgb_head"] + (1 - outputs["accumulation"]) * bg
    assert torch.allclose(composite(outputs["rgb_head"], outputs["accumulation"], bg), expected)
    gt, pred = model.composite_batch(outputs, {"image": torch.rand(64, 3), "headless": bg})
    assert torch.allclose(pred, expected)


def test_audio_changes_the_render():
    model = make_model()
    model.eval()
    with torch.no_grad():
        a = model(make_rays(frame=0))["rgb_head"]
        b = model(make_rays(frame=9))["rgb_head"]
    assert not torch.allclose(a, b)


def test_audio_features_are_augmented_in_training_only():
    model = make_model()
    frames = torch.arange(N_FRAMES)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.conditioning.audio_codes(frames), model.conditioning.audio_codes(frames))
        model.train()
        first, second = model.conditioning.audio_codes(frames), model.conditioning.audio_codes(frames)
    assert not torch.allclose(first, second)  # a fresh random voice change per call
    off = make_model(**NO_AUDIO_AUGMENTATION)
    off.train()
    with torch.no_grad():
        torch.testing.assert_close(off.conditioning.audio_codes(frames), off.conditioning.audio_codes(frames))


def test_fine_stage_without_lpips_warns_once_and_uses_mse(monkeypatch, capsys):
    broken = types.ModuleType("lpips")

    def refuse(*args, **kwargs):
        raise RuntimeError("no pretrained weights offline")

    broken.LPIPS = refuse  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lpips", broken)
    model = make_model()
    model.train()
    batch = make_batch(2 * 4 * 4)
    batch["patch_size"] = 4
    for _ in range(2):
        outputs = model(make_rays(2 * 4 * 4))
        losses = model.get_loss_dict(outputs, batch, model.get_metrics_dict(outputs, batch))
        assert "rgb_loss" in losses and "lpips_loss" not in losses and "face_loss" not in losses
    assert capsys.readouterr().out.count("LPIPS unavailable") == 1


def test_fine_stage_with_lpips(monkeypatch):
    calls = []

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, **kwargs):
            super().__init__()
            assert kwargs.get("pretrained", True) and not kwargs.get("pnet_rand", False)

        def forward(self, a, b, normalize=False):
            calls.append(a.shape)
            return ((a - b) ** 2).mean(dim=(1, 2, 3), keepdim=True)

    fake = types.ModuleType("lpips")
    fake.LPIPS = FakeLPIPS  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lpips", fake)
    model = make_model()
    model.train()
    batch = make_batch(2 * 4 * 4)
    batch["patch_size"] = 4
    outputs = model(make_rays(2 * 4 * 4))
    losses = model.get_loss_dict(outputs, batch, model.get_metrics_dict(outputs, batch))
    assert "lpips_loss" in losses and calls[0] == (2, 3, 4, 4)


def test_image_metrics_psnr_ssim_mouth():
    model = make_model(eval_num_rays_per_chunk=64)
    model.eval()
    with torch.no_grad():
        outputs = model(make_rays(64))
    outputs = {k: v.reshape(8, 8, -1) for k, v in outputs.items() if isinstance(v, torch.Tensor)}
    batch = {k: v.reshape(8, 8, -1) for k, v in make_batch(64).items()}
    metrics, images = model.get_image_metrics_and_images(outputs, batch)
    assert {"psnr", "ssim", "mouth_psnr"} <= set(metrics) and "lpips" not in metrics
    assert images["img"].shape == (8, 16, 3)


@pytest.mark.parametrize("missing", ["audio_features", "mouth_aabb"])
def test_needs_dataparser_metadata(missing):
    metadata = {"audio_features": torch.zeros(2, 16, 29), "blink": torch.zeros(2), "num_frames": 2,
                "mouth_aabb": torch.tensor([[0.0, 0, 0], [1, 1, 1]])}
    del metadata[missing]
    scene_box = SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]]))
    with pytest.raises(ValueError, match=missing):
        small_config().setup(scene_box=scene_box, num_train_data=2, metadata=metadata)


def test_driven_by_new_audio_then_restores():
    model = make_model(eval_num_rays_per_chunk=64)
    model.eval()
    rays = make_rays(32, frame=0)
    with torch.no_grad():
        before = model(rays)["rgb_head"]
        new_audio = torch.randn(3, 16, 29) * 3
        with model.driven_by(audio_features=new_audio, blink=torch.zeros(3)):
            assert model.num_frames == 3
            driven = model(make_rays(32, frame=0))["rgb_head"]
        after = model(make_rays(32, frame=0))["rgb_head"]
    assert model.num_frames == N_FRAMES and model.conditioning.audio_features.shape == (N_FRAMES, 16, 29)
    assert torch.allclose(before, after)
    assert not torch.allclose(before, driven)
    with pytest.raises(ValueError, match="do not match"):
        with model.driven_by(audio_features=torch.zeros(3, 8, 29), blink=torch.zeros(3)):
            pass
    with pytest.raises(ValueError, match="different lengths"):
        with model.driven_by(audio_features=torch.zeros(3, 16, 29), blink=torch.zeros(4)):
            pass


def test_driven_by_takes_missing_signals_from_source_frames():
    model = make_model()
    blink = model.conditioning.blink.clone()
    source = torch.tensor([3, 3, 7])
    with model.driven_by(audio_features=torch.zeros(3, 16, 29), source_frames=source):
        torch.testing.assert_close(model.conditioning.blink, blink[source])
        assert model.conditioning.head_pose.shape == (3, 6)
    torch.testing.assert_close(model.conditioning.blink, blink)


def test_sync_free_audio_codes_equal_the_unique_path():
    """The GPU path (AudioNet on every frame, no torch.unique) gives the CPU path's codes."""
    model = make_model()
    model.eval()
    frames = torch.tensor([0, 3, 3, 9, 1, 0, 5])
    with torch.no_grad():
        model.conditioning.sync_free = False
        by_unique = model.conditioning.audio_codes(frames)
        model.conditioning.sync_free = True
        all_frames = model.conditioning.audio_codes(frames)
    torch.testing.assert_close(all_frames, by_unique)


def test_render_skips_empty_rays_at_render_time_only():
    """Rays the proposal network finds empty skip the field at render time: same image, fewer field samples."""
    model = make_model(render_skip_threshold=0.0)
    model.eval()
    rays = make_rays(64)
    with torch.no_grad():
        full = model(rays)
        counted = []
        forward = model.field.forward
        model.field.forward = lambda samples, **kw: counted.append(samples.shape[0]) or forward(samples, **kw)
        model.config.render_skip_threshold = 1e9  # every ray "empty": none reaches the field
        skipped = model(rays)
    assert counted == [1]  # (the field takes no empty batch: one ray is rendered)
    torch.testing.assert_close(skipped["rgb_head"][0], full["rgb_head"][0])
    torch.testing.assert_close(skipped["rgb_head"][1:], torch.zeros_like(full["rgb_head"][1:]))
    model.config.render_skip_threshold = 1e-3  # the default: rays the proposal network finds empty are ~transparent
    with torch.no_grad():
        default = model(rays)
    torch.testing.assert_close(default["rgb_head"], full["rgb_head"], atol=2e-3, rtol=0)
    model.train()
    counted.clear()
    model(rays)
    assert counted == [64]  # never while training


def test_a_run_saved_before_the_gates_existed_loads_without_them():
    import yaml

    from dtnerf_ns.methods.dtnerf.dtnerf_model_config import DTNeRFModelConfig

    text = yaml.dump(DTNeRFModelConfig(use_audio_gate=True))
    old = "\n".join(line for line in text.splitlines() if "_gate" not in line)  # as an older release saved it
    loaded = yaml.load(old, Loader=yaml.Loader)
    assert loaded.saved_setting("use_audio_gate", False) is False and loaded.saved_setting("use_eye_gate", False) is False
    assert yaml.load(text, Loader=yaml.Loader).saved_setting("use_audio_gate", False) is True
