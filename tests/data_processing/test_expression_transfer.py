"""Expression transfer: the subject's own landmarks give back its coefficients; another face's offsets transfer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_processing import dataset_layout as layout
from data_processing.expression_transfer import ExpressionBasis, transfer
from data_processing.face_regions import LEFT_CHEEK, RIGHT_CHEEK, STABLE_POINTS

MOVING = np.setdiff1d(np.arange(478), STABLE_POINTS)


def _face(rng) -> np.ndarray:
    """A canonical face: centred on its stable points, one cheek-to-cheek width wide (OpenCV axes)."""
    face = rng.normal(size=(478, 3)) * [0.4, 0.5, 0.2]
    face -= face[STABLE_POINTS].mean(0)
    return face / np.linalg.norm(face[LEFT_CHEEK] - face[RIGHT_CHEEK])


def _basis(rng, canonical: np.ndarray, dim: int = 6) -> ExpressionBasis:
    """Orthonormal modes that move only the non-rigid points (so pose normalisation sees no expression)."""
    modes = np.zeros((478, 3, dim))
    modes[MOVING] = rng.normal(size=(len(MOVING), 3, dim))
    q, _ = np.linalg.qr(modes.reshape(-1, dim))
    return ExpressionBasis(canonical.reshape(-1).copy(), q.T, canonical)


def _posed(rng, faces: np.ndarray) -> np.ndarray:
    """Each frame under its own random similarity (as pixels of a 512 px frame)."""
    rotations = Rotation.from_rotvec(rng.normal(scale=0.25, size=(len(faces), 3))).as_matrix()
    scales = rng.uniform(150, 250, size=len(faces))
    shifts = rng.uniform([200, 200, -20], [300, 300, 20], size=(len(faces), 3))
    return (scales[:, None, None] * np.einsum("fij,fnj->fni", rotations, faces) + shifts[:, None]).astype(np.float32)


def _expressions(basis: ExpressionBasis, coefficients: np.ndarray) -> np.ndarray:
    return (coefficients @ basis.components).reshape(len(coefficients), 478, 3)


def test_absolute_projection_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    subject = _basis(rng, _face(rng))
    coefficients = rng.normal(scale=0.02, size=(30, 6))
    landmarks = _posed(rng, subject.canonical + _expressions(subject, coefficients))
    recovered, mode = transfer(landmarks, subject, subject)
    assert mode == "absolute" and recovered.shape == (30, 6) and recovered.dtype == np.float32
    np.testing.assert_allclose(recovered, coefficients, atol=2e-4 * np.abs(coefficients).max())


def test_relative_transfer_ignores_a_different_face_shape():
    rng = np.random.default_rng(1)
    subject = _basis(rng, _face(rng))
    # The driver: another face shape (wider mouth, other nose...), another size and head orientation in its frames,
    # and expression offsets of known coefficients (zero mean over the clip: its mean face is its neutral).
    neutral = subject.canonical.copy()
    neutral[MOVING] += rng.normal(scale=0.05, size=(len(MOVING), 3))
    neutral = 1.3 * neutral @ Rotation.from_euler("y", 12, degrees=True).as_matrix().T
    coefficients = rng.normal(scale=0.02, size=(40, 6))
    coefficients -= coefficients.mean(0)
    offsets = _expressions(subject, coefficients) * 1.3  # the same expression, on a bigger face
    offsets = offsets @ Rotation.from_euler("y", 12, degrees=True).as_matrix().T
    landmarks = _posed(rng, neutral + offsets)

    recovered, mode = transfer(landmarks, subject)  # a video: no driver basis
    assert mode == "relative"
    np.testing.assert_allclose(recovered, coefficients, atol=1e-3 * np.abs(coefficients).max())
    # Its shape read absolutely would be a large bogus expression.
    bogus = subject.absolute(landmarks)
    assert np.abs(bogus.mean(0)).max() > 20 * np.abs(recovered.mean(0)).max()
    # A driver dataset with another basis is relative too, normalised with that dataset's canonical face.
    other = _basis(rng, neutral / 1.3)
    recovered_dataset, mode = transfer(landmarks, subject, other)
    assert mode == "relative"
    np.testing.assert_allclose(recovered_dataset, coefficients, atol=1e-3 * np.abs(coefficients).max())


def test_a_datasets_own_landmarks_give_its_expression_npy(tiny_dtnerf_dataset: Path):
    subject = ExpressionBasis.load(tiny_dtnerf_dataset)
    landmarks = np.load(tiny_dtnerf_dataset / layout.LANDMARKS)
    expected = np.load(tiny_dtnerf_dataset / layout.EXPRESSION)
    recovered, mode = transfer(landmarks, subject, ExpressionBasis.load(tiny_dtnerf_dataset))
    assert mode == "absolute"
    np.testing.assert_allclose(recovered, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_a_dataset_without_a_basis_is_one_clear_error(tmp_path: Path):
    from data_processing.errors import ProcessingError

    with pytest.raises(ProcessingError, match="expression_basis.npz .* re-run dtnerf-process"):
        ExpressionBasis.load(tmp_path)
