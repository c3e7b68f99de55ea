"""PSNR, SSIM and L1 of a render against its ground truth, over the whole frame and over a region mask.

Definitions (images in [0, 1], all three channels):

* PSNR = ``-10 log10(MSE)``; over a region, MSE is the mean over the region's pixels (MSE clamped at 1e-10, i.e. at
  most 100 dB, as nerfstudio does).
* L1 = mean absolute error (the SAHS-NeRF tables' L1), over all pixels or over the region's pixels.
* SSIM = Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03 (torchmetrics, as nerfstudio):
  the SSIM map of the whole frame, averaged over all pixels, or over the region's pixels only. (Masking the map, not
  cropping the images, keeps every window's statistics those of the full frame, so the face value is the face's share
  of the whole-frame SSIM.)

Over a dataset, each metric is the mean of its per-frame values (as ER-NeRF / AD-NeRF report PSNR); frames whose
region is empty are left out of the region's mean.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

Image = Float[Tensor, "H W 3"]
Mask = Bool[Tensor, "H W"]


def _region_mean(values: Float[Tensor, "H W C"], mask: Optional[Mask]) -> Tensor:
    """Mean over all pixels, or over the pixels where ``mask`` is set (NaN when it is empty)."""
    if mask is None:
        return values.mean()
    if not bool(mask.any()):
        return torch.tensor(float("nan"))
    return values[mask].mean()


def psnr(pred: Image, gt: Image, mask: Optional[Mask] = None) -> float:
    """PSNR in dB (data range 1) over the frame or the mask's pixels (NaN for an empty mask)."""
    mse = _region_mean((pred - gt) ** 2, mask)
    return float(-10.0 * torch.log10(mse.clamp_min(1e-10)))


def l1(pred: Image, gt: Image, mask: Optional[Mask] = None) -> float:
    """Mean absolute error over the frame or the mask's pixels (NaN for an empty mask)."""
    return float(_region_mean((pred - gt).abs(), mask))


def ssim_map(pred: Image, gt: Image) -> Float[Tensor, "H W"]:
    """Per-pixel SSIM (mean over channels); its mean over the frame is torchmetrics' SSIM of the two images."""
    _, full = structural_similarity_index_measure(
        pred.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None], data_range=1.0, return_full_image=True
    )
    return full[0].mean(dim=0)


def ssim(pred: Image, gt: Image, mask: Optional[Mask] = None) -> float:
    """SSIM over the frame, or the whole-frame SSIM map averaged over the mask's pixels (NaN for an empty mask)."""
    return float(_region_mean(ssim_map(pred, gt)[..., None], mask))


def image_metrics(pred: Image, gt: Image, face_mask: Mask) -> Dict[str, float]:
    """PSNR, SSIM and L1 of one frame, whole (``psnr``...) and over the face mask (``psnr_face``...)."""
    pred, gt, face_mask = pred.float(), gt.float(), face_mask.to(pred.device)
    smap = ssim_map(pred, gt)[..., None]
    return {
        "psnr": psnr(pred, gt),
        "psnr_face": psnr(pred, gt, face_mask),
        "ssim": float(_region_mean(smap, None)),
        "ssim_face": float(_region_mean(smap, face_mask)),
        "l1": l1(pred, gt),
        "l1_face": l1(pred, gt, face_mask),
    }
