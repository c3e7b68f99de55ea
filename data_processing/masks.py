"""Per-frame region masks, the semantic map and the head-less image, from landmarks and the person mask."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Tuple

import cv2
import numpy as np
from jaxtyping import Bool, Float, UInt8

from data_processing import face_regions as fr
from data_processing.semantic_classes import CLASS_ID


@dataclass
class FrameMasks:
    """Boolean [H, W] masks of one frame."""

    face: np.ndarray
    """Inside the face-mesh outline (forehead to chin, cheek to cheek)."""
    mouth: np.ndarray
    """Lips and inner mouth, dilated by ``mouth_dilation`` of the face width."""
    eyes: np.ndarray
    person: np.ndarray
    """Selfie segmentation."""
    head: np.ndarray
    """Person above the jaw line, plus the face: hair, ears and face."""
    neck: np.ndarray
    torso: np.ndarray
    """Person minus head and neck."""


def _fill(shape, polygons) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, polygons, 1)
    return canvas.astype(bool)


@lru_cache(maxsize=8)
def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by a disk, computed on the mask's bounding box grown by the radius (the rest stays empty): a face
    part is a few per cent of the frame, and a whole-frame dilation cost 1.5 ms."""
    if radius <= 0:
        return mask
    mask_u8 = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8)
    x, y, w, h = cv2.boundingRect(mask_u8)
    if w == 0:
        return np.zeros_like(mask, dtype=bool)
    y0, y1 = max(0, y - radius), min(mask.shape[0], y + h + radius)
    x0, x1 = max(0, x - radius), min(mask.shape[1], x + w + radius)
    out = np.zeros_like(mask, dtype=bool)
    # Border pixels of the box outside the image count as empty, as in a whole-frame dilation.
    roi = mask_u8[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = cv2.dilate(roi, _disk(radius), borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    return out


def _masked_median(image: UInt8[np.ndarray, "h w c"], mask: Bool[np.ndarray, "h w"], channels: Tuple[int, ...]) -> np.ndarray:
    """``np.median(image[mask][:, channels], axis=0)`` from the channels' histograms under the mask (the same numbers;
    ~20x faster than gathering and sorting a face's ~40k pixels)."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    image, mask_u8 = image[y : y + h, x : x + w], mask[y : y + h, x : x + w].view(np.uint8)  # histograms of the box only
    n = int(np.count_nonzero(mask_u8))
    out = np.empty(len(channels), np.float64)
    for i, c in enumerate(channels):
        cumulative = np.cumsum(cv2.calcHist([np.ascontiguousarray(image)], [c], np.ascontiguousarray(mask_u8), [256], [0, 256])[:, 0])
        lower = int(np.searchsorted(cumulative, (n - 1) // 2 + 1))  # the ((n - 1) // 2)-th smallest value
        upper = int(np.searchsorted(cumulative, n // 2 + 1))  # the (n // 2)-th smallest value
        out[i] = 0.5 * (lower + upper)
    return out


def face_width(landmarks: Float[np.ndarray, "478 3"]) -> float:
    return float(np.linalg.norm(landmarks[fr.LEFT_CHEEK, :2] - landmarks[fr.RIGHT_CHEEK, :2]))


def frame_masks(
    landmarks: Float[np.ndarray, "478 3"],
    person: Bool[np.ndarray, "h w"],
    image: UInt8[np.ndarray, "h w 3"],
    mouth_dilation: float = 0.04,
    neck_length: float = 0.6,
    skin_tolerance: float = 14.0,
) -> FrameMasks:
    """Region masks of one frame.

    Args:
        landmarks: face-mesh landmarks in pixels.
        person: selfie-segmentation mask.
        image: the RGB frame (the neck is told from clothing by its skin colour).
        mouth_dilation: dilation of the lips outline, as a fraction of the face width.
        neck_length: how far below the chin the neck may reach, as a fraction of the face height.
        skin_tolerance: largest Cr/Cb distance from the face's median skin colour for neck pixels.
    """
    h, w = person.shape
    xy = landmarks[:, :2]
    fw = face_width(landmarks)
    face_h = float(np.linalg.norm(xy[fr.FOREHEAD] - xy[fr.CHIN]))
    face = _fill((h, w), [fr.outline(xy, fr.FACE_OVAL)])
    mouth = _dilate(_fill((h, w), [fr.outline(xy, fr.LIPS_OUTER)]), int(round(mouth_dilation * fw)))
    eyes = _dilate(_fill((h, w), [fr.outline(xy, fr.RIGHT_EYE), fr.outline(xy, fr.LEFT_EYE)]), max(1, int(0.01 * fw)))

    # Above the jaw line: the jaw from one jaw angle down round the chin to the other,
    # continued sideways to the image edges at the jaw angles' height (so ears, ear lobes and
    # hair beside the face count as head), closed along the top of the image.
    oval = fr.FACE_OVAL
    a, b = oval.index(fr.LEFT_JAW_ANGLE), oval.index(fr.RIGHT_JAW_ANGLE)
    jaw = xy[oval[a : b + 1]]  # left jaw angle -> chin -> right jaw angle, in outline order
    edge_left, edge_right = (w, -1) if jaw[0, 0] > jaw[-1, 0] else (-1, w)
    above = np.concatenate(
        [[[edge_left, jaw[0, 1]]], jaw, [[edge_right, jaw[-1, 1]], [edge_right, -1], [edge_left, -1]]]
    )
    above_jaw = _fill((h, w), [np.round(above).astype(np.int32)])
    head = (person & above_jaw) | face

    # Neck: skin-coloured person pixels below the jaw, within the jaw's width, down to
    # neck_length x face height, connected to the face (so a collar or jacket stays torso).
    chin = xy[fr.CHIN]
    cx = 0.5 * (xy[fr.LEFT_CHEEK, 0] + xy[fr.RIGHT_CHEEK, 0])
    band = np.zeros((h, w), bool)
    x0, x1 = int(max(0, cx - 0.38 * fw)), int(min(w, cx + 0.38 * fw))
    y1 = int(min(h, chin[1] + neck_length * face_h))
    band[:y1, x0:x1] = True
    candidates = person & band & ~head
    neck = np.zeros((h, w), bool)
    if y1 > 0 and x1 > x0 and candidates[:y1, x0:x1].any():
        # Skin test on the band only, with cv2.inRange on 8-bit Cr/Cb (fast).
        ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
        skin_ref = _masked_median(ycrcb, face & ~mouth & ~eyes, channels=(1, 2))
        lo = np.array([0, *(skin_ref - skin_tolerance)]).clip(0, 255)
        hi = np.array([255, *(skin_ref + skin_tolerance)]).clip(0, 255)
        roi = candidates[:y1, x0:x1] & (cv2.inRange(ycrcb[:y1, x0:x1], lo, hi) > 0)
        _, labels = cv2.connectedComponents(roi.astype(np.uint8), connectivity=8)
        touching = np.unique(labels[_dilate(face[:y1, x0:x1], 3) & roi])
        neck[:y1, x0:x1] = np.isin(labels, touching[touching > 0])
    torso = person & ~head & ~neck
    return FrameMasks(face=face, mouth=mouth, eyes=eyes, person=person, head=head, neck=neck, torso=torso)


def semantic_map(landmarks: Float[np.ndarray, "478 3"], masks: FrameMasks) -> UInt8[np.ndarray, "h w"]:
    """Label map with the 12 SAHS classes (see ``semantic_classes``); later rules overwrite earlier ones."""
    h, w = masks.person.shape
    xy = landmarks[:, :2]
    fw = face_width(landmarks)
    sem = np.zeros((h, w), np.uint8)
    sem[masks.torso] = CLASS_ID["torso"]
    sem[masks.neck] = CLASS_ID["neck"]
    sem[masks.head] = CLASS_ID["hair"]

    # Ears: beside the face outline, from eyebrow to nose-bottom height, within 0.2 face widths.
    y_top = min(xy[fr.RIGHT_EYEBROW, 1].min(), xy[fr.LEFT_EYEBROW, 1].min())
    y_bottom = xy[fr.NOSE_BOTTOM, 1]
    ears = np.zeros((h, w), bool)
    for cheek in (fr.RIGHT_CHEEK, fr.LEFT_CHEEK):
        x = xy[cheek, 0]
        ears[int(max(0, y_top)) : int(max(0, y_bottom)), int(max(0, x - 0.2 * fw)) : int(max(0, x + 0.2 * fw))] = True
    sem[ears & masks.head & ~masks.face] = CLASS_ID["ears"]

    sem[masks.face] = CLASS_ID["skin"]
    nose = cv2.convexHull(fr.outline(xy, fr.nose_points()))
    brow_r = max(1, int(0.012 * fw))
    for name, polygons, grow in (
        ("nose", [nose], 0),
        ("eyebrows", [fr.outline(xy, fr.RIGHT_EYEBROW), fr.outline(xy, fr.LEFT_EYEBROW)], brow_r),
        ("eyes", [fr.outline(xy, fr.RIGHT_EYE), fr.outline(xy, fr.LEFT_EYE)], 0),
        ("lips", [fr.outline(xy, fr.LIPS_OUTER)], 0),
        ("inner_mouth", [fr.outline(xy, fr.LIPS_INNER)], 0),
    ):
        sem[_dilate(_fill((h, w), polygons), grow)] = CLASS_ID[name]
    return sem


def headless_image(
    frame: UInt8[np.ndarray, "h w 3"], background: UInt8[np.ndarray, "h w 3"], masks: FrameMasks
) -> UInt8[np.ndarray, "h w 3"]:
    """The frame's torso over the static background, with head and neck removed.

    This is what the head NeRF is composited over (ER-NeRF's ``bg + torso`` image).
    """
    out = background.copy()
    out[masks.torso] = frame[masks.torso]
    return out


class BackgroundAccumulator:
    """Static background from pixels the person never covers, averaged over the clip.

    Pixels covered in every frame are filled by inpainting from their surroundings.
    """

    def __init__(self, height: int, width: int, margin: int = 4):
        self.sum = np.zeros((height, width, 3), np.float64)
        self.count = np.zeros((height, width), np.int32)
        self.margin = margin

    def add(self, frame: np.ndarray, person: np.ndarray) -> None:
        # Stay clear of the segmentation's soft edge; cv2.accumulate is ~10x faster than numpy indexing.
        free = (~_dilate(person, self.margin)).astype(np.uint8)
        cv2.accumulate(frame, self.sum, mask=free)
        self.count += free

    def result(self) -> tuple:
        """Background RGB uint8 and the fraction of pixels that had to be filled."""
        seen = self.count > 0
        bg = np.zeros(self.sum.shape, np.uint8)
        bg[seen] = np.round(self.sum[seen] / self.count[seen, None]).astype(np.uint8)
        missing = ~seen
        if missing.any():
            if seen.any():
                bg = cv2.inpaint(bg, missing.astype(np.uint8), 5, cv2.INPAINT_TELEA)
            else:
                bg[:] = 255  # the person covers everything: fall back to white, like ER-NeRF's default
        return bg, float(missing.mean())
