"""Fréchet Inception Distance (Heusel et al. 2017) between the rendered and the ground-truth test frames.

Features: the 2048-d pool3 activations of the TensorFlow FID InceptionV3 (``pt_inception-2015-12-05``, the network of
pytorch-fid / torch-fidelity / the original TTUR code) on frames resized to 299x299, through torch-fidelity's port.
Distance: ``|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` of the two feature sets' means and covariances, with
``Tr((S_r S_g)^(1/2))`` as the sum of the square roots of the eigenvalues of ``S_r S_g`` (as torchmetrics: stable when
the covariances are singular, i.e. with fewer frames than 2048; FID from few frames is biased upwards, so compare runs
on the same test set only).

The face-region FID is the same on frames with everything outside the face mask set to black (SAHS-NeRF's "_face"
rows isolate the face the same way).

Weights come from the torch hub cache (torch-fidelity's or pytorch-fid's file name) or ``--fid-weights``; never
downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from dtnerf_ns.evaluation.weights import WeightsUnavailable, find_weights, first_line, load_state_dict

INCEPTION_FILES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
"""Cache names of the FID InceptionV3 weights: torch-fidelity's download, then pytorch-fid's (same tensor names)."""
WHAT = "FID InceptionV3 weights"


def frechet_distance(
    mu1: Float[np.ndarray, "D"],
    sigma1: Float[np.ndarray, "D D"],
    mu2: Float[np.ndarray, "D"],
    sigma2: Float[np.ndarray, "D D"],
) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    diff = mu1 - mu2
    # S1 S2 is similar to the PSD matrix S1^1/2 S2 S1^1/2: its eigenvalues are real and >= 0 up to rounding.
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2).astype(np.complex128)
    trace_sqrt = float(np.sqrt(eigenvalues).real.sum())
    # Clamped at 0: equal sets can come out a hair below it through rounding in the eigenvalues.
    return max(0.0, float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt))


def fid_from_features(a: Float[np.ndarray, "N D"], b: Float[np.ndarray, "M D"]) -> float:
    """FID between two feature sets (each needs at least 2 rows for a covariance)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"FID needs at least 2 frames per set, got {len(a)} and {len(b)}")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def _load_inception(path: Path) -> torch.nn.Module:
    """torch-fidelity's FID InceptionV3 returning pool3 features, with the weights in ``path``."""
    load_state_dict(path, WHAT)  # tensors only: torch-fidelity itself unpickles the file without that check
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3  # noqa: PLC0415

    try:
        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    except RuntimeError as err:  # strict load_state_dict: not these weights
        detail = first_line(err)[:200]
        raise WeightsUnavailable(f"{WHAT}: {path} does not fit torch-fidelity's InceptionV3 ({detail})") from err


class FIDMetric:
    """Pool3 features of frames (see module docstring); FID between two sets with :func:`fid_from_features`."""

    def __init__(self, device: torch.device, weights: Optional[Path] = None):
        """Raises WeightsUnavailable when the Inception weights are neither given nor in the torch hub cache."""
        self.net = _load_inception(find_weights(weights, INCEPTION_FILES, WHAT, "--fid-weights")).to(device).eval()
        self.device = device

    @torch.no_grad()
    def features(self, images: Float[Tensor, "B H W 3"]) -> Float[np.ndarray, "B D"]:
        """Features of images in [0, 1] (quantised to 8 bits, as the network expects decoded frames)."""
        x = (images.to(self.device).clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 3, 1, 2)
        out = self.net(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.reshape(len(images), -1).double().cpu().numpy()
