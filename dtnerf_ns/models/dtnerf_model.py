"""DT-NeRF model: audio-driven decomposed face/mouth field, compositing over the headless image.

Per ray: frame index (from ``times``: ``round(time * (N - 1))``; the training cameras' times identify the frame, and at
eval / in the viewer ``camera_indices`` is 0 so only ``times`` can) -> the frame's audio window and its neighbours ->
:class:`~dtnerf_ns.field_components.audio_encoder.AudioEncoder` -> audio code, and the frame's eye blink. Both go to
:class:`~dtnerf_ns.fields.dtnerf_field.DTNeRFField` through ``ray_bundle.metadata``.

Sampling (``sampler``): nerfacto's proposal networks (any device), or on CUDA with nerfacc's kernels an occupancy grid
that holds for any audio (ER-NeRF's density grid, updated with random training frames' audio; see
:mod:`dtnerf_ns.model_components.audio_occupancy_grid`). Both produce the same outputs.

The field renders the head only; the image is ``rgb = rgb_head + (1 - accumulation) * headless`` where ``headless`` is
the frame's torso-over-background image (ER-NeRF composites its head over torso + background the same way).

Losses (paper, "two stage fine-tune"):

* coarse (``step < fine_stage_start``): mean squared error over face-mask rays + ``mouth_loss_mult`` x mean over
  mouth-mask rays + ``image_loss_mult`` x mean over all rays. The last term is ours, not the paper's: without it nothing
  teaches the head to be transparent outside the face, so the composite over the headless image would not converge.
* fine: the datamanager samples square patches (partly centred on the mouth): MSE + ``lpips_loss_mult`` x LPIPS per
  patch. LPIPS needs pretrained AlexNet weights; when they cannot be loaded (offline) one warning is logged and the
  fine stage uses MSE only (LPIPS is never computed with random weights).

Plus, with the proposal sampler, nerfacto's proposal losses (interlevel, distortion).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional, Tuple, Type

import nerfacc
import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.fields.density_fields import HashMLPDensityField
from nerfstudio.model_components.losses import distortion_loss, interlevel_loss
from nerfstudio.model_components.ray_samplers import ProposalNetworkSampler, UniformSampler
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer
from nerfstudio.model_components.scene_colliders import AABBBoxCollider
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor
from torch.nn import Parameter

from dtnerf_ns.field_components.audio_augmentation import AudioFeatureAugmentation
from dtnerf_ns.field_components.audio_encoder import AudioEncoder
from dtnerf_ns.fields.dtnerf_field import DENSITY_FACE, DENSITY_MOUTH, RGB_FACE, RGB_MOUTH, DTNeRFField
from dtnerf_ns.model_components.audio_occupancy_grid import (
    AudioVolumetricSampler,
    SamplerKind,
    cells_overlapping_box,
    max_density_over_audio,
    render_weights,
    resolve_sampler,
)


@dataclass
class DTNeRFModelConfig(ModelConfig):
    """DT-NeRF model configuration (defaults: paper-like GPU settings at 512x512)."""

    _target: Type = field(default_factory=lambda: DTNeRFModel)
    """Target class to instantiate."""
    enable_collider: bool = True
    """Clip rays to the scene box (an AABB collider replaces nerfstudio's near/far collider)."""
    near_plane: float = 0.05
    """Closest sample distance from the camera during training."""
    implementation: Literal["tcnn", "torch"] = "tcnn"
    """Hash grids / MLPs: tcnn when importable (falls back to torch with a warning), or torch."""

    # ---- audio
    audio_dim: int = 32
    """Audio code size (ER-NeRF: 32)."""
    audio_window: int = 8
    """Neighbouring frames smoothed by the audio attention net (ER-NeRF: 8)."""
    audio_smoothing: bool = True
    """Smooth audio codes over the window with ER-NeRF's AudioAttNet."""
    audio_augment_formant_shift: float = 1.0
    """Training only: largest random shift of each frame's features along the mel axis, in channels (~10% formant
    change per channel), so the mouth generalises to other voices. 0 disables (so do the three below)."""
    audio_augment_tilt: float = 0.2
    """Training only: largest random spectral tilt per frame (feature units; 1 = the features' 30 dB range)."""
    audio_augment_gain: float = 0.1
    """Training only: largest random level change per frame (feature units)."""
    audio_augment_noise: float = 0.02
    """Training only: standard deviation of per-value Gaussian noise on the audio features (feature units)."""
    use_blink: bool = True
    """Condition the face colour on the frame's eye blink."""

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
    fine_stage_start: int = 100_000
    """Step at which the fine stage (patches, MSE + LPIPS) starts; the coarse stage runs before."""
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


class DTNeRFModel(Model):
    """DT-NeRF (see module docstring). Needs the dtnerf-data dataparser's metadata."""

    config: DTNeRFModelConfig

    # ------------------------------------------------------------------ set-up
    def populate_modules(self):
        super().populate_modules()
        metadata = self.kwargs.get("metadata") or {}
        for key in ("audio_features", "blink", "mouth_aabb", "num_frames"):
            if key not in metadata:
                raise ValueError(f"DTNeRFModel needs dataparser metadata['{key}'] (use the dtnerf-data dataparser)")
        audio = torch.as_tensor(metadata["audio_features"], dtype=torch.float32)
        self.num_frames = int(metadata["num_frames"])
        self.data_dir: Optional[Path] = Path(metadata["data_dir"]) if metadata.get("data_dir") else None
        # Per-frame arrays as non-persistent buffers: they follow the model's device, stay out of checkpoints.
        self.register_buffer("audio_features", audio, persistent=False)  # [N, 16, C]
        self.register_buffer("blink", torch.as_tensor(metadata["blink"], dtype=torch.float32), persistent=False)
        frame_indices = metadata.get("frame_indices")
        if frame_indices is None:
            frame_indices = torch.arange(self.num_frames)
        self.register_buffer("train_frame_indices", torch.as_tensor(frame_indices, dtype=torch.long), persistent=False)

        self.audio_augmentation = AudioFeatureAugmentation(
            formant_shift=self.config.audio_augment_formant_shift,
            tilt=self.config.audio_augment_tilt,
            gain=self.config.audio_augment_gain,
            noise=self.config.audio_augment_noise,
        )
        self.audio_encoder = AudioEncoder(
            in_channels=audio.shape[-1],
            audio_dim=self.config.audio_dim,
            window=self.config.audio_window,
            use_smoothing=self.config.audio_smoothing,
        )
        c = self.config
        self.field = DTNeRFField(
            aabb=self.scene_box.aabb,
            mouth_aabb=torch.as_tensor(metadata["mouth_aabb"], dtype=torch.float32),
            audio_dim=c.audio_dim,
            num_levels=c.num_levels,
            features_per_level=c.features_per_level,
            face_log2_hashmap_size=c.face_log2_hashmap_size,
            mouth_log2_hashmap_size=c.mouth_log2_hashmap_size,
            face_base_res=c.base_res,
            face_max_res=c.face_max_res,
            mouth_base_res=c.base_res,
            mouth_max_res=c.mouth_max_res,
            hidden_dim=c.hidden_dim,
            num_layers=c.num_layers,
            geo_feat_dim=c.geo_feat_dim,
            hidden_dim_color=c.hidden_dim_color,
            num_layers_color=c.num_layers_color,
            transformer_out_dim=c.transformer_out_dim,
            transformer_dim=c.transformer_dim,
            num_heads=c.num_heads,
            transformer_pe_frequencies=c.transformer_pe_frequencies,
            use_blink=c.use_blink,
            implementation=c.implementation,
        )

        self._setup_sampler(resolve_sampler(c.sampler))
        # Bounded scene around the head: rays are clipped to the scene box.
        self.collider = AABBBoxCollider(self.scene_box, near_plane=c.near_plane) if c.enable_collider else None

        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="median")
        # Median depth is not implemented for packed samples (occupancy sampler): expected depth there.
        self.renderer_depth_packed = DepthRenderer(method="expected")

        self.step = 0
        self._lpips: Any = None
        self._lpips_tried = False
        self._bg_cache: Optional[Tuple[Tuple[int, int, int], Tensor]] = None

    def _setup_sampler(self, kind: SamplerKind) -> None:
        """Builds the proposal networks and sampler, or the occupancy grid and its sampler (never both)."""
        c = self.config
        for name in ("proposal_networks", "proposal_sampler", "occupancy_sampler"):
            if hasattr(self, name):
                delattr(self, name)
        self.density_fns: List[Any] = []
        self.sampler_kind: SamplerKind = kind
        if kind == "occupancy":
            aabb = self.scene_box.aabb
            self.render_step_size = c.render_step_size or float(torch.linalg.norm(aabb[1] - aabb[0])) / 1000
            # The grid's occupancy buffers are persistent: they are trained state (as instant-ngp's) and go into
            # checkpoints, so a loaded model renders without re-estimating them.
            grid = nerfacc.OccGridEstimator(roi_aabb=aabb.flatten(), resolution=c.grid_resolution, levels=c.grid_levels)
            self.occupancy_sampler = AudioVolumetricSampler(occupancy_grid=grid, density_fn=self.field.density_fn)
            return

        # Proposal networks (nerfacto's, bounded scene: no spatial distortion, not audio-conditioned).
        self.proposal_networks = torch.nn.ModuleList()
        num_prop = c.num_proposal_iterations
        if c.use_same_proposal_network:
            net = HashMLPDensityField(self.scene_box.aabb, **c.proposal_net_args_list[0], implementation=c.implementation)
            self.proposal_networks.append(net)
            self.density_fns = [net.density_fn for _ in range(num_prop)]
        else:
            for i in range(num_prop):
                args = c.proposal_net_args_list[min(i, len(c.proposal_net_args_list) - 1)]
                self.proposal_networks.append(
                    HashMLPDensityField(self.scene_box.aabb, **args, implementation=c.implementation)
                )
            self.density_fns = [net.density_fn for net in self.proposal_networks]

        def update_schedule(step):
            return np.clip(np.interp(step, [0, c.proposal_warmup], [0, c.proposal_update_every]), 1, c.proposal_update_every)

        self.proposal_sampler = ProposalNetworkSampler(
            num_nerf_samples_per_ray=c.num_nerf_samples_per_ray,
            num_proposal_samples_per_ray=c.num_proposal_samples_per_ray,
            num_proposal_network_iterations=num_prop,
            single_jitter=c.use_single_jitter,
            update_sched=update_schedule,
            initial_sampler=UniformSampler(single_jitter=c.use_single_jitter),
        )

    @property
    def occupancy_grid(self) -> Optional[nerfacc.OccGridEstimator]:
        """The occupancy grid; None with the proposal sampler (never raises: the viewer walks every attribute)."""
        sampler = self._modules.get("occupancy_sampler")
        return sampler.occupancy_grid if sampler is not None else None

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Loads a checkpoint with the sampler it was trained with, whatever ``config.sampler`` says (e.g. a model
        trained with "auto" on a CPU and opened on a GPU): proposal networks and an occupancy grid are not
        interchangeable. Only for rendering: training cannot resume with the other sampler.
        """
        saved: SamplerKind = "occupancy" if any(k.startswith("occupancy_sampler.") for k in state_dict) else "proposal"
        if saved != self.sampler_kind:
            if self.training:
                raise ValueError(
                    f"This checkpoint was trained with the {saved} sampler, the model is set up for the "
                    f"{self.sampler_kind} sampler: resume with --pipeline.model.sampler {saved}."
                )
            resolve_sampler(saved)  # raises where the occupancy sampler cannot run
            CONSOLE.print(f"The checkpoint was trained with the {saved} sampler; rendering with it.")
            self._setup_sampler(saved)
            self.to(self.device).train(self.training)  # the new modules follow the model's device and (eval) mode
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = {"fields": list(self.field.parameters()), "audio": list(self.audio_encoder.parameters())}
        if self.sampler_kind == "proposal":
            groups["proposal_networks"] = list(self.proposal_networks.parameters())
        return groups

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        c = self.config
        datamanager = getattr(training_callback_attributes.pipeline, "datamanager", None)
        if datamanager is not None and hasattr(datamanager, "fine_stage_start"):
            datamanager.fine_stage_start = c.fine_stage_start  # the datamanager samples patches from then on

        def before_step(step: int) -> None:
            self.step = step
            if self.sampler_kind == "occupancy":
                self.update_occupancy_grid(step)
            elif c.use_proposal_weight_anneal:
                # mip-NeRF 360 eq. 18, as nerfacto.
                frac = np.clip(step / c.proposal_weights_anneal_max_num_iters, 0, 1)
                b = c.proposal_weights_anneal_slope
                self.proposal_sampler.set_anneal(b * frac / ((b - 1) * frac + 1))

        callbacks = [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], before_step, update_every_num_iters=1)
        ]
        if self.sampler_kind == "proposal":
            callbacks.append(
                TrainingCallback(
                    [TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                    self.proposal_sampler.step_cb,
                    update_every_num_iters=1,
                )
            )
        return callbacks

    @torch.no_grad()
    def update_occupancy_grid(self, step: int) -> None:
        """Every ``occ_update_every`` steps: nerfacc's grid update with the max density over the audio of
        ``occ_audio_codes_per_update`` random training frames.

        One grid serves every frame, so it must cover every mouth shape. ER-NeRF's ``update_extra_state``
        (nerf_triplane/renderer.py, read for this) draws one random training frame per update and queries the density
        with that frame's audio code (and eye area), keeping ``max(0.95 * grid, new)``. Here too fresh random frames
        are drawn at each update and nerfacc's decayed max (x 0.95 per update) remembers earlier ones; taking the max
        over a few distinct frames per update refreshes rare mouth shapes sooner. Held-out frames are never used.
        Blink only enters the colour, so the density needs no blink.
        """
        c = self.config
        if step % c.occ_update_every != 0:
            return
        num_frames = len(self.train_frame_indices)
        pick = torch.randperm(num_frames, device=self.train_frame_indices.device)[: c.occ_audio_codes_per_update]
        codes = self.encode_audio(self.train_frame_indices[pick])

        def occ_eval_fn(x: Tensor) -> Tensor:
            return max_density_over_audio(self.field.density_fn, x, codes) * self.render_step_size

        grid = self.occupancy_grid
        assert grid is not None, "update_occupancy_grid needs the occupancy sampler"
        grid.update_every_n_steps(
            step=step,
            occ_eval_fn=occ_eval_fn,
            occ_thre=c.occ_threshold,
            warmup_steps=c.occ_warmup_steps,
            n=c.occ_update_every,
        )
        if c.occ_keep_mouth_box:
            grid.binaries |= cells_overlapping_box(grid, self.field.mouth_aabb)

    # ------------------------------------------------------------------ conditioning
    def frame_indices_from_times(self, times: Tensor) -> Tensor:
        """Frame index of each time (``round(time * (N - 1))``, clamped to [0, N - 1])."""
        return torch.round(times.reshape(-1).float() * (self.num_frames - 1)).long().clamp(0, self.num_frames - 1)

    def ray_frame_indices(self, ray_bundle: RayBundle) -> Tensor:
        """Frame index per ray: from ``times``, else (no times) from the training camera index."""
        if ray_bundle.times is not None:
            return self.frame_indices_from_times(ray_bundle.times)
        assert ray_bundle.camera_indices is not None, "rays need times or camera_indices to find their frame"
        return self.train_frame_indices[ray_bundle.camera_indices.reshape(-1).long()]

    def encode_audio(self, frames: Tensor) -> Tensor:
        """Audio codes [len(frames), audio_dim] (each distinct frame encoded once)."""
        unique, inverse = torch.unique(frames, return_inverse=True)
        window = self.config.audio_window if self.audio_encoder.att_net is not None else 1
        # Window of `window` frames starting window//2 before the frame (ER-NeRF's bidirectional attention window);
        # ER-NeRF pads with zeros at the clip's ends, we repeat the first / last frame.
        offsets = torch.arange(window, device=frames.device) - window // 2
        idx = (unique[:, None] + offsets[None]).clamp(0, self.num_frames - 1)  # [U, W]
        # AudioNet once per distinct frame of all windows (windows overlap), then AudioAttNet per target frame.
        needed, where = torch.unique(idx, return_inverse=True)
        # Random voice changes while training (identity in eval mode: evaluation, viewer, dtnerf-render).
        per_frame = self.audio_encoder.audio_net(self.audio_augmentation(self.audio_features[needed]))  # [F, A]
        codes = per_frame[where]  # [U, W, A]
        if self.audio_encoder.att_net is not None and window > 1:
            codes = self.audio_encoder.att_net(codes)
        else:
            codes = codes[:, window // 2]
        return codes[inverse]

    @contextlib.contextmanager
    def driven_by(
        self, audio_features: Float[Tensor, "frames window channels"], blink: Float[Tensor, "frames"]
    ) -> Iterator[None]:
        """Temporarily drive the model with other per-frame signals (new speech for ``dtnerf-render``).

        Inside the block, frame ``k`` of the new sequence is addressed by ``times = k / (frames - 1)``, exactly as the
        training frames are; no headless backdrop is looked up (the caller composites ``rgb_head``/``accumulation``).
        """
        if audio_features.shape[1:] != self.audio_features.shape[1:]:
            raise ValueError(
                f"audio windows {tuple(audio_features.shape[1:])} do not match the model's "
                f"{tuple(self.audio_features.shape[1:])}"
            )
        if blink.shape[0] != audio_features.shape[0]:
            raise ValueError(f"{blink.shape[0]} blink values for {audio_features.shape[0]} audio frames")
        saved = (self.audio_features, self.blink, self.num_frames, self.data_dir, self._bg_cache)
        self.audio_features = audio_features.to(self.device, torch.float32)
        self.blink = blink.to(self.device, torch.float32)
        self.num_frames, self.data_dir, self._bg_cache = int(audio_features.shape[0]), None, None
        try:
            yield
        finally:
            self.audio_features, self.blink, self.num_frames, self.data_dir, self._bg_cache = saved

    # ------------------------------------------------------------------ rendering
    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Any]:
        num_rays = ray_bundle.origins.reshape(-1, 3).shape[0]
        frames = self.ray_frame_indices(ray_bundle)
        if frames.numel() == 1 and num_rays > 1:
            frames = frames.expand(num_rays)
        shape = ray_bundle.origins.shape[:-1]
        metadata = dict(ray_bundle.metadata or {})
        metadata["audio"] = self.encode_audio(frames).reshape(*shape, -1)
        metadata["blink"] = self.blink[frames].reshape(*shape, 1)
        ray_bundle.metadata = metadata
        if self.sampler_kind == "occupancy":
            return self._get_outputs_occupancy(ray_bundle)

        ray_samples, weights_list, ray_samples_list = self.proposal_sampler(ray_bundle, density_fns=self.density_fns)
        field_outputs = self.field.forward(ray_samples)
        weights = ray_samples.get_weights(field_outputs[FieldHeadNames.DENSITY])
        weights_list.append(weights)
        ray_samples_list.append(ray_samples)

        rgb_head = torch.sum(weights * field_outputs[FieldHeadNames.RGB], dim=-2)
        accumulation = self.renderer_accumulation(weights=weights)
        depth = self.renderer_depth(weights=weights, ray_samples=ray_samples)
        # Face-only and mouth-only renders (each sub-field volume-rendered alone, over black).
        w_face = ray_samples.get_weights(field_outputs[DENSITY_FACE])
        w_mouth = ray_samples.get_weights(field_outputs[DENSITY_MOUTH])
        outputs: Dict[str, Any] = {
            "rgb_head": rgb_head,
            "rgb": rgb_head,  # replaced by the composite over the headless image where it is known
            "accumulation": accumulation,
            "depth": depth,
            "rgb_face": torch.sum(w_face * field_outputs[RGB_FACE], dim=-2),
            "rgb_mouth": torch.sum(w_mouth * field_outputs[RGB_MOUTH], dim=-2),
            "accumulation_mouth": self.renderer_accumulation(weights=w_mouth),
        }
        if self.training:
            outputs["weights_list"] = weights_list
            outputs["ray_samples_list"] = ray_samples_list
        for i in range(self.config.num_proposal_iterations):
            outputs[f"prop_depth_{i}"] = self.renderer_depth(weights=weights_list[i], ray_samples=ray_samples_list[i])
        return outputs

    def _get_outputs_occupancy(self, ray_bundle: RayBundle) -> Dict[str, Any]:
        """The proposal path's image outputs, from occupancy-grid marching (packed samples) and nerfacc-style volume
        rendering (as nerfstudio's instant-ngp model). Needs ``ray_bundle.metadata`` audio and blink per ray."""
        c = self.config
        shape = ray_bundle.shape
        rays = ray_bundle.flatten()
        num_rays = len(rays)
        with torch.no_grad():
            ray_samples, ray_indices = self.occupancy_sampler(
                rays,
                render_step_size=self.render_step_size,
                near_plane=c.near_plane,
                alpha_thre=c.alpha_thre,
                cone_angle=c.cone_angle,
            )
        # Per-sample conditioning: each sample carries its ray's audio code and blink (with their gradients).
        ray_samples.metadata = {key: rays.metadata[key][ray_indices] for key in ("audio", "blink")}
        field_outputs = self.field.forward(ray_samples)
        densities = (field_outputs[FieldHeadNames.DENSITY], field_outputs[DENSITY_FACE], field_outputs[DENSITY_MOUTH])
        weights, w_face, w_mouth = (
            w[..., None]
            for w in render_weights(
                ray_samples.frustums.starts[..., 0],
                ray_samples.frustums.ends[..., 0],
                [d[..., 0] for d in densities],
                ray_indices,
                num_rays,
            )
        )

        def accumulate(w: Tensor, values: Optional[Tensor] = None) -> Tensor:
            return nerfacc.accumulate_along_rays(w[..., 0], values, ray_indices=ray_indices, n_rays=num_rays)

        rgb_head = accumulate(weights, field_outputs[FieldHeadNames.RGB])
        outputs = {
            "rgb_head": rgb_head,
            "rgb": rgb_head,  # replaced by the composite over the headless image where it is known
            "accumulation": accumulate(weights),
            "depth": self.renderer_depth_packed(
                weights=weights, ray_samples=ray_samples, ray_indices=ray_indices, num_rays=num_rays
            ),
            "rgb_face": accumulate(w_face, field_outputs[RGB_FACE]),
            "rgb_mouth": accumulate(w_mouth, field_outputs[RGB_MOUTH]),
            "accumulation_mouth": accumulate(w_mouth),
        }
        return {key: value.reshape(*shape, -1) for key, value in outputs.items()}

    @staticmethod
    def composite(outputs: Dict[str, Tensor], background: Tensor) -> Tensor:
        """Head over the background: ``rgb_head + (1 - accumulation) * background`` (rgb_head is premultiplied)."""
        return outputs["rgb_head"] + (1.0 - outputs["accumulation"]) * background

    def _headless_for_camera(self, camera: Cameras) -> Optional[Tensor]:
        """The frame's headless image resized to the camera, [H, W, 3] (None when unavailable)."""
        if self.data_dir is None or camera.times is None:
            return None
        from dtnerf_ns.data.dtnerf_dataset import read_resized  # noqa: PLC0415

        from data_processing import dataset_layout  # noqa: PLC0415

        frame = int(self.frame_indices_from_times(camera.times.reshape(-1)[:1])[0])
        height, width = int(camera.height.reshape(-1)[0]), int(camera.width.reshape(-1)[0])
        key = (frame, height, width)
        if self._bg_cache is not None and self._bg_cache[0] == key:
            return self._bg_cache[1]
        path = dataset_layout.headless_path(self.data_dir, frame)
        if not path.is_file():
            return None
        image = torch.from_numpy(read_resized(path, (width, height)).astype(np.float32) / 255.0).to(self.device)
        self._bg_cache = (key, image)
        return image

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box: Optional[OrientedBox] = None) -> Dict[str, Tensor]:
        """Renders a camera; ``rgb`` is composited over the frame's headless image (a screen-space backdrop, as in
        ER-NeRF, resized to the camera: exact for the dataset's cameras, approximate for other viewer poses)."""
        outputs = super().get_outputs_for_camera(camera, obb_box=obb_box)
        background = self._headless_for_camera(camera)
        if background is not None and "rgb_head" in outputs:
            outputs["rgb"] = self.composite(outputs, background)
        return outputs

    # ------------------------------------------------------------------ losses and metrics
    def _batch_rgb(self, outputs: Dict[str, Tensor], batch: Dict[str, Any]) -> Tuple[Tensor, Tensor]:
        gt = batch["image"][..., :3].to(self.device)
        return gt, self.composite(outputs, batch["headless"].to(self.device))

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        gt, pred = self._batch_rgb(outputs, batch)
        metrics = {"psnr": -10.0 * torch.log10(torch.mean((pred.detach() - gt) ** 2).clamp_min(1e-10))}
        if self.training and self.sampler_kind == "proposal":
            metrics["distortion"] = distortion_loss(outputs["weights_list"], outputs["ray_samples_list"])
        return metrics

    @staticmethod
    def _masked_mse(error: Tensor, mask: Tensor) -> Tensor:
        """Mean of per-ray squared error over rays where mask > 0.5 (0 when there are none)."""
        m = (mask.reshape(-1) > 0.5).to(error.dtype)
        return (error * m).sum() / m.sum().clamp_min(1.0)

    def get_lpips(self) -> Any:
        """LPIPS (AlexNet) built once, lazily; None (after one warning) when its pretrained weights cannot be had."""
        if not self._lpips_tried:
            self._lpips_tried = True
            try:
                import lpips  # noqa: PLC0415

                # pretrained=True + pnet_rand=False: AlexNet ImageNet weights and LPIPS' linear layers; raises when
                # they cannot be loaded (e.g. offline) - never random weights. Silence its download chatter.
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(
                    io.StringIO()
                ):
                    warnings.simplefilter("ignore")
                    net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=False, verbose=False)
                for p in net.parameters():
                    p.requires_grad_(False)
                self._lpips = [net.eval().to(self.device)]  # in a list: not a sub-module, not in checkpoints
            except Exception as err:  # noqa: BLE001 - any failure means "no LPIPS"
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                CONSOLE.print(f"[bold yellow]WARNING: LPIPS unavailable ({reason}); the fine stage uses MSE only.")
                self._lpips = None
        return self._lpips[0] if self._lpips else None

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        c = self.config
        gt, pred = self._batch_rgb(outputs, batch)
        error = ((pred - gt) ** 2).mean(dim=-1)  # per ray
        loss_dict: Dict[str, Tensor] = {}
        patch = batch.get("patch_size")
        if patch:
            # Fine stage: whole-patch MSE + LPIPS on the patches.
            loss_dict["rgb_loss"] = error.mean()
            net = self.get_lpips()
            if net is not None and c.lpips_loss_mult > 0:
                to_img = lambda x: x.reshape(-1, patch, patch, 3).permute(0, 3, 1, 2)  # noqa: E731
                net.to(self.device)
                lp = net(to_img(pred).clamp(0, 1), to_img(gt), normalize=True).mean()
                loss_dict["lpips_loss"] = c.lpips_loss_mult * lp
        else:
            loss_dict["face_loss"] = c.face_loss_mult * self._masked_mse(error, batch["face_mask"].to(self.device))
            loss_dict["mouth_loss"] = c.mouth_loss_mult * self._masked_mse(error, batch["mouth_mask"].to(self.device))
            loss_dict["image_loss"] = c.image_loss_mult * error.mean()
        if self.training and self.sampler_kind == "proposal":
            loss_dict["interlevel_loss"] = c.interlevel_loss_mult * interlevel_loss(
                outputs["weights_list"], outputs["ray_samples_list"]
            )
            assert metrics_dict is not None and "distortion" in metrics_dict
            loss_dict["distortion_loss"] = c.distortion_loss_mult * metrics_dict["distortion"]
        return loss_dict

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        from torchmetrics.functional import structural_similarity_index_measure  # noqa: PLC0415

        gt, pred = self._batch_rgb(outputs, batch)
        pred = pred.clamp(0, 1)
        mse = torch.mean((pred - gt) ** 2)
        metrics: Dict[str, float] = {"psnr": float(-10 * torch.log10(mse.clamp_min(1e-10)))}
        gt_b, pred_b = gt.permute(2, 0, 1)[None], pred.permute(2, 0, 1)[None]
        metrics["ssim"] = float(structural_similarity_index_measure(pred_b, gt_b, data_range=1.0))
        mouth = batch.get("mouth_mask")
        if mouth is not None:
            m = mouth.to(self.device).reshape(gt.shape[:2]) > 0.5
            if bool(m.any()):
                mouth_mse = torch.mean((pred[m] - gt[m]) ** 2)
                metrics["mouth_psnr"] = float(-10 * torch.log10(mouth_mse.clamp_min(1e-10)))
        if self._lpips:  # only if it was loaded for training: never built here (offline start-up must not crash)
            metrics["lpips"] = float(self._lpips[0](pred_b, gt_b, normalize=True).mean())
        images = {
            "img": torch.cat([gt, pred], dim=1),
            "accumulation": colormaps.apply_colormap(outputs["accumulation"]),
            "depth": colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"]),
            "face_mouth": torch.cat([outputs["rgb_face"], outputs["rgb_mouth"]], dim=1).clamp(0, 1),
        }
        return metrics, images
