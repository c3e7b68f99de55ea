"""DT-NeRF model: the audio-driven decomposed face/mouth field on the shared talking-head core.

Per ray, the core's :class:`~dtnerf_ns.core.conditioning.FrameConditioning` gives the frame's audio code and eye blink;
both reach :class:`~dtnerf_ns.methods.dtnerf.dtnerf_field.DTNeRFField` through ``ray_bundle.metadata``. The field
renders the head only, composited over the frame's head-less image (:class:`TalkingHeadModel`, backdrop "headless").

Sampling (``sampler``): nerfacto's proposal networks (any device), or on CUDA with nerfacc's kernels an occupancy grid
that holds for any audio (:mod:`~dtnerf_ns.methods.dtnerf.audio_occupancy_grid`). Losses: :mod:`dtnerf_losses`
(coarse rays, then LPIPS on patches once the datamanager's fine stage starts), plus nerfacto's proposal losses.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import nerfacc
import numpy as np
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.model_components.losses import distortion_loss, interlevel_loss
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer
from nerfstudio.model_components.scene_colliders import AABBBoxCollider
from nerfstudio.utils import colormaps
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor
from torch.nn import Parameter

from dtnerf_ns.core.talking_head_model import TalkingHeadModel
from dtnerf_ns.methods.dtnerf.audio_occupancy_grid import SamplerKind, resolve_sampler, update_audio_occupancy_grid
from dtnerf_ns.methods.dtnerf.dtnerf_field import (
    AUDIO_GATE,
    DENSITY_FACE,
    DENSITY_MOUTH,
    EYE_GATE,
    RGB_FACE,
    RGB_MOUTH,
    DTNeRFField,
)
from dtnerf_ns.methods.dtnerf.dtnerf_losses import LazyLPIPS, coarse_losses, fine_losses, gate_losses
from dtnerf_ns.methods.dtnerf.dtnerf_model_config import DTNeRFModelConfig
from dtnerf_ns.methods.dtnerf.dtnerf_sampling import build_samplers, render_packed, scatter_rays

__all__ = ["DTNeRFModel", "DTNeRFModelConfig"]


class DTNeRFModel(TalkingHeadModel):
    """DT-NeRF (see module docstring). Needs the talking-head-data dataparser's metadata (with ``mouth_aabb``)."""

    config: DTNeRFModelConfig
    # Its benchmark table (its 512x512 videos, a 68-point landmark detector for LMD).
    paper = ("DT-NeRF", {"psnr": 35.39, "lpips": 0.0169, "fid": 9.472, "lmd": 2.601, "fps": 32})

    def populate_modules(self):
        super().populate_modules()
        metadata = self.kwargs.get("metadata") or {}
        if "mouth_aabb" not in metadata:
            raise ValueError("DTNeRFModel needs dataparser metadata['mouth_aabb'] (use the talking-head-data dataparser)")
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
            use_audio_gate=c.saved_setting("use_audio_gate", False),
            use_eye_gate=c.saved_setting("use_eye_gate", False),
            transformer_recompute=c.transformer_recompute,
            implementation=c.implementation,
        )
        self._setup_sampler(resolve_sampler(c.sampler))
        # Bounded scene around the head: rays are clipped to the scene box.
        self.collider = AABBBoxCollider(self.scene_box, near_plane=c.near_plane) if c.enable_collider else None
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="median")
        self.step = 0
        self.lpips = LazyLPIPS()

    def _setup_sampler(self, kind: SamplerKind) -> None:
        """Builds the proposal networks and sampler, or the occupancy grid and its sampler (never both)."""
        for name in ("proposal_networks", "proposal_sampler", "occupancy_sampler"):
            if hasattr(self, name):
                delattr(self, name)
        self.sampler_kind: SamplerKind = kind
        samplers = build_samplers(kind, self.config, self.scene_box.aabb, self.field.density_fn)
        self.density_fns: List[Any] = samplers.density_fns
        self.render_step_size = samplers.render_step_size
        for name in ("proposal_networks", "proposal_sampler", "occupancy_sampler"):
            if getattr(samplers, name) is not None:
                setattr(self, name, getattr(samplers, name))

    @property
    def occupancy_grid(self) -> Optional[nerfacc.OccGridEstimator]:
        """The occupancy grid; None with the proposal sampler (never raises: the viewer walks every attribute)."""
        sampler = self._modules.get("occupancy_sampler")
        return sampler.occupancy_grid if sampler is not None else None

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Loads a checkpoint with the sampler it was trained with, whatever ``config.sampler`` says (e.g. a model
        trained with "auto" on a CPU and opened on a GPU): proposal networks and an occupancy grid are not
        interchangeable. Only for rendering: training cannot resume with the other sampler."""
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
        groups = {"fields": list(self.field.parameters()), "audio": list(self.conditioning.audio_encoder.parameters())}
        if self.sampler_kind == "proposal":
            groups["proposal_networks"] = list(self.proposal_networks.parameters())
        return groups

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        c = self.config

        def before_step(step: int) -> None:
            self.step = step
            if self.sampler_kind == "occupancy":
                self.update_occupancy_grid(step)
            elif c.use_proposal_weight_anneal:
                # mip-NeRF 360 eq. 18, as nerfacto.
                frac = np.clip(step / c.proposal_weights_anneal_max_num_iters, 0, 1)
                b = c.proposal_weights_anneal_slope
                self.proposal_sampler.set_anneal(b * frac / ((b - 1) * frac + 1))

        callbacks = [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], before_step)]
        if self.sampler_kind == "proposal":
            callbacks.append(
                TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.proposal_sampler.step_cb)
            )
        return callbacks

    @torch.no_grad()
    def update_occupancy_grid(self, step: int) -> None:
        """Every ``occ_update_every`` steps: the grid update with the audio of random training frames (never held-out
        ones). Blink only enters the colour, so the density needs no blink."""
        c = self.config
        if step % c.occ_update_every != 0:
            return
        train_frames = self.conditioning.train_frame_indices
        pick = torch.randperm(len(train_frames), device=train_frames.device)[: c.occ_audio_codes_per_update]
        grid = self.occupancy_grid
        assert grid is not None, "update_occupancy_grid needs the occupancy sampler"
        update_audio_occupancy_grid(
            grid,
            step,
            self.field.density_fn,
            self.conditioning.audio_codes(train_frames[pick]),
            self.render_step_size,
            c.occ_threshold,
            c.occ_warmup_steps,
            c.occ_update_every,
            keep_box=self.field.mouth_aabb if c.occ_keep_mouth_box else None,
        )

    # ------------------------------------------------------------------ rendering
    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Any]:
        frames = self.conditioning.frames_of_rays(ray_bundle)
        shape = ray_bundle.origins.shape[:-1]
        metadata = dict(ray_bundle.metadata or {})
        metadata["audio"] = self.conditioning.audio_codes(frames).reshape(*shape, -1)
        metadata["blink"] = self.conditioning.blink[frames].reshape(*shape, 1)
        ray_bundle.metadata = metadata
        if self.sampler_kind == "occupancy":
            return render_packed(self.field, self.occupancy_sampler, ray_bundle, self.config, self.render_step_size)

        ray_samples, weights_list, ray_samples_list = self.proposal_sampler(ray_bundle, density_fns=self.density_fns)
        keep = None
        if not self.training and self.config.render_skip_threshold > 0:
            # Render time: rays the proposal network sees as empty skip the field (their head opacity is ~0; the
            # proposal weights bound the field's from above, interlevel loss).
            keep = weights_list[-1].sum(dim=-2)[..., 0] >= self.config.render_skip_threshold
            keep[0] |= not bool(keep.any())  # the field takes no empty batch: one real ray keeps the shapes
            ray_samples = ray_samples[keep]
        field_outputs = self.field.forward(ray_samples)
        weights = ray_samples.get_weights(field_outputs[FieldHeadNames.DENSITY])
        w_face = ray_samples.get_weights(field_outputs[DENSITY_FACE])
        w_mouth = ray_samples.get_weights(field_outputs[DENSITY_MOUTH])
        rgb_head = torch.sum(weights * field_outputs[FieldHeadNames.RGB], dim=-2)
        outputs: Dict[str, Any] = {
            "rgb_head": rgb_head,
            "rgb": rgb_head,  # the core composites it over the backdrop where one is known
            "accumulation": self.renderer_accumulation(weights=weights),
            "depth": self.renderer_depth(weights=weights, ray_samples=ray_samples),
            # Face-only and mouth-only renders (each sub-field volume-rendered alone, over black).
            "rgb_face": torch.sum(w_face * field_outputs[RGB_FACE], dim=-2),
            "rgb_mouth": torch.sum(w_mouth * field_outputs[RGB_MOUTH], dim=-2),
            "accumulation_mouth": self.renderer_accumulation(weights=w_mouth),
            # Per-ray gates (face weights): how much audio / blink reach what this ray shows.
            AUDIO_GATE: torch.sum(w_face * field_outputs[AUDIO_GATE], dim=-2),
            EYE_GATE: torch.sum(w_face * field_outputs[EYE_GATE], dim=-2),
        }
        if keep is not None:
            outputs = scatter_rays(outputs, keep)
        if self.training:
            weights_list.append(weights)
            ray_samples_list.append(ray_samples)
            outputs["weights_list"] = weights_list
            outputs["ray_samples_list"] = ray_samples_list
        for i in range(self.config.num_proposal_iterations):
            outputs[f"prop_depth_{i}"] = self.renderer_depth(weights=weights_list[i], ray_samples=ray_samples_list[i])
        return outputs

    # ------------------------------------------------------------------ losses and metrics
    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        gt, pred = self.composite_batch(outputs, batch)
        metrics = {"psnr": -10.0 * torch.log10(torch.mean((pred.detach() - gt) ** 2).clamp_min(1e-10))}
        if self.training and self.sampler_kind == "proposal":
            metrics["distortion"] = distortion_loss(outputs["weights_list"], outputs["ray_samples_list"])
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        c = self.config
        gt, pred = self.composite_batch(outputs, batch)
        patch = batch.get("patch_size")
        if patch:  # the datamanager's fine stage
            loss_dict = fine_losses(pred, gt, int(patch), self.lpips.get(self.device), c.lpips_loss_mult)
        else:
            loss_dict = coarse_losses(pred, gt, batch, c.face_loss_mult, c.mouth_loss_mult, c.image_loss_mult)
        loss_dict.update(gate_losses(outputs, batch, c.audio_gate_loss_mult, c.eye_gate_loss_mult))
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
        gt, pred = self.composite_batch(outputs, batch)
        pred = pred.clamp(0, 1)
        metrics: Dict[str, float] = self.image_metrics(gt, pred, batch)
        if self.lpips.loaded is not None:  # only if it was loaded for training (never built here)
            pred_b, gt_b = pred.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None]
            metrics["lpips"] = float(self.lpips.loaded(pred_b, gt_b, normalize=True).mean())
        images = {
            "img": torch.cat([gt, pred], dim=1),
            "accumulation": colormaps.apply_colormap(outputs["accumulation"]),
            "depth": colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"]),
            "face_mouth": torch.cat([outputs["rgb_face"], outputs["rgb_mouth"]], dim=1).clamp(0, 1),
        }
        return metrics, images

