"""SAHS-NeRF's second training stage and image-space post-process: texture enhancement (paper section 2.4).

Stage II trains G (``field_components/texture_enhancer.py``) with L2 between the enhanced render I_f and the ground
truth while the NeRF is frozen. It is the end of the same ``ns-train`` run, from the datamanager's
``fine_stage_fraction`` of the steps on: the datamanager then hands out square patches (``batch["patch_size"]``), each
rendered by the frozen NeRF, composited over the background and enhanced as one image. (The authors enhance whole stage-I frames, one per step; patches large against
G's receptive field cost a fraction of that per step and see more frames.)

At render time every consumer gets the enhanced frame through :meth:`TalkingHeadModel.post_process`. G runs at the
resolution it was trained at (the training frames'): the frame is resized to it, and the residual G adds is resized
back, so a 512-px export is enhanced like the 128-px training patches were.

Reference frame I_s (the paper does not say which): the training frame with open eyes (blink below 0.1) whose
expression is closest to the clip's mean, i.e. a neutral, eyes-open face; the first training frame when the
dataset has no such signals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int64
from torch import Tensor, nn

from dtnerf_ns.methods.sahs.field_components.texture_enhancer import TextureEnhancer


def choose_reference_frame(
    train_frames: Int64[Tensor, "n"], blink: Float[Tensor, "frames"], expression: Float[Tensor, "frames dims"]
) -> int:
    """A neutral, eyes-open training frame (see module docstring)."""
    candidates = train_frames
    open_eyes = candidates[blink[candidates] < 0.1]
    if len(open_eyes):
        candidates = open_eyes
    if expression.shape[-1] == 0 or len(candidates) == 0:
        return int(train_frames[0]) if len(train_frames) else 0
    codes = expression[candidates]
    train_codes = expression[train_frames]
    spread = train_codes.std(dim=0).clamp_min(1e-6)
    distance = (((codes - train_codes.mean(dim=0)) / spread) ** 2).sum(dim=-1)
    return int(candidates[int(torch.argmin(distance))])


class TextureStage(nn.Module):
    """G, its reference frame and the resolution it was trained at.

    Args:
        reference_frame: dataset frame index of I_s (see :func:`choose_reference_frame`).
        data_dir: the dataset (for the reference frame's image).
        channels: G's channels per scale.
        feature_dim: size of the driving feature G takes (the audio code in audio mode), 0 for none.
    """

    def __init__(self, reference_frame: int, data_dir: Optional[Path], channels: Sequence[int], feature_dim: int):
        super().__init__()
        self.enhancer = TextureEnhancer(channels, feature_dim)
        self.data_dir = data_dir
        self.uses_feature = feature_dim > 0
        # Saved with the model: which frame G was trained with, at which size, and for how many steps.
        self.register_buffer("reference_frame", torch.tensor(reference_frame, dtype=torch.long))
        self.register_buffer("size", torch.zeros(2, dtype=torch.long))
        self.register_buffer("trained_steps", torch.zeros((), dtype=torch.long))
        self._references: Dict[Tuple[int, int], Tensor] = {}
        self._textures: Dict[Tuple[int, int, int], List[Tensor]] = {}  # E_t(I_s) at render time, per size and G

    @property
    def trained(self) -> bool:
        return int(self.trained_steps) > 0 and int(self.size[0]) > 0

    def reference(self, height: int, width: int, device: torch.device) -> Float[Tensor, "1 3 h w"]:
        """The reference frame at (height, width), read once per size."""
        key = (height, width)
        if key not in self._references:
            from data_processing import dataset_layout  # noqa: PLC0415
            from data_processing.io_utils import read_image  # noqa: PLC0415

            path = None if self.data_dir is None else dataset_layout.image_path(self.data_dir, int(self.reference_frame))
            if path is None or not path.is_file():
                raise FileNotFoundError(
                    f"texture enhancement: the reference frame {path} is missing; it is read from the training dataset"
                )
            image = torch.from_numpy(read_image(path, size=(width, height))).float() / 255.0
            self._references[key] = image.permute(2, 0, 1)[None]
        return self._references[key].to(device)

    def enhance_patches(
        self,
        rendered: Float[Tensor, "rays 3"],
        indices: Int64[Tensor, "rays 3"],
        patch_size: int,
        feature: Optional[Float[Tensor, "rays f"]],
    ) -> Float[Tensor, "rays 3"]:
        """I_f of each square patch of a patch batch (rays patch-major, row-major; ``indices`` = camera, y, x)."""
        height, width = (int(v) for v in self.size)
        p = patch_size
        patches = rendered.reshape(-1, p, p, 3).permute(0, 3, 1, 2)
        corners = indices.reshape(-1, p * p, 3)[:, 0, 1:].long()  # top-left pixel of each patch
        reference = self.reference(height, width, rendered.device)[0]
        ys = (corners[:, :1] + torch.arange(p, device=corners.device)).clamp(max=height - 1)  # [n, p]
        xs = (corners[:, 1:] + torch.arange(p, device=corners.device)).clamp(max=width - 1)
        crops = reference[:, ys[:, :, None], xs[:, None, :]].permute(1, 0, 2, 3)  # [n, 3, p, p]
        codes = None if not self.uses_feature or feature is None else feature.reshape(-1, p * p, feature.shape[-1])[:, 0]
        enhanced = self.enhancer(patches, crops, codes)
        return enhanced.permute(0, 2, 3, 1).reshape(-1, 3)

    def enhance_frame(self, rgb: Float[Tensor, "h w 3"], feature: Optional[Float[Tensor, "1 f"]]) -> Float[Tensor, "h w 3"]:
        """I_f of a whole composited frame, G applied at its training resolution (see module docstring)."""
        height, width = (int(v) for v in self.size)
        image = rgb.permute(2, 0, 1)[None].float()
        resized = (height, width) != tuple(image.shape[-2:])
        small = image
        if resized and image.shape[-2] >= height:
            small = F.interpolate(image, size=(height, width), mode="area")
        elif resized:  # the viewer's quick low-resolution frames
            small = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False)
        key = (height, width, int(self.trained_steps))  # a G still training (viewer) gets fresh textures
        if key not in self._textures or torch.is_grad_enabled():
            self._textures = {key: self.enhancer.textures(self.reference(height, width, rgb.device))}
        residual = self.enhancer.residual(small, feature=feature, textures=self._textures[key])
        if resized:
            residual = F.interpolate(residual, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return (image + residual)[0].permute(1, 2, 0)
