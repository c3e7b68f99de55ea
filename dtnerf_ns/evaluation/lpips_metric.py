"""LPIPS (Zhang et al. 2018, v0.1, AlexNet trunk), as the DT-NeRF / SAHS-NeRF / ER-NeRF tables report it.

Whole frame: the usual LPIPS value (images scaled to [-1, 1]). Face region: LPIPS's spatial map (each layer's distance
map upsampled to the image, summed over layers: the ``spatial=True`` output of the lpips package) averaged over the
face-mask pixels, the same "metric map, masked mean" definition as the face SSIM.

The AlexNet trunk needs torchvision's ImageNet weights (``alexnet-owt-7be5be79.pth``), taken from the torch hub cache
or a given file and loaded into the lpips network built without them, so nothing is ever downloaded. LPIPS's own linear
layers ship inside the lpips package.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Dict, Optional

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from dtnerf_ns.evaluation.weights import find_weights, load_into, load_state_dict

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
"""torchvision's AlexNet ImageNet weights (``AlexNet_Weights.IMAGENET1K_V1``), as cached by torch hub."""
WHAT = "LPIPS AlexNet weights"

# torchvision alexnet.features index -> lpips alexnet slice holding it (lpips keeps the indices as module names).
_SLICE_OF_FEATURE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 3, 6: 3, 7: 3, 8: 4, 9: 4, 10: 5, 11: 5}


def _trunk_state(alexnet_state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """torchvision AlexNet ``features.*`` tensors renamed to lpips' ``slice<k>.*`` (classifier tensors dropped)."""
    state = {}
    for key, value in alexnet_state.items():
        parts = key.split(".")
        if parts[0] == "features":
            state[f"slice{_SLICE_OF_FEATURE[int(parts[1])]}.{'.'.join(parts[1:])}"] = value
    return state


class LPIPSMetric:
    """LPIPS of a render against its ground truth, whole frame and face mask (see module docstring)."""

    def __init__(self, device: torch.device, weights: Optional[Path] = None):
        """Raises WeightsUnavailable when the AlexNet weights are neither given nor in the torch hub cache."""
        path = find_weights(weights, [ALEXNET_FILE], WHAT, "--lpips-weights")
        trunk = _trunk_state(load_state_dict(path, WHAT))
        import lpips  # noqa: PLC0415 - lazy: only when weights exist

        # pnet_rand=True: build the trunk without asking torchvision for weights (that would download them); the
        # cached ones are loaded below. Silence lpips' set-up chatter and torchvision's deprecation warnings.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
        load_into(net.net, trunk, path, WHAT)
        self.net = net.eval().requires_grad_(False).to(device)
        self.device = device

    @torch.no_grad()
    def __call__(
        self, pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"], face_mask: Bool[Tensor, "H W"]
    ) -> Dict[str, float]:
        """``lpips`` (whole frame) and ``lpips_face`` (spatial map over the face mask; NaN for an empty mask)."""
        a = pred.to(self.device).permute(2, 0, 1)[None].float()
        b = gt.to(self.device).permute(2, 0, 1)[None].float()
        self.net.spatial = False
        whole = float(self.net(a, b, normalize=True).mean())
        self.net.spatial = True  # same weights, per-pixel output
        spatial = self.net(a, b, normalize=True)[0, 0]
        mask = face_mask.to(self.device)
        face = float(spatial[mask].mean()) if bool(mask.any()) else float("nan")
        return {"lpips": whole, "lpips_face": face}
