"""SAHS-NeRF's model settings (paper section 3.2 unless a field says otherwise)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Literal, Tuple, Type

from dtnerf_ns.core.talking_head_model import TalkingHeadModelConfig


@dataclass
class SAHSModelConfig(TalkingHeadModelConfig):
    """Semantic-aware hyper-space deformable NeRF (see ``sahs_model.py``)."""

    _target: Type = field(default_factory=lambda: _model_class())
    """Target class to instantiate."""

    # ---- driving signal and ablation switches (paper Tables 3-4)
    driver: Literal["audio", "expression"] = "audio"
    """Facial feature gamma: the audio code of the frame's 16-step window, or its expression coefficients."""
    use_dynamic_sampling: bool = True
    """Dynamic weighted semantic ray sampling (DWS); off: uniform rays."""
    use_ambient: bool = True
    """Local deformation field: the ambient lifting to hyper-space (LDF); off: deformation only."""
    use_deformation: bool = True
    """The whole hyper-space deformation module (HDM: global deformation and ambient lifting); off: a template
    conditioned on nothing but the point."""
    use_texture_enhancement: bool = True
    """Texture enhancement (TE, ``texture_stage.py``): G is trained in the datamanager's patch stage (from
    ``--pipeline.datamanager.fine-stage-fraction`` of the steps on, NeRF frozen) and enhances every final frame; off:
    every step trains the NeRF and frames are shown as rendered."""

    # ---- dynamic weighted sampling
    class_weights: Dict[str, float] = field(default_factory=lambda: {"lips": 1.1, "inner_mouth": 1.1})
    """Sampling weight ω per semantic class, by name (others 1). Paper: 1.1 for lips and inner mouth (the authors'
    code: 2)."""
    class_loss_momentum: float = 0.1
    """Weight of each batch in the running per-class losses (ours: the paper uses the previous epoch's)."""
    class_probability_floor: float = 0.01
    """Lowest sampling probability of a class (ours: keeps every class drawable)."""
    class_probability_refresh: int = 10
    """Steps between handing new probabilities to the datamanager (one device-to-host copy each)."""

    # ---- texture enhancement
    texture_channels: Tuple[int, ...] = (32, 64, 128)
    """G's feature channels per scale, full resolution first (each further scale halves the resolution)."""
    texture_loss_mult: float = 1.0
    """Weight of G's L2 loss in the texture stage."""

    # ---- losses
    semantic_loss_mult: float = 0.02
    """λ of the semantic cross-entropy (Eq. 14)."""
    interlevel_loss_mult: float = 1.0
    """Hash template: proposal network loss (nerfacto)."""
    distortion_loss_mult: float = 0.002
    """Hash template: distortion loss (nerfacto)."""

    # ---- deformation module
    ambient_dim: int = 2
    """W, the ambient (hyper-space) dimensions."""
    position_frequencies: int = 10
    """NeRF-encoding frequencies of x and x'."""
    pose_frequencies: int = 3
    """NeRF-encoding frequencies of the head pose (the authors' code)."""
    deform_layers: int = 6
    """Linear layers of the global deformation MLP."""
    deform_width: int = 128
    """Width of the global deformation MLP."""
    ambient_layers: int = 4
    """Linear layers of the ambient lifting MLP."""
    ambient_width: int = 64
    """Width of the ambient lifting MLP."""

    # ---- template
    template: Literal["hash", "mlp"] = "hash"
    """"mlp": the paper's positional-encoding MLP with coarse + fine networks; "hash": a hash grid on x' (fast)."""
    mlp_layers: int = 8
    """Paper template: trunk layers. Hash template: density MLP layers."""
    mlp_width: int = 256
    """Paper template: trunk width. Hash template: MLP widths."""
    branch_layers: int = 4
    """Layers of the colour and semantic branches."""
    branch_width: int = 128
    """Width of the colour and semantic branches."""
    ambient_frequencies: int = 4
    """NeRF-encoding frequencies of w and (paper template) the view direction."""
    hash_levels: int = 16
    """Hash template: grid levels."""
    hash_log2_size: int = 19
    """Hash template: log2 table size per level."""
    hash_max_res: int = 1024
    """Hash template: finest resolution over the scene box."""
    geo_feat_dim: int = 15
    """Hash template: geometry feature size."""
    feature_grid_resolution: int = 32
    """Cells per axis of the learnable feature grid e_x'."""
    feature_grid_channels: int = 32
    """Channels of e_x' (0: no grid)."""
    implementation: Literal["tcnn", "torch"] = "tcnn"
    """Hash grids: tiny-cuda-nn when importable, else torch."""

    # ---- sampling
    num_coarse_samples: int = 64
    """Paper template: stratified samples per ray for the coarse network."""
    num_fine_samples: int = 64
    """Paper template: importance samples per ray added for the fine network."""
    num_proposal_samples_per_ray: Tuple[int, ...] = (128, 64)
    """Hash template: samples per proposal network."""
    num_nerf_samples_per_ray: int = 48
    """Hash template: samples per ray for the field."""
    proposal_net_args_list: List[Dict] = field(
        default_factory=lambda: [
            {"hidden_dim": 16, "log2_hashmap_size": 17, "num_levels": 5, "max_res": 128, "use_linear": False},
            {"hidden_dim": 16, "log2_hashmap_size": 17, "num_levels": 5, "max_res": 256, "use_linear": False},
        ]
    )
    """Hash template: proposal density fields (static; the torso's motion is small against their resolution)."""
    proposal_warmup: int = 5000
    """Hash template: steps over which the proposal update interval ramps up."""
    proposal_update_every: int = 5
    """Hash template: proposal update interval after warm-up."""


def _model_class():
    from dtnerf_ns.methods.sahs.sahs_model import SAHSModel  # noqa: PLC0415  (model imports this module)

    return SAHSModel
