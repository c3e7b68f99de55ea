"""PSNR / SSIM / L1, whole frame and face mask, on image pairs with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from dtnerf_ns.evaluation.image_metrics import image_metrics, l1, psnr, ssim

C1 = 0.01**2  # SSIM's (K1 * data range)^2


def _half_mask(size: int = 32) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[:, : size // 2] = True
    return mask


def test_psnr_and_l1_of_a_constant_offset():
    gt = torch.full((32, 32, 3), 0.5)
    assert psnr(gt + 0.1, gt) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    assert l1(gt + 0.1, gt) == pytest.approx(0.1, abs=1e-6)
    assert psnr(gt, gt) == pytest.approx(100.0)  # MSE clamped at 1e-10


def test_region_metrics_only_see_the_mask():
    gt = torch.full((32, 32, 3), 0.5)
    pred = gt.clone()
    mask = _half_mask()
    pred[mask] += 0.1  # error 0.1 inside the mask
    pred[~mask] -= 0.3  # error 0.3 outside it
    assert psnr(pred, gt, mask) == pytest.approx(20.0, abs=1e-4)
    assert l1(pred, gt, mask) == pytest.approx(0.1, abs=1e-6)
    assert psnr(pred, gt) == pytest.approx(-10 * math.log10((0.01 + 0.09) / 2), abs=1e-4)
    assert l1(pred, gt) == pytest.approx(0.2, abs=1e-6)
    empty = torch.zeros(32, 32, dtype=torch.bool)
    assert math.isnan(psnr(pred, gt, empty)) and math.isnan(l1(pred, gt, empty)) and math.isnan(ssim(pred, gt, empty))


def test_ssim_known_values():
    torch.manual_seed(0)
    x = torch.rand(48, 48, 3)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-5)
    # Uniform images a, b: contrast-structure term is 1, luminance term is (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.2, 0.4
    expected = (2 * a * b + C1) / (a * a + b * b + C1)
    ua, ub = torch.full((48, 48, 3), a), torch.full((48, 48, 3), b)
    assert ssim(ua, ub) == pytest.approx(expected, abs=1e-5)
    assert ssim(ua, ub, _half_mask(48)) == pytest.approx(expected, abs=1e-5)


def test_masked_ssim_is_one_where_the_images_agree():
    torch.manual_seed(0)
    gt = torch.rand(48, 48, 3)
    pred = gt.clone()
    pred[:, 24:] = torch.rand(48, 24, 3)  # differs on the right half only
    left = torch.zeros(48, 48, dtype=torch.bool)
    left[:, :18] = True  # more than the 5 px window radius away from the right half
    assert ssim(pred, gt, left) == pytest.approx(1.0, abs=1e-5)
    assert ssim(pred, gt) < 0.8


def test_image_metrics_keys_and_consistency():
    torch.manual_seed(1)
    gt = torch.rand(32, 32, 3)
    pred = (gt + 0.05 * torch.randn(32, 32, 3)).clamp(0, 1)
    full = torch.ones(32, 32, dtype=torch.bool)
    values = image_metrics(pred, gt, full)
    assert set(values) == {"psnr", "psnr_face", "ssim", "ssim_face", "l1", "l1_face"}
    for name in ("psnr", "ssim", "l1"):  # a mask covering the frame gives the whole-frame value
        assert values[f"{name}_face"] == pytest.approx(values[name], rel=1e-5)
