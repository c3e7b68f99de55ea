"""Expression coefficients of a driving recording in a trained subject's expression basis (reenactment).

A dataset's ``expression.npy`` holds PCA coefficients of its pose-normalised landmarks
(:func:`data_processing.signals.expression_coefficients`); ``expression_basis.npz`` and ``canonical_face.npy`` keep
what is needed to project new landmarks the same way. Two cases:

- **absolute** (the driver is the subject's own dataset, same basis): landmarks are normalised with the subject's
  canonical face and projected as ``dtnerf-process`` did, so a dataset's own landmarks give back its ``expression.npy``;
- **relative** (any other recording or person): the driver's landmarks are normalised with the driver's own canonical
  face (put in the subject's canonical frame), and each frame's offset from the driver's mean normalised face is
  projected onto the subject's components. The
  SAHS-NeRF paper does not say how another person's expressions drive a model; this transfer of expression *deltas*
  is what face-reenactment systems do (Face2Face and NerFace add the driver's 3DMM expression change relative to its
  neutral to the target's), so a different face shape (wider mouth, thinner lips) does not read as an expression.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
from jaxtyping import Float

from data_processing import dataset_layout as layout
from data_processing.errors import ProcessingError


@dataclass
class ExpressionBasis:
    """A dataset's expression PCA and the canonical face its landmarks were normalised with."""

    mean: Float[np.ndarray, "points"]
    """Mean pose-normalised face, flattened (478 x 3)."""
    components: Float[np.ndarray, "dim points"]
    """Principal directions (rows; zero rows past the clip's number of modes)."""
    canonical: Float[np.ndarray, "478 3"]
    """Canonical face in OpenCV axes (``canonical_face.npy`` is stored in world axes: y and z flipped)."""

    @classmethod
    def load(cls, dataset_dir: Path) -> "ExpressionBasis":
        """Reads ``expression_basis.npz`` and ``canonical_face.npy`` of a ``dtnerf-process`` dataset.

        Raises:
            ProcessingError: either file is missing or unreadable.
        """
        from data_processing.head_pose import FLIP_YZ

        root = Path(dataset_dir)
        try:
            with np.load(root / layout.EXPRESSION_BASIS, allow_pickle=False) as basis:
                mean, components = basis["mean"], basis["components"]
            canonical = np.load(root / layout.CANONICAL_FACE, allow_pickle=False)
        except (OSError, KeyError, ValueError) as err:
            raise ProcessingError(
                f"{root}: no readable {layout.EXPRESSION_BASIS} / {layout.CANONICAL_FACE} ({type(err).__name__}); "
                "re-run dtnerf-process on its video."
            ) from err
        return cls(mean.astype(np.float64), components.astype(np.float64), canonical.astype(np.float64) @ FLIP_YZ)

    def same_as(self, other: "ExpressionBasis") -> bool:
        """Whether both hold the same basis (the same dataset, or a copy of it)."""
        return all(
            a.shape == b.shape and np.array_equal(a, b)
            for a, b in ((self.mean, other.mean), (self.components, other.components), (self.canonical, other.canonical))
        )

    def absolute(self, landmarks: Float[np.ndarray, "frames 478 3"]) -> Float[np.ndarray, "frames dim"]:
        """Coefficients of the subject's own landmarks, exactly as ``dtnerf-process`` computes ``expression.npy``."""
        flat = normalise(landmarks, self.canonical).reshape(len(landmarks), -1)
        return ((flat - self.mean) @ self.components.T).astype(np.float32)

    def relative(
        self, landmarks: Float[np.ndarray, "frames 478 3"], canonical: Optional[Float[np.ndarray, "478 3"]] = None
    ) -> Float[np.ndarray, "frames dim"]:
        """Coefficients of another recording's expression offsets (see the module docstring).

        Args:
            landmarks: the driver's face mesh per frame (pixels, as tracked).
            canonical: the driver's canonical face (OpenCV axes); by default the mean face of ``landmarks``
                (:func:`data_processing.head_pose.canonical_face`). Only its shape matters: it is aligned to the
                subject's canonical face first.
        """
        from data_processing.face_regions import STABLE_POINTS
        from data_processing.head_pose import canonical_face, umeyama

        if canonical is None:
            canonical = canonical_face(landmarks)
        # Each canonical face is oriented like its clip's middle frame: put the driver's into the subject's frame
        # (similarity on the rigid points), so offsets are measured along the axes and in the units of the components.
        stable = np.asarray(STABLE_POINTS)
        scale, rotation, shift = umeyama(canonical[stable].astype(np.float64), self.canonical[stable])
        flat = normalise(landmarks, scale * canonical @ rotation.T + shift).reshape(len(landmarks), -1)
        return ((flat - flat.mean(axis=0)) @ self.components.T).astype(np.float32)


def normalise(
    landmarks: Float[np.ndarray, "frames 478 3"], canonical: Float[np.ndarray, "478 3"]
) -> Float[np.ndarray, "frames 478 3"]:
    """Pose-normalised landmarks (head rotation, position and size removed), as ``dtnerf-process``'s signals stage."""
    from data_processing.head_pose import fit_similarities

    return fit_similarities(landmarks, canonical).to_canonical(landmarks)


def transfer(
    landmarks: Float[np.ndarray, "frames 478 3"],
    subject: ExpressionBasis,
    driver: Optional[ExpressionBasis] = None,
) -> Tuple[Float[np.ndarray, "frames dim"], str]:
    """The driver's expressions in the subject's basis, and which transfer was used (``absolute`` / ``relative``).

    Args:
        landmarks: the driver's landmarks, one row per frame to drive.
        subject: the basis of the dataset the model was trained on.
        driver: the driver dataset's basis when the driver is a dataset (absolute when it is the subject's; else its
            canonical face normalises the landmarks); None for a video (relative, canonical face from ``landmarks``).
    """
    if driver is not None and driver.same_as(subject):
        return subject.absolute(landmarks), "absolute"
    return subject.relative(landmarks, None if driver is None else driver.canonical), "relative"
