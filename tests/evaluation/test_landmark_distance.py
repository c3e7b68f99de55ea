"""LMD: distances of known landmark sets, counting of frames without a face, and the mediapipe mesh on a real frame
shifted by a known number of pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dtnerf_ns.evaluation.landmark_distance import (
    LMD_SIZE,
    MOUTH_LANDMARKS,
    LandmarkDistance,
    MouthLandmarker,
    mouth_landmark_distance,
)


def test_distance_of_a_shifted_landmark_set():
    rng = np.random.default_rng(0)
    points = rng.uniform(100, 400, size=(len(MOUTH_LANDMARKS), 2))
    assert mouth_landmark_distance(points, points) == 0.0
    assert mouth_landmark_distance(points + [3.0, 4.0], points) == pytest.approx(5.0)


class _Scripted:
    """Stands in for the mesh: returns the landmarks queued for each call (None = no face)."""

    def __init__(self, answers):
        self.answers = list(answers)

    def __call__(self, image):
        return self.answers.pop(0)


def test_frames_without_a_face_are_counted_not_scored():
    base = np.zeros((len(MOUTH_LANDMARKS), 2))
    # Calls per frame: ground truth, then render.
    lmd = LandmarkDistance(_Scripted([base, base + [0, 2.0], base, None, None, base, base, base + [6.0, 8.0]]))
    blank = np.zeros((8, 8, 3), np.uint8)
    assert [lmd.add(blank, blank) for _ in range(4)] == [2.0, None, None, 10.0]
    summary = lmd.summary()
    assert summary["available"] and summary["value"] == pytest.approx(6.0)
    assert (summary["frames_scored"], summary["no_face_render"], summary["no_face_ground_truth"]) == (2, 1, 1)

    nothing = LandmarkDistance(_Scripted([base, None]))
    nothing.add(blank, blank)
    summary = nothing.summary()
    assert not summary["available"] and "no face in 1 render(s)" in summary["reason"]


@pytest.fixture(scope="module")
def landmarker():
    mesh = MouthLandmarker()
    yield mesh
    mesh.close()


def test_mediapipe_mouth_landmarks_follow_a_shift(tiny_dtnerf_dataset: Path, landmarker):
    frame = np.asarray(Image.open(tiny_dtnerf_dataset / "images" / "000000.jpg").convert("RGB"))
    big = cv2.resize(frame, (LMD_SIZE, LMD_SIZE), interpolation=cv2.INTER_CUBIC)
    right_10px = np.float32([[1, 0, 10], [0, 1, 0]])
    shifted = cv2.warpAffine(big, right_10px, (LMD_SIZE, LMD_SIZE), borderMode=cv2.BORDER_REPLICATE)
    lmd = LandmarkDistance(landmarker)
    assert lmd.add(big, big) == pytest.approx(0.0, abs=1e-6)
    assert lmd.add(shifted, big) == pytest.approx(10.0, abs=1.5)  # the mesh is translation-equivariant to ~1 px
    assert landmarker(np.zeros((64, 64, 3), np.uint8)) is None  # no face: None, not an error
