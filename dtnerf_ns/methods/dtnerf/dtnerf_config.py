"""``dtnerf`` (paper-like GPU defaults, 512x512) and ``dtnerf-small`` (CPU preset) method configurations.

Registered through ``[project.entry-points."nerfstudio.method_configs"]``. Nerfstudio imports every entry point for
every ns-* command, so this module only imports configuration classes (no tcnn, no LPIPS, no data).
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from dtnerf_ns.core.data.talking_head_datamanager import TalkingHeadDataManagerConfig
from dtnerf_ns.core.data.talking_head_dataparser import TalkingHeadDataParserConfig
from dtnerf_ns.core.presets import machine, optimizer_group
from dtnerf_ns.core.talking_head_pipeline import TalkingHeadPipelineConfig
from dtnerf_ns.methods.dtnerf.dtnerf_model_config import DTNeRFModelConfig

# The paper's second stage: the last sixth of training fine-tunes on patches with LPIPS (ER-NeRF's lip fine-tuning
# phase); a fraction, so --max-num-iterations cannot skip it.
FINE_STAGE_FRACTION = 0.8333


def _optimizers(lr: float, max_steps: int) -> dict:
    # Hash grids + MLPs at nerfacto's 1e-2; the audio network at ER-NeRF's lower network rate (5e-4).
    # (A model with the occupancy sampler has no proposal_networks group; nerfstudio skips the unused entry.)
    return {
        "proposal_networks": optimizer_group(lr, max_steps),
        "fields": optimizer_group(lr, max_steps),
        "audio": optimizer_group(5e-4, max_steps),
    }


PIXEL_MAPS = ("headless", "face", "mouth", "eyes")
"""The head-less backdrop, the face and mouth masks of the coarse loss, and the eyes mask of the eye-gate loss."""


# ---------------------------------------------------------------- GPU, paper-like
_STEPS = 60_000  # ER-NeRF: ~100k rays-iterations for the head; the paper reports 2.5 h
dtnerf_config = TrainerConfig(
    method_name="dtnerf",
    steps_per_eval_batch=500,
    steps_per_eval_image=2000,
    steps_per_save=5000,
    max_num_iterations=_STEPS,
    mixed_precision=True,
    machine=machine(),
    pipeline=TalkingHeadPipelineConfig(
        datamanager=TalkingHeadDataManagerConfig(
            dataparser=TalkingHeadDataParserConfig(),
            pixel_maps=PIXEL_MAPS,
            train_num_rays_per_batch=4096,
            eval_num_rays_per_batch=4096,
            fine_stage_fraction=FINE_STAGE_FRACTION,
            fine_patch_size=32,
        ),
        model=DTNeRFModelConfig(
            implementation="tcnn",
            sampler="auto",  # nerfacc occupancy grid where CUDA and its kernels load, else the proposal sampler
            eval_num_rays_per_chunk=1 << 15,
        ),
    ),
    optimizers=_optimizers(1e-2, _STEPS),
    viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
    vis="viewer",
)

# ---------------------------------------------------------------- CPU preset
_SMALL_STEPS = 3000
dtnerf_small_config = TrainerConfig(
    method_name="dtnerf-small",
    steps_per_eval_batch=250,
    steps_per_eval_image=500,
    steps_per_eval_all_images=1_000_000,
    steps_per_save=500,
    max_num_iterations=_SMALL_STEPS,
    mixed_precision=False,
    machine=machine(),
    pipeline=TalkingHeadPipelineConfig(
        datamanager=TalkingHeadDataManagerConfig(
            dataparser=TalkingHeadDataParserConfig(downscale_factor=4.0),  # 512 -> 128 px
            pixel_maps=PIXEL_MAPS,
            train_num_rays_per_batch=512,
            eval_num_rays_per_batch=512,
            fine_stage_fraction=FINE_STAGE_FRACTION,
            fine_patch_size=32,
        ),
        model=DTNeRFModelConfig(
            implementation="torch",
            eval_num_rays_per_chunk=4096,
            audio_dim=32,
            num_levels=8,
            face_log2_hashmap_size=14,
            mouth_log2_hashmap_size=12,
            face_max_res=256,
            mouth_max_res=128,
            hidden_dim=32,
            num_layers=2,
            geo_feat_dim=15,
            hidden_dim_color=32,
            num_layers_color=2,
            transformer_out_dim=16,
            transformer_dim=32,
            num_heads=2,
            transformer_pe_frequencies=2,
            sampler="proposal",  # CPU preset: nerfacc's occupancy-grid marching is CUDA-only
            num_proposal_samples_per_ray=(48,),
            num_proposal_iterations=1,
            proposal_net_args_list=[
                {"hidden_dim": 16, "log2_hashmap_size": 14, "num_levels": 4, "max_res": 64, "use_linear": False}
            ],
            num_nerf_samples_per_ray=24,
            proposal_warmup=500,
            proposal_weights_anneal_max_num_iters=300,
            transformer_recompute="never",  # 512-ray steps hold little: keep the speed
        ),
    ),
    optimizers=_optimizers(1e-2, _SMALL_STEPS),
    viewer=ViewerConfig(num_rays_per_chunk=4096),
    vis="viewer",
)

dtnerf_method = MethodSpecification(
    config=dtnerf_config,
    description="DT-NeRF: audio-driven talking portrait, decomposed face/mouth triplane hash fields (GPU, 512 px).",
)
dtnerf_small_method = MethodSpecification(
    config=dtnerf_small_config,
    description="DT-NeRF CPU preset: 128 px, tiny hash tables, 512 rays, few samples (trains in minutes).",
)
