"""DT-NeRF model configuration (defaults: paper-like GPU settings at 512x512; ``dtnerf-small`` overrides them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type

from dtnerf_ns.core.talking_head_model import TalkingHeadModelConfig


def _model_class() -> Type:
    from dtnerf_ns.methods.dtnerf.dtnerf_model import DTNeRFModel  # noqa: PLC0415 - the model imports this module

    return DTNeRFModel


@dataclass
class DTNeRFModelConfig(TalkingHeadModelConfig):
    """DT-NeRF model configuration. The coarse -> fine switch is the datamanager's ``fine_stage_fraction``."""

    _target: Type = field(default_factory=_model_class)
    """Target class to instantiate."""
    enable_collider: bool = True
    """Clip rays to the scene box (an AABB collider replaces nerfstudio's near/far collider)."""
    near_plane: float = 0.05
    """Closest sample distance from the camera during training."""
    implementation: Literal["tcnn", "torch"] = "tcnn"
    """Hash grids / MLPs: tcnn when importable (falls back to torch with a warning), or torch."""

    # ---- conditioning (audio settings: TalkingHeadModelConfig)
    use_blink: bool = True
    """Condition the face colour on the frame's eye blink."""
    use_audio_gate: bool = True
    """Gate the face field's audio conditioning per position, so that what does not speak (hair, head outline) can
    ignore the audio (ER-NeRF's audio channel attention; the paper is silent)."""
    use_eye_gate: bool = True
    """Feed the blink to the face field's density through a per-position eye gate, so that closed eyes change shape
    and show in renders (ER-NeRF); without it blink reaches the colour only."""

    # ---- field
    num_levels: int = 16
    """Hash-grid levels per triplane plane."""
    features_per_level: int = 2
    """Features per hash-grid level."""
    face_log2_hashmap_size: int = 19
    """log2 hash-table size of the face planes."""
    mouth_log2_hashmap_size: int = 17
    """log2 hash-table size of the mouth planes."""
    face_max_res: int = 1024
    """Finest face grid resolution (over the scene box)."""
    mouth_max_res: int = 512
    """Finest mouth grid resolution (over the mouth box)."""
    base_res: int = 16
    """Coarsest grid resolution (face and mouth)."""
    hidden_dim: int = 64
    """Density MLP width."""
    num_layers: int = 3
    """Density MLP linear layers (ER-NeRF: 3)."""
    geo_feat_dim: int = 64
    """Geometry feature passed from density to colour MLP (ER-NeRF: 64)."""
    hidden_dim_color: int = 64
    """Colour MLP width."""
    num_layers_color: int = 2
    """Colour MLP linear layers (ER-NeRF: 2)."""
    transformer_out_dim: int = 32
    """Audio-mouth-face align transformer output size."""
    transformer_dim: int = 64
    """Attention width."""
    num_heads: int = 4
    """Attention heads."""
    transformer_pe_frequencies: int = 4
    """Frequencies of the transformer's key positional encoding."""
    transformer_recompute: Literal["cpu", "always", "never"] = "cpu"
    """Recompute the transformer in backward rather than keep its activations (a third of a training step's memory,
    ~5% of its time): "cpu" when training on the CPU, where host memory is the limit; "always"; "never"."""

    # ---- sampling
    sampler: Literal["auto", "proposal", "occupancy"] = "proposal"
    """"proposal": nerfacto's proposal networks (runs anywhere); "occupancy": a nerfacc occupancy grid over the scene
    box, kept valid for any audio (needs CUDA and nerfacc's CUDA kernels); "auto": occupancy where those load (checked
    once, at model set-up), else proposal. A checkpoint always renders with the sampler it was trained with."""

    # ---- proposal sampler (nerfacto's; CPU friendly)
    num_proposal_samples_per_ray: Tuple[int, ...] = (128, 64)
    """Samples per ray for each proposal network."""
    num_nerf_samples_per_ray: int = 48
    """Samples per ray for the DT-NeRF field."""
    num_proposal_iterations: int = 2
    """Proposal sampling iterations."""
    use_same_proposal_network: bool = False
    """Use one proposal network for all iterations."""
    proposal_net_args_list: List[Dict] = field(
        default_factory=lambda: [
            {"hidden_dim": 16, "log2_hashmap_size": 17, "num_levels": 5, "max_res": 128, "use_linear": False},
            {"hidden_dim": 16, "log2_hashmap_size": 17, "num_levels": 5, "max_res": 256, "use_linear": False},
        ]
    )
    """Arguments of the proposal density fields (not audio-conditioned)."""
    proposal_warmup: int = 5000
    """Steps over which the proposal-network update interval ramps up."""
    proposal_update_every: int = 5
    """Proposal network update interval after warm-up."""
    use_proposal_weight_anneal: bool = True
    """Anneal proposal weights before PDF sampling (mip-NeRF 360)."""
    proposal_weights_anneal_slope: float = 10.0
    """Slope of the annealing function."""
    proposal_weights_anneal_max_num_iters: int = 1000
    """Steps of proposal weight annealing."""
    use_single_jitter: bool = True
    """Same jitter for all samples of a ray."""
    render_skip_threshold: float = 1e-3
    """Render time only: rays whose proposal accumulation is below this skip the field (their head opacity is ~0),
    the proposal sampler's early ray termination. 0 renders every ray."""

    # ---- occupancy-grid sampler (instant-ngp's nerfacc settings; ER-NeRF's values, read from its code, in parentheses)
    grid_resolution: int = 128
    """Occupancy grid cells per axis over the scene box (ER-NeRF: 128)."""
    grid_levels: int = 1
    """Grid levels; 1 covers the bounded scene box (ER-NeRF: one cascade for its bound of 1)."""
    render_step_size: Optional[float] = None
    """Shortest marching step; None: scene-box diagonal / 1000 (instant-ngp)."""
    cone_angle: float = 1 / 256
    """Steps grow with distance as distance x cone_angle (ER-NeRF's dt_gamma: 1/256)."""
    alpha_thre: float = 0.01
    """Training samples of opacity below this (under their own ray's audio) are skipped (instant-ngp)."""
    occ_threshold: float = 0.01
    """A cell is occupied when its decayed max of density x render_step_size exceeds min(this, the grid's mean)
    (nerfacc; ER-NeRF thresholds the density itself: above min(10, mean density))."""
    occ_update_every: int = 16
    """Steps between grid updates (ER-NeRF's update_extra_interval: 16)."""
    occ_warmup_steps: int = 256
    """Until this step every cell is re-evaluated at each update, then a random quarter of the cells plus occupied ones
    (nerfacc; ER-NeRF re-evaluates every cell)."""
    occ_audio_codes_per_update: int = 4
    """Random training frames per grid update; a cell gets the max density over their audio codes (ER-NeRF: one
    random frame per update). More frames refresh rare mouth shapes sooner, for that many density evaluations."""
    occ_keep_mouth_box: bool = True
    """Keep the cells overlapping the mouth box occupied: new speech may open the mouth unlike any training frame
    (ours; the box is small, so this costs few samples)."""

    # ---- losses
    face_loss_mult: float = 1.0
    """Weight of the face-mask MSE (coarse stage)."""
    mouth_loss_mult: float = 1.0
    """lambda of the mouth-mask MSE (coarse stage); the paper gives no value."""
    image_loss_mult: float = 1.0
    """Weight of the whole-image MSE (coarse stage; ours: teaches transparency outside the head)."""
    lpips_loss_mult: float = 0.01
    """lambda of LPIPS in the fine stage (ER-NeRF's lip fine-tuning uses 0.01)."""
    interlevel_loss_mult: float = 1.0
    """Proposal interlevel loss weight."""
    distortion_loss_mult: float = 0.002
    """Distortion loss weight."""
    audio_gate_loss_mult: float = 1e-3
    """Weight of the rendered audio gate on rays outside the face mask (pushes hair, outline and background to
    ignore audio; ER-NeRF regularises its audio attention the same way)."""
    eye_gate_loss_mult: float = 1e-3
    """Weight of the rendered eye gate on rays outside the eyes mask (ER-NeRF)."""
