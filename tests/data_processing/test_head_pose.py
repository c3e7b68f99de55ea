import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_processing import head_pose as hp


def _face(seed=0):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(478, 3)) * [0.4, 0.5, 0.2]
    return pts - pts[hp.STABLE_POINTS].mean(0)


def _observe(canonical, rot, trans, focal=1200.0, c=256.0):
    """Perspective landmarks as mediapipe reports them: pixels plus relative depth."""
    cam = canonical @ rot.T + trans
    uv = focal * cam[:, :2] / cam[:, 2:] + c
    z = (cam[:, 2:] - trans[2]) * focal / trans[2]
    return np.concatenate([uv, z], 1)


def test_umeyama_recovers_similarity():
    src = _face()
    rot = Rotation.from_euler("xyz", [10, -25, 5], degrees=True).as_matrix()
    s, r, t = hp.umeyama(src, 3.0 * src @ rot.T + [1, 2, 3])
    assert s == pytest.approx(3.0)
    np.testing.assert_allclose(r, rot, atol=1e-9)
    np.testing.assert_allclose(t, [1, 2, 3], atol=1e-9)


def test_fit_recovers_known_rotation_and_cameras_reproject():
    canonical = _face()
    rot = Rotation.from_euler("xyz", [8, -20, 4], degrees=True).as_matrix()
    trans = np.array([0.3, -0.2, 5.0])
    lm = np.stack([_observe(canonical, rot, trans)] * 3)
    poses = hp.fit_head_poses(lm, canonical, 1200.0, 256.0, 256.0)
    angle = Rotation.from_matrix(poses.rotation[0].T @ rot).magnitude()
    assert np.degrees(angle) < 1e-6
    np.testing.assert_allclose(poses.translation[0], trans, atol=1e-6)
    c2w = hp.camera_to_world(poses)
    # A proper rigid transform in Nerfstudio axes; the camera looks at the head (down -z).
    np.testing.assert_allclose(c2w[0, :3, :3] @ c2w[0, :3, :3].T, np.eye(3), atol=1e-9)
    assert np.linalg.det(c2w[0, :3, :3]) == pytest.approx(1.0)
    to_head = -c2w[0, :3, 3] / np.linalg.norm(c2w[0, :3, 3])
    assert to_head @ -c2w[0, :3, 2] > 0.95
    uv = hp.project(canonical @ hp.FLIP_YZ, c2w[0], 1200.0, 256.0, 256.0)
    np.testing.assert_allclose(uv, lm[0, :, :2], atol=1e-6)


def test_frontal_head_gives_camera_on_plus_z():
    canonical = _face(1)
    lm = np.stack([_observe(canonical, np.eye(3), np.array([0.0, 0.0, 5.0]))] * 3)
    c2w = hp.camera_to_world(hp.fit_head_poses(lm, canonical, 1200.0, 256.0, 256.0))
    np.testing.assert_allclose(c2w[0, :3, 3], [0, 0, 5], atol=1e-6)
    np.testing.assert_allclose(c2w[0, :3, :3], np.eye(3), atol=1e-6)


def test_smoothing_reduces_jitter_and_keeps_slow_motion():
    rng = np.random.default_rng(0)
    n = 100
    yaw = np.linspace(-10, 10, n)
    noisy = Rotation.from_euler("y", (yaw + rng.normal(0, 0.5, n))[:, None], degrees=True).as_matrix()
    trans = np.stack([np.zeros(n), np.zeros(n), 5 + rng.normal(0, 0.01, n)], 1)
    raw = hp.HeadPoses(noisy, trans)
    smooth = hp.smooth_head_poses(raw, 2.0)
    before, after = hp.pose_jitter(raw), hp.pose_jitter(smooth)
    assert after["rotation_deg"] < 0.3 * before["rotation_deg"]
    assert after["translation_pct_face"] < 0.3 * before["translation_pct_face"]
    smooth_yaw = Rotation.from_matrix(smooth.rotation).as_euler("xyz", degrees=True)[:, 1]
    assert np.abs(smooth_yaw[10:-10] - yaw[10:-10]).max() < 0.6


def test_canonical_face_is_normalised():
    canonical = _face(2)
    rots = Rotation.from_euler("y", np.linspace(-15, 15, 6)[:, None], degrees=True).as_matrix()
    lm = np.stack([_observe(canonical, r, np.array([0, 0, 5.0])) for r in rots])
    mean = hp.canonical_face(lm)
    np.testing.assert_allclose(mean[hp.STABLE_POINTS].mean(0), 0, atol=1e-9)
    assert np.linalg.norm(mean[hp.LEFT_CHEEK] - mean[hp.RIGHT_CHEEK]) == pytest.approx(1.0)
