"""Head pose from face-mesh landmarks, expressed as Nerfstudio cameras.

The head is fixed in a canonical space and the camera moves around it (AD-NeRF/ER-NeRF do the
same with 3DMM poses): each frame's landmarks are fitted rigidly (rotation, translation and
scale) to a canonical face built from the clip itself by generalised Procrustes alignment, and
the inverse of that head pose is the frame's camera-to-world matrix.

Coordinate frames:
- mediapipe landmarks are pixels (x right, y down) with a relative depth z (larger is farther),
  i.e. OpenCV camera axes under weak perspective.
- The canonical face is stored in world axes: x to the subject's left (image right), y up,
  z out of the face towards the camera; one unit is the width of the face (cheek to cheek).
- Cameras are camera-to-world matrices in Nerfstudio/OpenGL convention (x right, y up, looking
  down -z), as in transforms.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from jaxtyping import Float
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from data_processing.face_regions import LEFT_CHEEK, RIGHT_CHEEK, STABLE_POINTS

DEFAULT_FOCAL_AT_512 = 1200.0
"""Focal length in pixels for 512-px frames: AD-NeRF's default, scaled with the image size."""

# OpenCV (x right, y down, z forward) <-> world/OpenGL (x right, y up, z back).
FLIP_YZ = np.diag([1.0, -1.0, -1.0])


def umeyama(src: Float[np.ndarray, "n 3"], dst: Float[np.ndarray, "n 3"]) -> Tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ s * R @ src + t`` (Umeyama 1991), with a proper rotation."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    var_s = (xs**2).sum() / len(src)
    scale = float((d * sign).sum() / var_s)
    trans = mu_d - scale * rot @ mu_s
    return scale, rot, trans


def canonical_face(landmarks: Float[np.ndarray, "frames 478 3"], iterations: int = 3) -> Float[np.ndarray, "478 3"]:
    """Mean face of the clip, in OpenCV axes, centred on its stable points, one face width wide.

    Generalised Procrustes: align every frame to the current mean on the stable points, average,
    repeat. Starting from the median frame keeps it robust to a few bad fits.
    """
    stable = np.asarray(STABLE_POINTS)
    mean = landmarks[len(landmarks) // 2].astype(np.float64)
    for _ in range(iterations):
        mean = mean - mean[stable].mean(0)
        mean = mean / np.linalg.norm(mean[LEFT_CHEEK] - mean[RIGHT_CHEEK])
        aligned = []
        for lm in landmarks:
            s, r, t = umeyama(lm[stable].astype(np.float64), mean[stable])
            aligned.append(s * lm @ r.T + t)
        mean = np.mean(aligned, axis=0)
    mean = mean - mean[stable].mean(0)
    return mean / np.linalg.norm(mean[LEFT_CHEEK] - mean[RIGHT_CHEEK])


@dataclass
class Similarity:
    """Per-frame weak-perspective fit from canonical (OpenCV axes) to image: ``lm ~ s R c + t`` (pixels)."""

    scale: Float[np.ndarray, "frames"]
    rotation: Float[np.ndarray, "frames 3 3"]
    translation: Float[np.ndarray, "frames 3"]

    def to_canonical(self, landmarks: Float[np.ndarray, "frames 478 3"]) -> Float[np.ndarray, "frames 478 3"]:
        """Pose-normalised landmarks (expression only), in canonical OpenCV axes."""
        centred = landmarks - self.translation[:, None, :]
        return np.einsum("fij,fnj->fni", self.rotation.transpose(0, 2, 1), centred) / self.scale[:, None, None]


def fit_similarities(landmarks: Float[np.ndarray, "frames 478 3"], canonical: Float[np.ndarray, "478 3"]) -> Similarity:
    """Umeyama fit of each frame's stable landmarks (pixels and relative depth) to the canonical face."""
    stable = np.asarray(STABLE_POINTS)
    fits = [umeyama(canonical[stable], lm[stable].astype(np.float64)) for lm in landmarks]
    return Similarity(
        np.array([f[0] for f in fits]), np.stack([f[1] for f in fits]), np.stack([f[2] for f in fits])
    )


@dataclass
class HeadPoses:
    """Per-frame head pose as OpenCV extrinsics: a canonical point c is at ``R c + T`` in the camera."""

    rotation: Float[np.ndarray, "frames 3 3"]
    translation: Float[np.ndarray, "frames 3"]
    """Canonical units (face widths); z is the head's distance from the camera."""


def fit_head_poses(
    landmarks: Float[np.ndarray, "frames 478 3"], canonical: Float[np.ndarray, "478 3"], focal: float, cx: float, cy: float
) -> HeadPoses:
    """Perspective head pose per frame.

    The weak-perspective similarity gives the rotation, the depth ``focal / scale`` and the
    lateral offset; a perspective PnP refinement on the stable points (``cv2.solvePnP``) then
    removes the weak-perspective error, so the canonical face reprojects onto the landmarks
    through the dataset's pinhole intrinsics.
    """
    import cv2

    stable = np.asarray(STABLE_POINTS)
    sim = fit_similarities(landmarks, canonical)
    k = np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1.0]])
    obj = canonical[stable].astype(np.float64)
    rots, trans = [], []
    for lm, s, r, t in zip(landmarks, sim.scale, sim.rotation, sim.translation):
        depth = focal / s
        t0 = np.array([(t[0] - cx) * depth / focal, (t[1] - cy) * depth / focal, depth])
        rvec, _ = cv2.Rodrigues(r)
        ok, rvec, tvec = cv2.solvePnP(
            obj, lm[stable, :2].astype(np.float64), k, None, rvec.copy(), t0.reshape(3, 1).copy(),
            useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE,
        )
        if ok and tvec[2, 0] > 0:
            rots.append(cv2.Rodrigues(rvec)[0])
            trans.append(tvec.reshape(3))
        else:  # keep the weak-perspective estimate
            rots.append(r)
            trans.append(t0)
    return HeadPoses(np.stack(rots), np.stack(trans))


def smooth_head_poses(poses: HeadPoses, sigma: float) -> HeadPoses:
    """Gaussian smoothing over time (``sigma`` in frames; 0 disables it): rotations as rotation
    vectors about their mean rotation, translations directly."""
    if sigma <= 0 or len(poses.translation) < 3:
        return poses
    rots = Rotation.from_matrix(poses.rotation)
    mean = rots.mean()
    rel = gaussian_filter1d((mean.inv() * rots).as_rotvec(), sigma, axis=0, mode="nearest")
    return HeadPoses(
        (mean * Rotation.from_rotvec(rel)).as_matrix(),
        gaussian_filter1d(poses.translation, sigma, axis=0, mode="nearest"),
    )


def pose_jitter(poses: HeadPoses) -> dict:
    """Frame-to-frame jitter: mean deviation of each frame from the midpoint of its two neighbours.

    Rotation in degrees, translation in percent of the face's width (canonical units x 100).
    """
    if len(poses.translation) < 3:
        return {"rotation_deg": 0.0, "translation_pct_face": 0.0}
    rots = Rotation.from_matrix(poses.rotation)
    half = Rotation.from_rotvec(0.5 * (rots[:-2].inv() * rots[2:]).as_rotvec())
    midpoint = rots[:-2] * half
    rot_dev = np.degrees((midpoint.inv() * rots[1:-1]).magnitude())
    t = poses.translation
    t_dev = np.linalg.norm(t[1:-1] - 0.5 * (t[:-2] + t[2:]), axis=1)
    return {"rotation_deg": float(rot_dev.mean()), "translation_pct_face": float(100 * t_dev.mean())}


def camera_to_world(poses: HeadPoses) -> Float[np.ndarray, "frames 4 4"]:
    """Camera-to-world matrices (Nerfstudio/OpenGL axes) that see the canonical head as in each frame.

    World points w are canonical points c = F w with F = diag(1, -1, -1), so the OpenCV
    world-to-camera transform is ``[R F | T]``; invert it and turn the camera's axes to OpenGL's.
    """
    out = np.zeros((len(poses.translation), 4, 4))
    for i, (r, t) in enumerate(zip(poses.rotation, poses.translation)):
        r_c2w = (r @ FLIP_YZ).T
        out[i] = np.eye(4)
        out[i, :3, :3] = r_c2w @ FLIP_YZ
        out[i, :3, 3] = -r_c2w @ t
    return out


def project(points_world: Float[np.ndarray, "n 3"], c2w: Float[np.ndarray, "4 4"], focal: float, cx: float, cy: float) -> np.ndarray:
    """Pinhole projection of world points into a Nerfstudio camera (pixels, y down)."""
    w2c = np.linalg.inv(c2w)
    p = points_world @ w2c[:3, :3].T + w2c[:3, 3]
    p_cv = p @ FLIP_YZ  # OpenGL -> OpenCV camera axes
    return np.stack([focal * p_cv[:, 0] / p_cv[:, 2] + cx, focal * p_cv[:, 1] / p_cv[:, 2] + cy], axis=1)
