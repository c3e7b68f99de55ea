"""Face detection, face-mesh tracking and person segmentation with mediapipe.

mediapipe 0.10.11 ships its models inside the wheel, so nothing is downloaded. It is imported
lazily so that importing this package (and every ``ns-*`` command) stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

import numpy as np
from jaxtyping import Float

from data_processing.errors import ProcessingError
from data_processing.face_regions import NUM_LANDMARKS


@dataclass
class CropBox:
    """A square crop in source-frame pixels: ``frame[y0:y0+size, x0:x0+size]``."""

    x0: int
    y0: int
    size: int

    def apply(self, frame: np.ndarray) -> np.ndarray:
        return frame[self.y0 : self.y0 + self.size, self.x0 : self.x0 + self.size]


def _pick_box(boxes: List[np.ndarray], previous: Optional[np.ndarray], width: int, height: int) -> np.ndarray:
    """Follow one face: nearest to the previous choice, else the largest and most central."""
    centres = [np.array([b[0] + b[2] / 2, b[1] + b[3] / 2]) for b in boxes]
    if previous is not None:
        prev_c = np.array([previous[0] + previous[2] / 2, previous[1] + previous[3] / 2])
        return boxes[int(np.argmin([np.linalg.norm(c - prev_c) for c in centres]))]
    diag = np.hypot(width, height)
    scores = [b[2] * b[3] * (1.0 - np.linalg.norm(c - [width / 2, height / 2]) / diag) for b, c in zip(boxes, centres)]
    return boxes[int(np.argmax(scores))]


def find_crop(frames: Iterable[np.ndarray], width: int, height: int, crop_scale: float = 2.6) -> Tuple[CropBox, float]:
    """One square crop, stable over the clip, around the face as it moves.

    The square is centred on the union of the face boxes seen in ``frames`` (shifted down a
    little so neck and shoulders stay in view, as in AD-NeRF/ER-NeRF frames) and has side
    ``crop_scale`` x the largest face box plus the face's travel; it is clamped to the frame.

    Returns:
        The crop and the fraction of sampled frames in which a face was found.
    """
    import mediapipe as mp

    chosen: List[np.ndarray] = []
    n = 0
    previous = None
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as detector:
        for frame in frames:
            n += 1
            result = detector.process(frame)
            if not result.detections:
                continue
            boxes = []
            for det in result.detections:
                bb = det.location_data.relative_bounding_box
                boxes.append(np.array([bb.xmin * width, bb.ymin * height, bb.width * width, bb.height * height]))
            previous = _pick_box(boxes, previous, width, height)
            chosen.append(previous)
    if not chosen:
        raise ProcessingError(f"no face found in {n} sampled frames; the video must show one person facing the camera.")
    b = np.stack(chosen)
    x_min, y_min = b[:, 0].min(), b[:, 1].min()
    x_max, y_max = (b[:, 0] + b[:, 2]).max(), (b[:, 1] + b[:, 3]).max()
    face = float(np.max(b[:, 2:]))
    side = max(x_max - x_min, y_max - y_min) + (crop_scale - 1.0) * face
    side = int(min(side, width, height))
    cx = 0.5 * (x_min + x_max)
    cy = 0.5 * (y_min + y_max) + 0.15 * face  # include the neck and shoulders
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return CropBox(x0, y0, side), len(chosen) / max(n, 1)


class FaceTracker:
    """Per-frame face mesh (478 refined landmarks) and person mask for one tracked person.

    With several faces in view it keeps the one nearest to the face tracked in the previous
    frame (the largest, most central face at the start).
    """

    def __init__(self, max_faces: int = 2, person_threshold: float = 0.5):
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=0.5,
            min_tracking_confidence=0.5,
        )
        self._segmenter = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        self._previous_centre: Optional[np.ndarray] = None
        self._threshold = person_threshold

    def close(self) -> None:
        self._mesh.close()
        self._segmenter.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def landmarks(self, frame: np.ndarray) -> Optional[Float[np.ndarray, "478 3"]]:
        """Landmarks in pixels: x, y, and z (depth, same scale as x; larger is farther), or None."""
        h, w = frame.shape[:2]
        result = self._mesh.process(frame)
        if not result.multi_face_landmarks:
            return None
        faces = [
            np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], dtype=np.float32)
            for face in result.multi_face_landmarks
        ]
        faces = [f for f in faces if f.shape[0] == NUM_LANDMARKS]
        if not faces:
            return None
        centres = [f[:, :2].mean(axis=0) for f in faces]
        if self._previous_centre is None:
            sizes = [np.ptp(f[:, 0]) * np.ptp(f[:, 1]) for f in faces]
            diag = np.hypot(w, h)
            scores = [s * (1 - np.linalg.norm(c - [w / 2, h / 2]) / diag) for s, c in zip(sizes, centres)]
            best = int(np.argmax(scores))
        else:
            best = int(np.argmin([np.linalg.norm(c - self._previous_centre) for c in centres]))
        self._previous_centre = centres[best]
        return faces[best]

    def person_mask(self, frame: np.ndarray) -> np.ndarray:
        """Boolean [H, W] mask of the person (selfie segmentation)."""
        result = self._segmenter.process(frame)
        return result.segmentation_mask > self._threshold
