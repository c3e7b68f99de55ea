"""LMD, landmark distance (Chen et al. 2018; AD-NeRF / ER-NeRF / DT-NeRF tables): the mean Euclidean distance between
corresponding mouth landmarks of the render and of the ground truth, in pixels of 512x512 frames.

Landmarks: mediapipe's refined face mesh (478 points, the one ``dtnerf-process`` tracks), run independently on each
frame (static-image mode, so a render and its ground truth never share tracking state) after resizing it to 512x512
(bicubic; a model trained at 128 px is measured at the papers' resolution). Mouth landmarks: the 40 points of the outer
and inner lip outlines (``face_regions.LIPS_OUTER + LIPS_INNER``; the 68-point LMD of the papers uses the 20 points of
the same two outlines). Per frame: the mean over those points; over the test set: the mean over frames where the mesh
finds a face in both images. Frames where it finds none are counted and reported, not scored.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import cv2
import numpy as np
from jaxtyping import Float

from data_processing.face_regions import LIPS_INNER, LIPS_OUTER

LMD_SIZE = 512
"""Side of the frames landmarks are measured on (the papers' resolution)."""
MOUTH_LANDMARKS = LIPS_OUTER + LIPS_INNER


def to_uint8(image: Float[np.ndarray, "H W 3"]) -> np.ndarray:
    """[0, 1] float RGB -> uint8 RGB."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def mouth_landmark_distance(a: Float[np.ndarray, "K 2"], b: Float[np.ndarray, "K 2"]) -> float:
    """Mean Euclidean distance between corresponding landmarks."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1).mean())


class MouthLandmarker:
    """Mouth landmarks [40, 2] in 512x512 pixels of an RGB frame of any size, or None when no face is found."""

    def __init__(self):
        import mediapipe as mp  # noqa: PLC0415 - lazy, heavy

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
        )

    def close(self) -> None:
        self._mesh.close()

    def __call__(self, image_rgb_uint8: np.ndarray) -> Optional[Float[np.ndarray, "40 2"]]:
        frame = cv2.resize(image_rgb_uint8, (LMD_SIZE, LMD_SIZE), interpolation=cv2.INTER_CUBIC)
        result = self._mesh.process(frame)
        if not result.multi_face_landmarks:
            return None
        points = result.multi_face_landmarks[0].landmark
        return np.array([(points[i].x * LMD_SIZE, points[i].y * LMD_SIZE) for i in MOUTH_LANDMARKS], dtype=np.float64)


class LandmarkDistance:
    """Accumulates LMD over test frames, counting the frames where no face is found."""

    def __init__(self, landmarker: Optional[MouthLandmarker] = None):
        self.landmarker = landmarker if landmarker is not None else MouthLandmarker()
        self.distances: List[float] = []
        self.no_face_render = 0
        self.no_face_ground_truth = 0

    def add(self, render_rgb_uint8: np.ndarray, gt_rgb_uint8: np.ndarray) -> Optional[float]:
        """Scores one frame; returns its LMD, or None when the mesh found no face in one of the images."""
        gt = self.landmarker(gt_rgb_uint8)
        render = self.landmarker(render_rgb_uint8)
        self.no_face_ground_truth += gt is None
        self.no_face_render += render is None
        if gt is None or render is None:
            return None
        self.distances.append(mouth_landmark_distance(render, gt))
        return self.distances[-1]

    def summary(self) -> Dict:
        """JSON entry: mean LMD and the counts, or unavailable with the reason when no frame could be scored."""
        counts = {
            "frames_scored": len(self.distances),
            "no_face_render": self.no_face_render,
            "no_face_ground_truth": self.no_face_ground_truth,
        }
        if not self.distances:
            reason = (
                f"mediapipe found no face in {self.no_face_render} render(s) and {self.no_face_ground_truth} "
                "ground-truth frame(s); no frame could be scored"
            )
            return {"available": False, "reason": reason, **counts}
        value = float(np.mean(self.distances))
        return {"available": True, "value": value, "unit": f"pixels at {LMD_SIZE}x{LMD_SIZE}", **counts}
