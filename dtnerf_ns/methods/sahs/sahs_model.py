"""SAHS-NeRF (Jin et al., Pattern Recognition Letters 2024): semantic-aware hyper-space deformable NeRF.

Each ray's frame gives its head pose p and facial feature gamma (audio code or expression coefficients); the field
deforms every sample into a canonical hyper-space and reads colour, density and 12 semantic logits from one template
(``sahs_field.py``). Head and torso are rendered together and composited over the static background (the core's
"background" backdrop). Loss: photometric MSE + λ semantic cross-entropy (Eqs. 12-14), on the coarse and fine renders
of the paper's template, or on the render plus nerfacto's proposal losses with the hash template. The running
per-class losses set the datamanager's ray probabilities (Eq. 3, ``dynamic_ray_weights.py``). The texture
enhancement network G is trained in the datamanager's patch stage with the NeRF frozen, and enhances every final
frame (``texture_stage.py``).
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.model_components.losses import distortion_loss, interlevel_loss
from nerfstudio.model_components.ray_samplers import PDFSampler, ProposalNetworkSampler, UniformSampler
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer
from nerfstudio.model_components.scene_colliders import AABBBoxCollider
from nerfstudio.utils import colormaps
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor, nn
from torch.nn import Parameter

from data_processing.semantic_classes import CLASS_COLOURS, SEMANTIC_CLASSES
from dtnerf_ns.core.compositing import composite
from dtnerf_ns.core.data.talking_head_datamanager import TalkingHeadConfigError
from dtnerf_ns.core.data.talking_head_dataset import SEMANTICS
from dtnerf_ns.core.field_components.lean_hash_encoding import LeanHashMLPDensityField
from dtnerf_ns.core.talking_head_model import TalkingHeadModel
from dtnerf_ns.methods.sahs.dynamic_ray_weights import DynamicRayWeights, class_weight_vector
from dtnerf_ns.methods.sahs.field_components.feature_grid import FeatureGrid3D
from dtnerf_ns.methods.sahs.field_components.hyper_space_deformation import HyperSpaceDeformation
from dtnerf_ns.methods.sahs.field_components.semantic_templates import SemanticTemplate
from dtnerf_ns.methods.sahs.sahs_field import SEMANTICS as FIELD_SEMANTICS
from dtnerf_ns.methods.sahs.sahs_field import SAHSField
from dtnerf_ns.methods.sahs.sahs_model_config import SAHSModelConfig
from dtnerf_ns.methods.sahs.semantic_rendering import render_semantics, semantic_cross_entropy
from dtnerf_ns.methods.sahs.texture_stage import TextureStage, choose_reference_frame


class SAHSModel(TalkingHeadModel):
    """See module docstring."""

    config: SAHSModelConfig
    backdrop_kind = "background"
    # Table 2, audio-driven (AD-NeRF's videos).
    paper = ("SAHS-NeRF", {"l1": 0.015, "psnr": 27.90, "ssim": 0.956, "lpips": 0.042, "sync": 3.984})

    @property
    def driven_by_audio(self) -> bool:
        return self.config.driver == "audio"

    def populate_modules(self):
        super().populate_modules()
        c = self.config
        if c.driver == "expression" and self.conditioning.expression.shape[-1] == 0:
            raise TalkingHeadConfigError(
                "--pipeline.model.driver expression needs the dataset's expression.npy: re-run dtnerf-process, or use "
                "--pipeline.model.driver audio."
            )
        feature_dim = c.audio_dim if c.driver == "audio" else int(self.conditioning.expression.shape[-1])
        # Expression coefficients are PCA coordinates of landmarks (~0.2 for the first, ~0.001 for the last): centred
        # and divided by the first's spread over the training frames, so they weigh like the other inputs while the
        # noisy last components stay small (no whitening). Saved with the model.
        train = self.conditioning.expression[self.conditioning.train_frame_indices]
        spread = train.std(dim=0).max().clamp(min=1e-6) if train.numel() else torch.ones(())
        self.register_buffer("expression_mean", train.mean(dim=0) if train.numel() else torch.zeros(feature_dim))
        self.register_buffer("expression_scale", 1.0 / spread)
        deformation = HyperSpaceDeformation(
            feature_dim, use_global=c.use_deformation, use_ambient=c.use_deformation and c.use_ambient,
            ambient_dim=c.ambient_dim, position_frequencies=c.position_frequencies, pose_frequencies=c.pose_frequencies,
            deform_layers=c.deform_layers, deform_width=c.deform_width, ambient_layers=c.ambient_layers,
            ambient_width=c.ambient_width,
        )  # fmt: skip
        grid = FeatureGrid3D(c.feature_grid_resolution, c.feature_grid_channels) if c.feature_grid_channels > 0 else None

        def template() -> SemanticTemplate:
            return SemanticTemplate(
                c.template, deformation.ambient_dim, len(SEMANTIC_CLASSES), c.feature_grid_channels,
                mlp_layers=c.mlp_layers, mlp_width=c.mlp_width, branch_layers=c.branch_layers,
                branch_width=c.branch_width, position_frequencies=c.position_frequencies,
                ambient_frequencies=c.ambient_frequencies, hash_levels=c.hash_levels, hash_log2_size=c.hash_log2_size,
                hash_max_res=c.hash_max_res, geo_feat_dim=c.geo_feat_dim, hash_implementation=c.implementation,
            )  # fmt: skip

        aabb = self.scene_box.aabb
        self.field = SAHSField(aabb, deformation, template(), grid)
        if c.template == "mlp":  # the paper's hierarchical sampling: coarse and fine networks, one deformation
            self.field_coarse: Optional[SAHSField] = SAHSField(aabb, deformation, template(), grid)
            self.sampler_uniform = UniformSampler(num_samples=c.num_coarse_samples)
            self.sampler_pdf = PDFSampler(num_samples=c.num_fine_samples)
        else:
            self.field_coarse = None
            self.proposal_networks = nn.ModuleList(
                [LeanHashMLPDensityField(aabb, **args, implementation=c.implementation) for args in c.proposal_net_args_list]
            )

            def update_schedule(step: int) -> float:
                return np.clip(np.interp(step, [0, c.proposal_warmup], [0, c.proposal_update_every]), 1, c.proposal_update_every)

            self.proposal_sampler = ProposalNetworkSampler(
                num_nerf_samples_per_ray=c.num_nerf_samples_per_ray,
                num_proposal_samples_per_ray=c.num_proposal_samples_per_ray,
                num_proposal_network_iterations=len(c.proposal_net_args_list),
                update_sched=update_schedule,
                initial_sampler=UniformSampler(single_jitter=False),
            )
        self.collider = AABBBoxCollider(self.scene_box, near_plane=0.05)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="median")
        self.ray_weights = DynamicRayWeights(
            class_weight_vector(SEMANTIC_CLASSES, c.class_weights), c.class_loss_momentum, c.class_probability_floor
        )
        self._probabilities: Optional[Tensor] = None
        self.texture: Optional[TextureStage] = None
        if c.saved_setting("use_texture_enhancement", False):  # runs saved before TE existed have no G
            reference = choose_reference_frame(
                self.conditioning.train_frame_indices, self.conditioning.blink, self.conditioning.expression
            )
            feature_dim = c.audio_dim if c.driver == "audio" else 0  # the paper injects audio only
            self.texture = TextureStage(reference, self.data_dir, c.texture_channels, feature_dim)
        self._in_texture_stage = False

    # ------------------------------------------------------------------ training set-up
    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        templates = list(self.field.template.parameters())
        if self.field_coarse is not None:
            templates += list(self.field_coarse.template.parameters())  # deformation and grid are shared
        deformation = list(self.field.deformation.parameters())
        if self.field.feature_grid is not None:
            deformation += list(self.field.feature_grid.parameters())
        groups = {f"template_{self.config.template}": templates}
        if deformation:
            groups["deformation"] = deformation
        if self.config.driver == "audio":
            groups["audio"] = list(self.conditioning.audio_encoder.parameters())
        if self.field_coarse is None:
            groups["proposal_networks"] = list(self.proposal_networks.parameters())
        if self.texture is not None:
            groups["texture"] = list(self.texture.parameters())
        return groups

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        datamanager = getattr(training_callback_attributes.pipeline, "datamanager", None)
        self._set_up_texture_stage(datamanager)

        def set_step(step: int) -> None:
            self.step = step
            self._in_texture_stage = self.texture is not None and datamanager.in_fine_stage(step)

        callbacks = [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_step)]
        if self.field_coarse is None:
            callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.proposal_sampler.step_cb))
        return callbacks

    def _set_up_texture_stage(self, datamanager: Any) -> None:
        """TE on: the datamanager's patch stage trains G (refused without one). TE off: the pipeline has turned the
        stage off (:attr:`uses_patch_stage`)."""
        start = getattr(datamanager, "fine_stage_start", None)
        if self.texture is None:
            return
        if start is None:
            print(
                "sahs-nerf: texture enhancement is trained in the datamanager's patch stage: set "
                "--pipeline.datamanager.fine-stage-fraction (e.g. 0.9), or --pipeline.model.use-texture-enhancement False.",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(1)
        cameras = datamanager.train_dataset.cameras
        self.texture.size.copy_(torch.tensor([int(cameras.height.reshape(-1)[0]), int(cameras.width.reshape(-1)[0])]))
        CONSOLE.print(f"Texture enhancement: G trains from step {start} on (NeRF frozen), at {int(cameras.width.reshape(-1)[0])} px.")

    @property
    def uses_patch_stage(self) -> bool:
        return self.texture is not None  # the patch stage is G's

    def ray_class_probabilities(self, step: int) -> Optional[Tensor]:
        """Eq. 3's probabilities for the datamanager (CPU), refreshed every ``class_probability_refresh`` steps."""
        if not self.config.use_dynamic_sampling:
            return None
        if self._probabilities is None or step % max(1, self.config.class_probability_refresh) == 0:
            self._probabilities = self.ray_weights.probabilities().cpu()
        return self._probabilities

    # ------------------------------------------------------------------ rendering
    def _conditioning(self, ray_bundle: RayBundle) -> RayBundle:
        frames = self.conditioning.frames_of_rays(ray_bundle)
        shape = ray_bundle.origins.shape[:-1]
        if self.config.driver == "audio":
            feature = self.conditioning.audio_codes(frames)
        else:
            feature = (self.conditioning.expression[frames] - self.expression_mean) * self.expression_scale
        metadata = dict(ray_bundle.metadata or {})
        metadata["pose"] = self.conditioning.head_pose[frames].reshape(*shape, 6)
        metadata["feature"] = feature.reshape(*shape, -1)
        ray_bundle.metadata = metadata
        return ray_bundle

    def post_process(self, rgb: Tensor, frame: int) -> Tensor:
        """Texture enhancement of a final frame (identity without a trained G)."""
        if self.texture is None or not self.texture.trained:
            return rgb
        feature = None
        if self.texture.uses_feature:
            feature = self.conditioning.audio_codes(torch.tensor([frame], device=self.device))
        return self.texture.enhance_frame(rgb, feature)

    def _render(self, field: SAHSField, ray_samples: RaySamples) -> Tuple[Dict[str, Tensor], Tensor]:
        out = field(ray_samples)
        weights = ray_samples.get_weights(out[FieldHeadNames.DENSITY])
        rendered = {
            "rgb_head": torch.sum(weights * out[FieldHeadNames.RGB], dim=-2),  # premultiplied, over black
            "accumulation": self.renderer_accumulation(weights=weights),
            "depth": self.renderer_depth(weights=weights, ray_samples=ray_samples),
            "semantics": render_semantics(weights, out[FIELD_SEMANTICS]),
        }
        return rendered, weights

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Any]:
        if self.training and self._in_texture_stage:
            # Stage II: the frozen NeRF renders as at inference (no jitter, no audio augmentation) for G.
            with torch.no_grad():
                self.train(False)
                try:
                    outputs = self._render_rays(self._conditioning(ray_bundle))
                    outputs["texture_feature"] = ray_bundle.metadata["feature"].reshape(-1, ray_bundle.metadata["feature"].shape[-1])
                finally:
                    self.train(True)
            return outputs
        return self._render_rays(self._conditioning(ray_bundle))

    def _render_rays(self, ray_bundle: RayBundle) -> Dict[str, Any]:
        outputs: Dict[str, Any] = {}
        if self.field_coarse is not None:
            coarse_samples = self.sampler_uniform(ray_bundle)
            coarse, coarse_weights = self._render(self.field_coarse, coarse_samples)
            outputs.update({f"{key}_coarse": value for key, value in coarse.items()})
            fine_samples = self.sampler_pdf(ray_bundle, coarse_samples, coarse_weights)
            fine, _ = self._render(self.field, fine_samples)
        else:
            samples, weights_list, samples_list = self.proposal_sampler(ray_bundle, density_fns=[n.density_fn for n in self.proposal_networks])
            fine, weights = self._render(self.field, samples)
            if self.training:
                outputs["weights_list"] = weights_list + [weights]
                outputs["ray_samples_list"] = samples_list + [samples]
        outputs.update(fine)
        outputs["rgb"] = fine["rgb_head"]  # the core composites it over the background where one is known
        return outputs

    # ------------------------------------------------------------------ losses and metrics
    def _levels(self) -> List[str]:
        return ["", "_coarse"] if self.field_coarse is not None else [""]

    def _texture_batch(self, outputs: Dict[str, Any], batch: Dict[str, Any]) -> Tuple[Tensor, Tensor, Tensor]:
        """(ground truth, render, enhanced render) of a texture-stage patch batch (G runs once per batch)."""
        gt, raw = self.composite_batch(outputs, batch)
        if "rgb_enhanced" not in outputs:
            assert self.texture is not None
            feature = outputs.get("texture_feature") if self.texture.uses_feature else None
            indices = batch["indices"].to(self.device)
            outputs["rgb_enhanced"] = self.texture.enhance_patches(raw.clamp(0, 1), indices, int(batch["patch_size"]), feature)
        return gt, raw, outputs["rgb_enhanced"]

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        if self.training and self._in_texture_stage:
            gt, raw, enhanced = self._texture_batch(outputs, batch)
            return {
                "psnr": -10.0 * torch.log10(torch.mean((enhanced.detach() - gt) ** 2).clamp_min(1e-10)),
                "psnr_raw": -10.0 * torch.log10(torch.mean((raw - gt) ** 2).clamp_min(1e-10)),
            }
        gt, pred = self.composite_batch(outputs, batch)
        metrics = {"psnr": -10.0 * torch.log10(torch.mean((pred.detach() - gt) ** 2).clamp_min(1e-10))}
        if self.training and self.field_coarse is None:
            metrics["distortion"] = distortion_loss(outputs["weights_list"], outputs["ray_samples_list"])
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        c = self.config
        if self.training and self._in_texture_stage:  # stage II: L2 of I_f only (the NeRF gets no gradient)
            assert self.texture is not None
            gt, _, enhanced = self._texture_batch(outputs, batch)
            self.texture.trained_steps += 1  # on the device: no sync
            return {"texture_loss": c.texture_loss_mult * torch.mean((enhanced - gt) ** 2)}
        gt = batch["image"][..., :3].to(self.device)
        background = self.batch_backdrop(batch)
        labels = batch[SEMANTICS].to(self.device).reshape(-1) if SEMANTICS in batch else None
        loss_dict: Dict[str, Tensor] = {}
        per_ray = torch.zeros(gt.shape[0], device=self.device)
        for level in self._levels():
            pred = composite(outputs[f"rgb_head{level}"], outputs[f"accumulation{level}"], background)
            squared = ((pred - gt) ** 2).mean(dim=-1)
            loss_dict[f"rgb_loss{level}"] = squared.mean()
            per_ray = per_ray + squared.detach()
            if labels is not None and c.semantic_loss_mult > 0:
                cross_entropy = semantic_cross_entropy(outputs[f"semantics{level}"], labels)
                loss_dict[f"semantic_loss{level}"] = c.semantic_loss_mult * cross_entropy.mean()
                per_ray = per_ray + c.semantic_loss_mult * cross_entropy.detach()
        if self.training and labels is not None:
            self.ray_weights.update(per_ray, labels)
        if self.training and self.field_coarse is None:
            loss_dict["interlevel_loss"] = c.interlevel_loss_mult * interlevel_loss(outputs["weights_list"], outputs["ray_samples_list"])
            assert metrics_dict is not None and "distortion" in metrics_dict
            loss_dict["distortion_loss"] = c.distortion_loss_mult * metrics_dict["distortion"]
        return loss_dict

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        gt, pred = self.composite_batch(outputs, batch)
        raw = pred.clamp(0, 1)
        if "rgb_raw" in outputs:  # the final frame is the enhanced one (get_outputs_for_camera)
            pred = outputs["rgb"].to(gt).clamp(0, 1)
        pred = pred.clamp(0, 1)
        metrics = self.image_metrics(gt, pred, batch)
        if "rgb_raw" in outputs:
            metrics["psnr_raw"] = float(-10 * torch.log10(torch.mean((raw - gt) ** 2).clamp_min(1e-10)))
        colours = torch.tensor(CLASS_COLOURS, dtype=torch.float32, device=self.device) / 255.0
        labels = outputs["semantics"].argmax(dim=-1)
        images = {
            "img": torch.cat([gt, pred] + ([raw] if "rgb_raw" in outputs else []), dim=1),
            "semantics": colours[labels],
            "accumulation": colormaps.apply_colormap(outputs["accumulation"]),
            "depth": colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"]),
        }
        if SEMANTICS in batch:
            images["semantics"] = torch.cat([colours[batch[SEMANTICS].to(self.device).long()], images["semantics"]], dim=1)
        return metrics, images
