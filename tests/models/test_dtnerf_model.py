"""DTNeRFModel forward / losses on tiny synthetic batches (no dataset needed)."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from dtnerf_ns.models.dtnerf_model import DTNeRFModel, DTNeRFModelConfig

N_FRAMES = 10


def small_config(**kwargs) -> DTNeRFModelConfig:
    base = dict(
        implementation="torch",
        num_levels=4,
        face_log2_hashmap_size=10,
        mouth_log2_hashmap_size=8,
        face_max_res=64,
        mouth_max_res=32,
        hidden_dim=16,
        num_layers=2,
        geo_feat_dim=7,
        hidden_dim_color=16,
        transformer_out_dim=8,
        transformer_dim=16,
        num_heads=2,
        transformer_pe_frequencies=2,
        num_proposal_samples_per_ray=(16,),
        num_proposal_iterations=1,
        proposal_net_args_list=[{"hidden_dim": 8, "log2_hashmap_size": 10, "num_levels": 3, "max_res": 32}],
        num_nerf_samples_per_ray=8,
    )
    base.update(kwargs)
    return DTNeRFModelConfig(**base)


def make_model(**kwargs) -> DTNeRFModel:
    torch.manual_seed(0)
    metadata = {
        "audio_features": torch.randn(N_FRAMES, 16, 29),
        "blink": torch.rand(N_FRAMES),
        "mouth_aabb": torch.tensor([[-0.3, -0.8, -0.1], [0.3, -0.4, 0.3]]),
        "num_frames": N_FRAMES,
        "frame_indices": torch.arange(N_FRAMES),
    }
    scene_box = SceneBox(aabb=torch.tensor([[-1.5, -1.9, -1.5], [1.5, 1.5, 1.5]]))
    return small_config(**kwargs).setup(scene_box=scene_box, num_train_data=N_FRAMES, metadata=metadata)


def make_rays(num_rays: int = 64, frame: int | None = None) -> RayBundle:
    g = torch.Generator().manual_seed(1)
    target = torch.cat([torch.rand(num_rays, 2, generator=g) - 0.5, torch.zeros(num_rays, 1)], dim=-1)
    target[:, 1] -= 0.5  # towards the mouth box
    origins = torch.tensor([0.0, 0.0, 4.5]).expand(num_rays, 3)
    directions = torch.nn.functional.normalize(target - origins, dim=-1)
    frames = torch.randint(0, N_FRAMES, (num_rays,), generator=g) if frame is None else torch.full((num_rays,), frame)
    return RayBundle(
        origins=origins.clone(),
        directions=directions,
        pixel_area=torch.full((num_rays, 1), 1e-6),
        camera_indices=torch.zeros(num_rays, 1, dtype=torch.long),
        times=(frames.float() / (N_FRAMES - 1))[:, None],
    )


def make_batch(num_rays: int = 64) -> dict:
    g = torch.Generator().manual_seed(2)
    return {
        "image": torch.rand(num_rays, 3, generator=g),
        "headless": torch.rand(num_rays, 3, generator=g),
        "face_mask": (torch.rand(num_rays, 1, generator=g) > 0.5).float(),
        "mouth_mask": (torch.rand(num_rays, 1, generator=g) > 0.8).float(),
    }


def test_frame_index_from_times():
    model = make_model()
    times = torch.tensor([0.0, 1.0 / 9, 0.5, 1.0, 1.2])
    assert model.frame_indices_from_times(times).tolist() == [0, 1, 4, 9, 9]


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
    assert model.audio_encoder.audio_net.encoder_fc[0].weight.grad is not None  # audio conditions the image
    groups = model.get_param_groups()
    assert set(groups) == {"proposal_networks", "fields", "audio"}


def test_composite_uses_headless_background():
    model = make_model()
    model.eval()
    outputs = model(make_rays())
    bg = torch.rand(64, 3)
    expected = outputs["rgb_head"] + (1 - outputs["accumulation"]) * bg
    assert torch.allclose(model.composite(outputs, bg), expected)


def test_audio_changes_the_render():
    model = make_model()
    model.eval()
    with torch.no_grad():
        a = model(make_rays(frame=0))["rgb_head"]
        b = model(make_rays(frame=9))["rgb_head"]
    assert not torch.allclose(a, b)


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
        with model.driven_by(new_audio, torch.zeros(3)):
            assert model.num_frames == 3 and model.data_dir is None
            driven = model(make_rays(32, frame=0))["rgb_head"]
        after = model(make_rays(32, frame=0))["rgb_head"]
    assert model.num_frames == N_FRAMES and model.audio_features.shape == (N_FRAMES, 16, 29)
    assert torch.allclose(before, after)
    assert not torch.allclose(before, driven)
    with pytest.raises(ValueError, match="do not match"):
        with model.driven_by(torch.zeros(3, 8, 29), torch.zeros(3)):
            pass
