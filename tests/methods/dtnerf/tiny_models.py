"""Tiny DT-NeRF models, rays and batches for the model tests (no dataset; CPU, milliseconds per forward)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from dtnerf_ns.methods.dtnerf.dtnerf_model import DTNeRFModel, DTNeRFModelConfig

N_FRAMES = 10
AABB = torch.tensor([[-1.5, -1.9, -1.5], [1.5, 1.5, 1.5]])
MOUTH_AABB = torch.tensor([[-0.3, -0.8, -0.1], [0.3, -0.4, 0.3]])


NO_AUDIO_AUGMENTATION = dict(
    audio_augment_formant_shift=0.0, audio_augment_tilt=0.0, audio_augment_gain=0.0, audio_augment_noise=0.0
)
"""Config overrides that make training-mode audio codes deterministic (for tests that recompute them)."""


def small_config(**kwargs) -> DTNeRFModelConfig:
    """The model config at toy sizes (torch implementation, few levels, small tables, few samples)."""
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
        compile="off",  # the compiled path has its own tests (tests/core/test_compilation.py)
    )
    base.update(kwargs)
    return DTNeRFModelConfig(**base)


def make_model(train_frames: Optional[Sequence[int]] = None, **kwargs) -> DTNeRFModel:
    """A seeded tiny model over N_FRAMES frames of random audio and blink; ``train_frames`` default: all frames."""
    torch.manual_seed(0)
    frames = list(range(N_FRAMES)) if train_frames is None else list(train_frames)
    metadata = {
        "audio_features": torch.randn(N_FRAMES, 16, 29),
        "blink": torch.rand(N_FRAMES),
        "mouth_aabb": MOUTH_AABB,
        "num_frames": N_FRAMES,
        "frame_indices": torch.tensor(frames),
    }
    return small_config(**kwargs).setup(scene_box=SceneBox(aabb=AABB), num_train_data=len(frames), metadata=metadata)


def make_rays(num_rays: int = 64, frame: Optional[int] = None) -> RayBundle:
    """Rays from a camera 4.5 in front of the head towards the mouth region, each from a random frame (or ``frame``)."""
    g = torch.Generator().manual_seed(1)
    target = torch.cat([torch.rand(num_rays, 2, generator=g) - 0.5, torch.zeros(num_rays, 1)], dim=-1)
    target[:, 1] -= 0.5  # towards the mouth box
    origins = torch.tensor([0.0, 0.0, 4.5]).expand(num_rays, 3).clone()
    frames = torch.randint(0, N_FRAMES, (num_rays,), generator=g) if frame is None else torch.full((num_rays,), frame)
    return RayBundle(
        origins=origins,
        directions=torch.nn.functional.normalize(target - origins, dim=-1),
        pixel_area=torch.full((num_rays, 1), 1e-6),
        camera_indices=torch.zeros(num_rays, 1, dtype=torch.long),
        times=(frames.float() / (N_FRAMES - 1))[:, None],
    )


def make_batch(num_rays: int = 64) -> dict:
    """A random training batch: image, head-less backdrop and face/mouth masks per ray."""
    g = torch.Generator().manual_seed(2)
    return {
        "image": torch.rand(num_rays, 3, generator=g),
        "headless": torch.rand(num_rays, 3, generator=g),
        "face_mask": (torch.rand(num_rays, 1, generator=g) > 0.5).float(),
        "mouth_mask": (torch.rand(num_rays, 1, generator=g) > 0.8).float(),
    }
