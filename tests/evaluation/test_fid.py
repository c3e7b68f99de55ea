"""FID: Fréchet distance of Gaussians with known statistics, feature sets with known answers, missing weights."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from dtnerf_ns.evaluation import fid, weights
from dtnerf_ns.evaluation.fid import FIDMetric, fid_from_features, frechet_distance
from dtnerf_ns.evaluation.weights import WeightsUnavailable


def test_frechet_distance_of_isotropic_gaussians():
    d = 5
    mu1, mu2 = np.zeros(d), np.full(d, 2.0)
    a, b = 1.5, 0.5
    # |mu1 - mu2|^2 + Tr(a^2 I + b^2 I - 2 a b I) = d * 4 + d * (a - b)^2
    assert frechet_distance(mu1, a * a * np.eye(d), mu2, b * b * np.eye(d)) == pytest.approx(d * 4 + d * (a - b) ** 2)


def test_frechet_distance_matches_the_matrix_square_root_definition():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T, b @ b.T
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    reference = (m1 - m2) @ (m1 - m2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(reference, rel=1e-9)


def test_fid_of_feature_sets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)
    # Shifting every feature by c moves the mean by c in each of the 8 dimensions and keeps the covariance.
    assert fid_from_features(x, x + 0.5) == pytest.approx(8 * 0.25, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(x[:1], x)


def test_unavailable_without_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "hub_checkpoint_dir", lambda: tmp_path)
    with pytest.raises(WeightsUnavailable, match="pt_inception-2015-12-05-6726825d.pth not in the torch hub cache"):
        FIDMetric(torch.device("cpu"))
    garbage = tmp_path / "inception.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailable, match="cannot read"):
        FIDMetric(torch.device("cpu"), garbage)
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(WeightsUnavailable, match="does not fit"):
        FIDMetric(torch.device("cpu"), wrong)


def test_features_are_taken_from_8_bit_frames(tmp_path, monkeypatch):
    # A stand-in network (mean colour per channel) to check the input the Inception network would get.
    cached = tmp_path / fid.INCEPTION_FILES[1]
    cached.write_bytes(b"")
    monkeypatch.setattr(weights, "hub_checkpoint_dir", lambda: tmp_path)
    seen = {}

    class MeanColour(torch.nn.Module):
        def forward(self, x):
            seen["dtype"], seen["shape"] = x.dtype, tuple(x.shape)
            return (x.float().mean(dim=(2, 3)),)

    monkeypatch.setattr(fid, "_load_inception", lambda path: MeanColour() if path == cached else None)
    metric = FIDMetric(torch.device("cpu"))
    images = torch.stack([torch.full((8, 8, 3), 0.5), torch.full((8, 8, 3), 1.2)])
    features = metric.features(images)
    assert seen == {"dtype": torch.uint8, "shape": (2, 3, 8, 8)}
    np.testing.assert_allclose(features, [[128, 128, 128], [255, 255, 255]])
