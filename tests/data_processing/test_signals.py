import numpy as np

from data_processing.face_regions import LEFT_EYE_EAR, RIGHT_EYE_EAR
from data_processing.signals import blink_signal, expression_coefficients, eye_aspect_ratio


def _eyes(gap: float, n: int = 1) -> np.ndarray:
    """Landmarks with both eyes 1 wide and lids ``gap`` apart."""
    lm = np.zeros((n, 478, 3))
    for p1, p2, p3, p4, p5, p6 in (RIGHT_EYE_EAR, LEFT_EYE_EAR):
        lm[:, p1, :2] = [0, 0]
        lm[:, p4, :2] = [1, 0]
        lm[:, p2, :2] = [0.33, -gap / 2]
        lm[:, p3, :2] = [0.66, -gap / 2]
        lm[:, p6, :2] = [0.33, gap / 2]
        lm[:, p5, :2] = [0.66, gap / 2]
    return lm


def test_eye_aspect_ratio():
    np.testing.assert_allclose(eye_aspect_ratio(_eyes(0.3)), [0.3])
    np.testing.assert_allclose(eye_aspect_ratio(_eyes(0.0)), [0.0])


def test_blink_signal_open_is_0_closed_is_1():
    gaps = np.array([0.3] * 18 + [0.0, 0.15])
    lm = np.concatenate([_eyes(g) for g in gaps])
    blink = blink_signal(lm)
    assert blink.shape == (20,) and blink.min() >= 0 and blink.max() <= 1
    np.testing.assert_allclose(blink[:18], 0, atol=1e-6)
    assert blink[18] == 1.0
    assert 0.6 < blink[19] < 0.8  # half-closed: (0.3 - 0.15) / (0.3 - 0.09)


def test_expression_pca_shapes_and_reconstruction():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(478, 3))
    modes = rng.normal(size=(3, 478, 3))
    weights = rng.normal(size=(50, 3))
    lm = base + np.einsum("fk,knd->fnd", weights, modes)
    coeffs, basis = expression_coefficients(lm, dim=76)
    assert coeffs.shape == (50, 76)
    assert basis["components"].shape == (76, 478 * 3)
    # Three modes of motion: everything past the third coefficient is (numerically) zero.
    assert np.abs(coeffs[:, 3:]).max() < 1e-3
    recon = basis["mean"] + coeffs @ basis["components"]
    np.testing.assert_allclose(recon, lm.reshape(50, -1), atol=1e-3)
