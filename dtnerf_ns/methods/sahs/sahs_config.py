"""``sahs-nerf`` (the paper's hyper-parameters, GPU, 512x512) and ``sahs-nerf-small`` (CPU preset) configurations.

Registered through ``[project.entry-points."nerfstudio.method_configs"]``; imports configuration classes only.
Ablations of the paper's Tables 3-4 are switches of the model: ``--pipeline.model.use-dynamic-sampling False`` (w/o
DWS), ``... --pipeline.model.use-ambient False`` (w/o DWS+LDF), ``... --pipeline.model.use-deformation False``
(w/o DWS+HDM), each with ``--pipeline.model.use-texture-enhancement False`` (w/o TE) for the paper's rows.
``--pipeline.model.driver expression`` drives it by the dataset's expression coefficients.

Texture enhancement (TE) is the datamanager's patch stage: from ``fine_stage_fraction`` of the steps on, G trains on
square patches with the NeRF frozen (paper: 500k NeRF iterations, then 150k for G).
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from dtnerf_ns.core.data.talking_head_datamanager import TalkingHeadDataManagerConfig
from dtnerf_ns.core.data.talking_head_dataparser import TalkingHeadDataParserConfig
from dtnerf_ns.core.presets import machine, optimizer_group
from dtnerf_ns.core.talking_head_pipeline import TalkingHeadPipelineConfig
from dtnerf_ns.methods.sahs.sahs_model_config import SAHSModelConfig

# Head and torso in one field: the box reaches down past the shoulders (world units: face width 1, head at the origin).
TORSO_AABB = ((-2.0, -3.2, -1.5), (2.0, 1.6, 1.5))
# Semantic maps for the loss and the sampler, the background behind every ray, the mouth mask for the mouth PSNR.
PIXEL_MAPS = ("background", "semantics", "mouth")


def _optimizers(max_steps: int, texture_rate: float) -> dict:
    # The paper's Adam at 5e-4 for its MLPs (deformation, the paper's template, audio network); hash grids and proposal
    # networks at nerfacto's 1e-2. Only the groups a model has are used (the template's group name says which).
    rates = {"deformation": 5e-4, "template_mlp": 5e-4, "template_hash": 1e-2, "proposal_networks": 1e-2, "audio": 5e-4}
    groups = {group: optimizer_group(rate, max_steps) for group, rate in rates.items()}
    # G: constant rate (it trains only in the last stage; a schedule over the whole run would have decayed by then).
    groups["texture"] = {"optimizer": AdamOptimizerConfig(lr=texture_rate, eps=1e-8), "scheduler": None}
    return groups


def _datamanager(downscale: float, rays: int, texture_start: float, patch: int) -> TalkingHeadDataManagerConfig:
    return TalkingHeadDataManagerConfig(
        dataparser=TalkingHeadDataParserConfig(downscale_factor=downscale, aabb=TORSO_AABB),
        pixel_maps=PIXEL_MAPS,
        mouth_ray_fraction=0.0,  # the model's class probabilities steer the rays (uniform without DWS)
        train_num_rays_per_batch=rays,
        eval_num_rays_per_batch=rays,
        fine_stage_fraction=texture_start,  # the texture stage from this fraction of the steps on
        fine_patch_size=patch,  # G's patches: large against its receptive field (~40 px)
        mouth_patch_fraction=0.5,  # half the patches on the mouth, where the paper's TE matters most (teeth)
    )


# ---------------------------------------------------------------- GPU, the paper's hyper-parameters
_NERF_STEPS, _TEXTURE_STEPS = 500_000, 150_000  # section 3.2: 500k iterations of 2048 rays, then 150k for G
_STEPS = _NERF_STEPS + _TEXTURE_STEPS
sahs_config = TrainerConfig(
    method_name="sahs-nerf",
    steps_per_eval_batch=500,
    steps_per_eval_image=2000,
    steps_per_save=5000,
    max_num_iterations=_STEPS,
    mixed_precision=True,
    machine=machine(),
    pipeline=TalkingHeadPipelineConfig(
        datamanager=_datamanager(1.0, 2048, _NERF_STEPS / _STEPS, 128),
        model=SAHSModelConfig(audio_dim=29, eval_num_rays_per_chunk=1 << 14),  # section 3.2: dim = 29 for audio
    ),
    optimizers=_optimizers(_STEPS, 1e-4),  # the authors' rate for G
    viewer=ViewerConfig(num_rays_per_chunk=1 << 14),
    vis="viewer",
)

# ---------------------------------------------------------------- CPU preset
_SMALL_STEPS = 3000
sahs_small_config = TrainerConfig(
    method_name="sahs-nerf-small",
    steps_per_eval_batch=250,
    steps_per_eval_image=500,
    steps_per_eval_all_images=1_000_000,
    steps_per_save=500,
    max_num_iterations=_SMALL_STEPS,
    mixed_precision=False,
    machine=machine(),
    pipeline=TalkingHeadPipelineConfig(
        # 512 -> 128 px. The last 300 steps train G: on a CPU a texture step costs ~4.5 NeRF steps (it renders a 64-px
        # patch through the frozen NeRF), and 300 already give G's gain here (benchmarks/sahs_ablation.py).
        datamanager=_datamanager(4.0, 512, 0.9, 64),
        model=SAHSModelConfig(
            implementation="torch",
            eval_num_rays_per_chunk=4096,
            audio_dim=29,
            position_frequencies=6,
            deform_layers=4,
            deform_width=64,
            ambient_layers=3,
            ambient_width=32,
            mlp_layers=2,
            mlp_width=32,
            branch_layers=2,
            branch_width=32,
            hash_levels=8,
            hash_log2_size=14,
            hash_max_res=256,
            feature_grid_resolution=16,
            feature_grid_channels=8,
            num_proposal_samples_per_ray=(48,),
            proposal_net_args_list=[
                {"hidden_dim": 16, "log2_hashmap_size": 14, "num_levels": 4, "max_res": 64, "use_linear": False}
            ],
            num_nerf_samples_per_ray=24,
            proposal_warmup=500,
            num_coarse_samples=32,
            num_fine_samples=32,
            texture_channels=(16, 32, 64),
        ),
    ),
    optimizers=_optimizers(_SMALL_STEPS, 1e-3),  # a few hundred steps for G
    viewer=ViewerConfig(num_rays_per_chunk=4096),
    vis="viewer",
)

sahs_method = MethodSpecification(
    config=sahs_config,
    description="SAHS-NeRF: semantic-aware hyper-space deformable NeRF, head and torso, audio or expression driven (GPU, 512 px).",
)
sahs_small_method = MethodSpecification(
    config=sahs_small_config,
    description="SAHS-NeRF CPU preset: 128 px, small networks, 512 rays (trains in minutes).",
)
