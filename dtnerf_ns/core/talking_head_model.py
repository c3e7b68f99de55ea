"""What every talking-head method shares: per-frame conditioning, the backdrop, compositing, and the final frame.

A method subclasses :class:`TalkingHeadModel` and implements nerfstudio's ``get_outputs(ray_bundle)`` returning at
least ``rgb_head`` (premultiplied colour of what its field renders) and ``accumulation``; frames and their signals
come from ``self.conditioning``. Everything that shows a frame then goes through one interface,
:meth:`TalkingHeadModel.render_final_frame` ("the final frame for this camera and frame"): the viewer and ``ns-render``
(through ``get_outputs_for_camera``), ``dtnerf-eval`` and ``dtnerf-render``. It composites the layers over the
method's backdrop (:mod:`~dtnerf_ns.core.compositing`) and applies the method's image-space :meth:`post_process`
(identity here; SAHS-NeRF's texture network goes there), keeping the unprocessed frame as ``rgb_raw``.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, Iterator, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.models.base_model import Model, ModelConfig
from torch import Tensor

from dtnerf_ns.core.compositing import BackdropKind, Backdrops, composite
from dtnerf_ns.core.conditioning import FrameConditioning
from dtnerf_ns.core.data.talking_head_datamanager import TalkingHeadConfigError
from dtnerf_ns.core.data.talking_head_dataset import BACKGROUND, HEADLESS, MOUTH_MASK
from dtnerf_ns.core.field_components.audio_augmentation import AudioFeatureAugmentation
from dtnerf_ns.core.compilation import CompileMode, set_compile_mode


@dataclass
class TalkingHeadModelConfig(ModelConfig):
    """Settings every talking-head method shares (per-frame conditioning)."""

    _target: Type = field(default_factory=lambda: TalkingHeadModel)
    """Target class to instantiate."""
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
    compile: CompileMode = "auto"
    """Run the fields' hot paths (torch hash-table lookups, the methods' MLP blocks) as torch.compile kernels: same
    values, faster CPU steps, kernels built in the first steps (cached on disk for later runs). "auto": on a CPU;
    "on": also on CUDA (Triton, untested); "off": never. Falls back to eager, with one warning, where it cannot
    compile. tiny-cuda-nn grids are never affected. See dtnerf_ns/core/compilation.py."""

    def saved_setting(self, name: str, before: object) -> object:
        """``name``'s value, or ``before`` for a run saved before the setting existed.

        nerfstudio reloads a run's config.yml by setting the saved attributes on a bare instance, so a field added
        since then is absent from the instance and would read as today's default; ``before`` is the behaviour the
        run was trained with (its checkpoint has no weights for the newer default).
        """
        return vars(self).get(name, before)


class TalkingHeadModel(Model):
    """Base of every method of this package (see module docstring). Needs the talking-head-data metadata."""

    config: TalkingHeadModelConfig
    backdrop_kind: ClassVar[BackdropKind] = "headless"
    """What the method's render is composited over: the frame's head-less image, or the static background."""
    paper: ClassVar[Tuple[str, Dict[str, float]]] = ("", {})
    """The method's paper and its own result row (metric name -> value), set beside the model in dtnerf-eval's table."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except TalkingHeadConfigError as err:  # a setting that cannot work: one line, no traceback through nerfstudio
            print(f"{type(self).__name__}: {err}", file=sys.stderr, flush=True)
            sys.exit(1)
        set_compile_mode(self, self.config.compile)

    @property
    def driven_by_audio(self) -> bool:
        """Whether audio drives the model (dtnerf-render swaps in new speech); a method driven otherwise says False."""
        return True

    def populate_modules(self):
        super().populate_modules()
        metadata = self.kwargs.get("metadata") or {}
        c = self.config
        augmentation = AudioFeatureAugmentation(
            formant_shift=c.audio_augment_formant_shift,
            tilt=c.audio_augment_tilt,
            gain=c.audio_augment_gain,
            noise=c.audio_augment_noise,
        )
        self.conditioning = FrameConditioning(metadata, c.audio_dim, c.audio_window, c.audio_smoothing, augmentation)
        self.data_dir: Optional[Path] = Path(metadata["data_dir"]) if metadata.get("data_dir") else None
        self.backdrops = Backdrops(self.data_dir, self.backdrop_kind)
        self._driven = False

    @property
    def num_frames(self) -> int:
        return self.conditioning.num_frames

    @contextlib.contextmanager
    def driven_by(self, **signals: Any) -> Iterator[None]:
        """Drive the model with another sequence (see :meth:`FrameConditioning.driven_by`). Inside the block frames
        are not dataset frames, so no backdrop is looked up: pass one to :meth:`render_final_frame`."""
        with self.conditioning.driven_by(**signals):
            self._driven, driven = True, self._driven
            try:
                yield
            finally:
                self._driven = driven

    @property
    def uses_patch_stage(self) -> bool:
        """Whether the model trains on the datamanager's patch stage when one is set (a method's hook: SAHS-NeRF
        without texture enhancement has no use for it, and the pipeline then turns it off)."""
        return True

    def ray_class_probabilities(self, step: int) -> Optional[Tensor]:
        """Probability per semantic class that the datamanager draws a training ray from it (on the CPU), or None to
        keep its own sampling (a method's hook: SAHS-NeRF's dynamic weighted sampling)."""
        return None

    # ------------------------------------------------------------------ training-time compositing
    def batch_backdrop(self, batch: Dict[str, Any]) -> Float[Tensor, "rays 3"]:
        key = HEADLESS if self.backdrop_kind == "headless" else BACKGROUND
        if key not in batch:
            raise KeyError(f"the batch has no '{key}' pixels: add it to --pipeline.datamanager.pixel-maps")
        return batch[key].to(self.device)

    def composite_batch(self, outputs: Dict[str, Tensor], batch: Dict[str, Any]) -> Tuple[Tensor, Tensor]:
        """(ground truth, composited prediction) of a batch, both [..., 3] on the model's device."""
        gt = batch["image"][..., :3].to(self.device)
        return gt, composite(outputs["rgb_head"], outputs["accumulation"], self.batch_backdrop(batch))

    @torch.no_grad()
    def image_metrics(self, gt: Float[Tensor, "h w 3"], pred: Float[Tensor, "h w 3"], batch: Dict[str, Any]) -> Dict[str, float]:
        """PSNR and SSIM of a whole eval image, and PSNR over its mouth mask when the batch has one."""
        from torchmetrics.functional import structural_similarity_index_measure  # noqa: PLC0415

        metrics = {"psnr": float(-10 * torch.log10(torch.mean((pred - gt) ** 2).clamp_min(1e-10)))}
        metrics["ssim"] = float(
            structural_similarity_index_measure(pred.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None], data_range=1.0)
        )
        mouth = batch.get(MOUTH_MASK)
        if mouth is not None:
            m = mouth.to(self.device).reshape(gt.shape[:2]) > 0.5
            if bool(m.any()):
                metrics["mouth_psnr"] = float(-10 * torch.log10(torch.mean((pred[m] - gt[m]) ** 2).clamp_min(1e-10)))
        return metrics

    # ------------------------------------------------------------------ final frames
    def post_process(self, rgb: Float[Tensor, "h w 3"], frame: int) -> Float[Tensor, "h w 3"]:
        """Image-space post-process of a composited frame (a method's hook; identity here)."""
        return rgb

    def camera_frame(self, camera: Cameras) -> int:
        """The frame a single camera shows (from its time; frame 0 without one)."""
        if camera.times is None:
            return 0
        return int(self.conditioning.frames_of_times(camera.times.reshape(-1)[:1])[0])

    @torch.no_grad()
    def render_final_frame(
        self,
        camera: Cameras,
        backdrop: Optional[Float[Tensor, "h w 3"]] = None,
        output_size: Optional[Tuple[int, int]] = None,
        obb_box: Optional[OrientedBox] = None,
        region: Optional[Bool[Tensor, "h w"]] = None,
    ) -> Dict[str, Tensor]:
        """The final frame for this camera and its frame (from ``camera.times``).

        The layers are rendered at the camera's resolution (only the rays inside ``region``, when given: elsewhere
        they are empty) and, when ``output_size`` = (height, width) differs, resized to it before compositing over
        ``backdrop`` (default: the method's backdrop of the camera's dataset frame, or black where there is none,
        e.g. while :meth:`driven_by`).

        Returns:
            nerfstudio's outputs plus ``rgb`` (the final frame) and, when :meth:`post_process` is not the identity,
            ``rgb_raw`` (the frame before it).
        """
        if region is None:
            outputs = Model.get_outputs_for_camera(self, camera, obb_box=obb_box)
        else:
            outputs = self._render_region(camera, region.to(self.device), obb_box)
        height, width = output_size or outputs["rgb_head"].shape[:2]
        if (height, width) != tuple(outputs["rgb_head"].shape[:2]):
            layers = torch.cat([outputs["rgb_head"], outputs["accumulation"]], dim=-1).permute(2, 0, 1)[None].float()
            layers = F.interpolate(layers, size=(height, width), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
            outputs["rgb_head"], outputs["accumulation"] = layers[..., :3], layers[..., 3:]
        frame = self.camera_frame(camera)
        if backdrop is None and not self._driven:
            backdrop = self.backdrops.tensor(frame, (width, height), self.device)
        rgb = outputs["rgb_head"] if backdrop is None else composite(outputs["rgb_head"], outputs["accumulation"], backdrop.to(self.device))
        final = self.post_process(rgb, frame)
        if final is not rgb:
            outputs["rgb_raw"] = rgb
        outputs["rgb"] = final
        return outputs

    def _render_region(self, camera: Cameras, region: Bool[Tensor, "h w"], obb_box: Optional[OrientedBox]) -> Dict[str, Tensor]:
        """nerfstudio's per-camera outputs, computed for the rays inside ``region`` only (zeros elsewhere)."""
        rays = camera.generate_rays(camera_indices=0, keep_shape=True, obb_box=obb_box)
        height, width = rays.shape
        inside = torch.nonzero(region.reshape(-1)).squeeze(1)
        if len(inside) == 0:
            inside = inside.new_zeros(1)  # nerfstudio renders no empty bundle: one ray keeps the shapes
        subset = rays.flatten()[inside].reshape((len(inside), 1))
        outputs = self.get_outputs_for_camera_ray_bundle(subset)
        full = {}
        for key, value in outputs.items():
            values = value.reshape(len(inside), -1)
            full[key] = values.new_zeros(height * width, values.shape[-1]).index_copy(0, inside, values).view(height, width, -1)
        return full

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box: Optional[OrientedBox] = None) -> Dict[str, Tensor]:
        """nerfstudio's per-camera render (viewer, ns-render, eval images), with ``rgb`` the final frame."""
        return self.render_final_frame(camera, obb_box=obb_box)
