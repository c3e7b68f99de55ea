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
    scale, rot, trans = umeyama_batch(src[None], dst[None])
    return float(scale[0]), rot[0], trans[0]


def umeyama_batch(
    src: Float[np.ndarray, "frames n 3"], dst: Float[np.ndarray, "frames n 3"]
) -> Tuple[Float[np.ndarray, "frames"], Float[np.ndarray, "frames 3 3"], Float[np.ndarray, "frames 3"]]:
    """:func:`umeyama` of every frame at once (either side may be one [1, n, 3] shape for all): one batched SVD
    instead of a Python loop of small ones (30 s to 3 s of dtnerf-process on a 5-minute clip)."""
    src, dst = np.broadcast_arrays(np.asarray(src, np.float64), np.asarray(dst, np.float64))
    mu_s, mu_d = src.mean(1), dst.mean(1)
    xs, xd = src - mu_s[:, None], dst - mu_d[:, None]
    cov = np.einsum("fni,fnj->fij", xd, xs) / src.shape[1]
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(d.shape)
    sign[:, -1] = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)
    rot = u @ (sign[:, :, None] * vt)
    var_s = (xs**2).sum(axis=(1, 2)) / src.shape[1]
    scale = (d * sign).sum(axis=1) / var_s
    trans = mu_d - scale[:, None] * np.einsum("fij,fj->fi", rot, mu_s)
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
        s, r, t = umeyama_batch(landmarks[:, stable], mean[None, stable])
        aligned = s[:, None, None] * (landmarks.astype(np.float64) @ r.transpose(0, 2, 1)) + t[:, None]
        mean = aligned.mean(axis=0)
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
    return Similarity(*umeyama_batch(canonical[None, stable], landmarks[:, stable]))


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


@dataclass
class CameraFit:
    """A clip's cameras (dataset convention) and what they were fitted from."""

    camera_to_world: Float[np.ndarray, "frames 4 4"]
    canonical_world: Float[np.ndarray, "478 3"]
    """The clip's mean face in world axes (face width 1)."""
    summary: dict
    """Jitter before and after smoothing, reprojection error (px), focal, camera distances: for report.json."""


def fit_cameras(landmarks: Float[np.ndarray, "frames 478 3"], size: int, focal: float, smoothing: float) -> CameraFit:
    """Canonical face, perspective head poses, their smoothing and the cameras of a clip of ``size``-px frames."""
    from data_processing.face_regions import STABLE_POINTS

    canonical = canonical_face(landmarks)
    raw = fit_head_poses(landmarks, canonical, focal, size / 2, size / 2)
    smooth = smooth_head_poses(raw, smoothing)
    c2w = camera_to_world(smooth)
    # How well the smoothed cameras explain the landmarks: mean reprojection error (pixels).
    world = canonical[STABLE_POINTS] @ FLIP_YZ
    errors = [np.linalg.norm(project(world, m, focal, size / 2, size / 2) - lm[STABLE_POINTS, :2], axis=1).mean() for m, lm in zip(c2w, landmarks)]
    distance = np.linalg.norm(c2w[:, :3, 3], axis=1)
    summary = {"jitter_before": pose_jitter(raw), "jitter_after": pose_jitter(smooth), "reprojection_px": float(np.mean(errors)),
               "focal": focal, "camera_distance": [float(distance.min()), float(distance.max())]}  # fmt: skip
    return CameraFit(c2w, canonical @ FLIP_YZ, summary)
