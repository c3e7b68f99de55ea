"""Named regions of mediapipe's 478-point refined face mesh, as ordered outlines.

The outlines follow mediapipe's connection sets (``face_mesh_connections.FACEMESH_*``): each
consecutive pair of indices below is an edge there (checked by a test), ordered so the list can
be filled as a polygon. Eyebrows are the upper and lower eyebrow edges joined into one outline.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

NUM_LANDMARKS = 478

FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
LIPS_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
LIPS_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191]
RIGHT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
LEFT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
RIGHT_EYEBROW = [46, 53, 52, 65, 55, 107, 66, 105, 63, 70]
LEFT_EYEBROW = [276, 283, 282, 295, 285, 336, 296, 334, 293, 300]
# The subject's right eye/brow is on the image's left.

CHIN = 152
FOREHEAD = 10
RIGHT_CHEEK = 234
LEFT_CHEEK = 454
NOSE_TIP = 1
LEFT_JAW_ANGLE = 397
RIGHT_JAW_ANGLE = 172
NOSE_BOTTOM = 2

# Eye aspect ratio points (p1..p6 of Soukupova & Cech): corners p1, p4; upper lid p2, p3; lower lid p6, p5.
RIGHT_EYE_EAR = (33, 160, 158, 133, 153, 144)
LEFT_EYE_EAR = (362, 385, 387, 263, 373, 380)

# Points that move rigidly with the skull (forehead, upper face outline, nose, eye corners):
# the head pose is fitted to these so speech and blinks do not move the camera.
STABLE_POINTS = sorted(
    {10, 338, 297, 332, 284, 251, 389, 356, 454, 234, 127, 162, 21, 54, 103, 67, 109,
     168, 6, 197, 195, 5, 4, 1, 98, 327, 33, 133, 362, 263, 8, 9}
)


@lru_cache(maxsize=1)
def nose_points() -> list:
    """Vertex indices of mediapipe's nose connection set (filled as a convex hull)."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_NOSE

    return sorted({i for edge in FACEMESH_NOSE for i in edge})


def outline(landmarks_xy: np.ndarray, indices: list) -> np.ndarray:
    """Pixel polygon [K, 2] int32 for an outline, ready for ``cv2.fillPoly``."""
    return np.round(landmarks_xy[indices, :2]).astype(np.int32)
