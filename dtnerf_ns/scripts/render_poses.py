"""Head poses of ``dtnerf-render``'s output frames: walks over the training frames, or poses given in a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from jaxtyping import Float

from dtnerf_ns.scripts.render_errors import RenderError


def ping_pong(num_sources: int, num_frames: int) -> np.ndarray:
    """Indices 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... of length ``num_frames`` (forward and back, never jumping)."""
    if num_sources == 1:
        return np.zeros(num_frames, dtype=np.int64)
    period = 2 * (num_sources - 1)
    phase = np.arange(num_frames) % period
    return np.where(phase < num_sources, phase, period - phase).astype(np.int64)


def read_pose_file(path: Path) -> Float[np.ndarray, "poses 3 4"]:
    """Camera-to-world poses in the dataset's convention (as in its transforms.json).

    Accepts ``.npy`` of shape [K, 4, 4] or [K, 3, 4], or a ``.json`` with ``frames[i].transform_matrix`` (the layout
    of the dataset's own transforms.json).
    """
    import json  # noqa: PLC0415

    if not path.is_file():
        raise RenderError(f"pose file not found: {path}")
    try:
        if path.suffix.lower() == ".npy":
            poses = np.load(path, allow_pickle=False)
        else:
            poses = np.array([f["transform_matrix"] for f in json.loads(path.read_text())["frames"]], dtype=np.float64)
    except Exception as err:  # noqa: BLE001 - any parse failure is "unreadable pose file"
        raise RenderError(
            f"cannot read poses from {path} ({type(err).__name__}); use .npy [K,4,4] or a transforms.json-style file."
        ) from err
    if poses.ndim != 3 or poses.shape[0] == 0 or poses.shape[1:] not in ((4, 4), (3, 4)) or not np.isfinite(poses).all():
        raise RenderError(f"{path}: expected K camera-to-world poses of shape [K, 4, 4] or [K, 3, 4], got {poses.shape}")
    return poses[:, :3, :4].astype(np.float32)


def nearest_poses(
    queries: Float[np.ndarray, "q 3 4"], references: Float[np.ndarray, "r 3 4"], scene_scale: float
) -> np.ndarray:
    """Index of the closest reference pose for each query (rotation angle in radians + distance / scene_scale)."""
    rel = np.einsum("qij,rkj->qrik", queries[:, :, :3], references[:, :, :3])  # R_q R_r^T
    cos = np.clip((np.trace(rel, axis1=2, axis2=3) - 1.0) / 2.0, -1.0, 1.0)
    dist = np.linalg.norm(queries[:, None, :, 3] - references[None, :, :, 3], axis=-1)
    return np.argmin(np.arccos(cos) + dist / scene_scale, axis=1)
