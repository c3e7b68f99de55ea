"""Face detection, face-mesh tracking and person segmentation with mediapipe.

mediapipe 0.10.11 ships its models inside the wheel, so nothing is downloaded. It is imported
lazily so that importing this package (and every ``ns-*`` command) stays fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Iterable, Iterator, List, NamedTuple, Optional

import numpy as np
from jaxtyping import Float

from data_processing.errors import ProcessingError
from data_processing.face_regions import NUM_LANDMARKS


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silences what native code writes to stderr (TensorFlow Lite announces its XNNPACK delegate at each graph's first
    frame); Python errors still arrive as exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


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


class CropSearch(NamedTuple):
    """What :func:`find_crop` found in the sampled frames."""

    crop: CropBox
    face_rate: float
    """Fraction of sampled frames with a face."""
    face_size: float
    """Largest side of the followed face's detection box, in source pixels (after rotation)."""
    most_faces: int
    """Most faces seen at once inside the crop (1 lets the tracker skip looking for a second face)."""


def find_crop(frames: Iterable[np.ndarray], width: int, height: int, crop_scale: float = 2.6) -> CropSearch:
    """One square crop, stable over the clip, around the face as it moves.

    The square is centred on the union of the face boxes seen in ``frames`` (shifted down a
    little so neck and shoulders stay in view, as in AD-NeRF/ER-NeRF frames) and has side
    ``crop_scale`` x the largest face box plus the face's travel; it is clamped to the frame.
    """
    import mediapipe as mp

    chosen: List[np.ndarray] = []
    centres: List[List[np.ndarray]] = []
    n = 0
    previous = None
    detection = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
    with detection as detector, quiet_native_stderr():
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
            centres.append([b[:2] + b[2:] / 2 for b in boxes])
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
    inside = [sum(x0 <= c[0] < x0 + side and y0 <= c[1] < y0 + side for c in frame) for frame in centres]
    return CropSearch(CropBox(x0, y0, side), len(chosen) / max(n, 1), face, int(max(inside)))


def landmarks_in_pixels(face, width: int, height: int) -> Float[np.ndarray, "k 3"]:
    """x, y, z in pixels of one face of mediapipe's output: a serialized ``NormalizedLandmarkList`` (from
    :func:`_face_mesh_class`) or its parsed message."""
    if isinstance(face, bytes):
        # The face mesh writes every landmark as x, y, z: 17 bytes (0A 0F, then 0D x, 15 y, 1D z as fixed32).
        raw = np.frombuffer(face, np.uint8)
        records = raw.reshape(-1, 17) if len(raw) % 17 == 0 else None
        if records is not None and (records[:, [0, 1, 2, 7, 12]] == [0x0A, 0x0F, 0x0D, 0x15, 0x1D]).all():
            xyz = np.ascontiguousarray(records[:, [3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16]]).view("<f4")
            return (xyz.reshape(-1, 3) * np.array([width, height, width], np.float32)).astype(np.float32)
        from mediapipe.framework.formats import landmark_pb2  # noqa: PLC0415 - any other layout: protobuf's parser

        parsed = landmark_pb2.NormalizedLandmarkList()
        parsed.ParseFromString(face)
        face = parsed
    return np.array([(p.x * width, p.y * height, p.z * width) for p in face.landmark], dtype=np.float32)


def _face_mesh_class():
    """mediapipe's FaceMesh, returning each face's landmarks serialized. protobuf's pure-Python parser (the only one
    for protobuf 3.20 on Python 3.11) took 4 ms of the mesh's 8.4 ms per frame; :func:`landmarks_in_pixels` decodes
    the bytes with numpy."""
    import mediapipe as mp  # noqa: PLC0415
    from mediapipe.python._framework_bindings import _packet_getter  # noqa: PLC0415
    from mediapipe.python.solution_base import PacketDataType  # noqa: PLC0415

    class SerializedFaceMesh(mp.solutions.face_mesh.FaceMesh):
        def _get_packet_content(self, packet_data_type, output_packet):
            if packet_data_type == PacketDataType.PROTO_LIST and not output_packet.is_empty():
                return list(_packet_getter._get_serialized_proto_list(output_packet))
            return super()._get_packet_content(packet_data_type, output_packet)

    return SerializedFaceMesh


class FaceTracker:
    """Per-frame face mesh (478 refined landmarks) and person mask for one tracked person.

    With several faces in view it keeps the one nearest to the face tracked in the previous
    frame (the largest, most central face at the start). Pass ``max_faces=1`` when only one face can be in view
    (:attr:`CropSearch.most_faces`): mediapipe then stops re-running its face detector on every frame in search of a
    second face, 10 ms instead of 13.6 per 512-px frame on a CPU core.
    """

    def __init__(self, max_faces: int = 2, person_threshold: float = 0.5):
        import mediapipe as mp

        self._mesh = _face_mesh_class()(
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
        faces = [landmarks_in_pixels(face, w, h) for face in result.multi_face_landmarks]
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
