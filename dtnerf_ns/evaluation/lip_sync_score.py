"""An offline lip-sync score that needs no downloaded weights: does the mouth open on open vowels and close on p/b/m?

It is not SyncNet confidence (:mod:`.syncnet`, which needs syncnet_python's weights); it measures one thing lips
must do in any language, from two models that ship inside their wheels:

* Video: the mouth opening of each frame, the inner-lip gap (face-mesh landmarks 13-14) over the face height
  (landmarks 10-152), from mediapipe's face mesh; NaN where no face is found.
* Audio: pocketsphinx's all-phone decoder (:mod:`data_processing.phonetics`), run once over the whole signal. Video
  frame ``k`` covers the audio ``[k / fps, (k + 1) / fps)`` (as ``dtnerf-process`` aligns them); it is an *open*
  frame when most of the decoder's 10 ms steps in it are open vowels (``OPEN_VOWELS``), a *closed* frame when most
  are bilabials (p, b, m, where the lips must touch), and is ignored otherwise (ties are ignored too).
* Score: the ROC AUC of the mouth opening separating open frames (positives) from closed frames (negatives), i.e. the
  probability that a random open-vowel frame shows a wider mouth than a random bilabial frame (ties count one half;
  0.5 is chance, 1 perfect). It is computed for every audio-video offset ``d`` in ``-max_offset..+max_offset``
  frames (0.2 s either way by default, 5 frames at 25 fps), pairing the audio of frame ``k`` with the video frame
  ``k + d``: **a positive offset means the video lags the audio** (the mouth shows a sound ``d`` frames after it is
  heard). The best AUC over the offsets and its offset are reported with the AUC at offset 0, which is the unbiased
  figure (the best of 11 noisy AUCs is optimistic).

Also the mouth-opening spread (standard deviation over frames): a model whose mouth barely moves has a small spread.

The English phone set is only a proxy for other languages, and the decoder errs; the score is therefore below 1 even
for real video (a ground-truth row is the reference to compare a render with).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from jaxtyping import Float, Int, UInt8

from data_processing import face_regions
from data_processing.phonetics import BILABIALS, DECODER_RATE, OPEN_VOWELS, PhoneSegment, step_labels
from dtnerf_ns.evaluation.landmark_distance import LMD_SIZE, MOUTH_LANDMARKS, MouthLandmarker

UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
"""Face-mesh landmarks at the middle of the inner lip outline, top and bottom."""
MAX_OFFSET_SECONDS = 0.2
"""Audio-video offsets searched, either way (5 frames at 25 fps)."""
MIN_FRAMES_PER_CLASS = 5
"""Fewer open-vowel or bilabial frames than this give no AUC (NaN with a reason)."""

OPEN, CLOSED, IGNORED = 1, -1, 0
"""Frame classes from the audio."""

_OPEN_SET, _CLOSED_SET = frozenset(OPEN_VOWELS), frozenset(BILABIALS)


# -------------------------------------------------------------------------------------------------------- video side
def mouth_opening_of_landmarks(points: Float[np.ndarray, "478 D"]) -> float:
    """Inner-lip gap over face height (forehead 10 to chin 152), from face-mesh points in pixels (x, y first)."""
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    gap = np.linalg.norm(xy[UPPER_INNER_LIP] - xy[LOWER_INNER_LIP])
    height = np.linalg.norm(xy[face_regions.FOREHEAD] - xy[face_regions.CHIN])
    return float(gap / max(height, 1e-6))


def mouth_openings(frames: Iterable[UInt8[np.ndarray, "H W 3"]]) -> Float[np.ndarray, "frames"]:
    """Mouth opening of each RGB frame of one video (NaN where no face is found).

    Uses :class:`~data_processing.face_tracking.FaceTracker` (mediapipe's face mesh in video mode, one face): frames
    must come in time order. Frames may be a generator, so a long video need not be held in memory.
    """
    from data_processing.face_tracking import FaceTracker  # noqa: PLC0415 - lazy, loads mediapipe

    values = []
    with FaceTracker(max_faces=1) as tracker:
        for frame in frames:
            points = tracker.landmarks(frame)
            values.append(np.nan if points is None else mouth_opening_of_landmarks(points))
    return np.asarray(values, dtype=np.float64)


class OpeningLandmarker(MouthLandmarker):
    """LMD's landmarker (same mesh, same 512 px frames, same mouth points) that also measures each frame's mouth
    opening, so the evaluator runs mediapipe once per image for both LMD and the lip-sync score.

    Pass it to :class:`~dtnerf_ns.evaluation.landmark_distance.LandmarkDistance`, then read the opening of an image
    it has seen with :meth:`opening_of` (keyed by the array's identity, so keep the image alive until then).
    """

    def __init__(self):
        super().__init__()
        self._openings: Dict[int, float] = {}

    def __call__(self, image_rgb_uint8: np.ndarray) -> Optional[Float[np.ndarray, "40 2"]]:
        frame = cv2.resize(image_rgb_uint8, (LMD_SIZE, LMD_SIZE), interpolation=cv2.INTER_CUBIC)
        result = self._mesh.process(frame)
        if not result.multi_face_landmarks:
            self._openings[id(image_rgb_uint8)] = float("nan")
            return None
        points = np.array([(p.x, p.y) for p in result.multi_face_landmarks[0].landmark], dtype=np.float64)
        height, width = image_rgb_uint8.shape[:2]
        # The opening in the image's own pixels (a non-square frame is stretched to 512x512 for the mesh).
        self._openings[id(image_rgb_uint8)] = mouth_opening_of_landmarks(points * [width, height])
        return points[MOUTH_LANDMARKS] * LMD_SIZE

    def opening_of(self, image_rgb_uint8: np.ndarray) -> float:
        """The mouth opening measured when this image was last passed in (NaN: no face, or never seen); forgets it."""
        return self._openings.pop(id(image_rgb_uint8), float("nan"))


# -------------------------------------------------------------------------------------------------------- audio side
def frame_phone_classes(segments: Sequence[PhoneSegment], num_frames: int, fps: float) -> Int[np.ndarray, "frames"]:
    """OPEN / CLOSED / IGNORED per video frame: the class of most of the decoder's 10 ms steps in
    ``[k / fps, (k + 1) / fps)`` (open vowels, bilabials, anything else); a tie is IGNORED."""
    num_steps = int(np.ceil(num_frames / fps * DECODER_RATE - 1e-9)) + 1
    labels = step_labels(segments, num_steps, DECODER_RATE)
    step_class = np.array([OPEN if p in _OPEN_SET else CLOSED if p in _CLOSED_SET else IGNORED for p in labels])
    classes = np.full(num_frames, IGNORED, dtype=np.int64)
    for k in range(num_frames):
        first = int(np.ceil(k / fps * DECODER_RATE - 1e-9))
        last = max(first + 1, int(np.ceil((k + 1) / fps * DECODER_RATE - 1e-9)))  # >= 1 step even above 100 fps
        window = step_class[first:last]
        counts = {c: int(np.sum(window == c)) for c in (OPEN, CLOSED, IGNORED)}
        for c in (OPEN, CLOSED):
            if counts[c] > max(v for other, v in counts.items() if other != c):
                classes[k] = c
    return classes


def audio_phone_classes(signal: Float[np.ndarray, "samples"], num_frames: int, fps: float) -> Int[np.ndarray, "frames"]:
    """Decodes the 16 kHz ``signal`` once (sample 0 = the start of frame 0) and classes each video frame."""
    from data_processing.phonetics import phone_segments  # noqa: PLC0415 - loads pocketsphinx

    return frame_phone_classes(phone_segments(signal), num_frames, fps)


# -------------------------------------------------------------------------------------------------------- the score
def roc_auc(positive: Float[np.ndarray, "P"], negative: Float[np.ndarray, "N"]) -> float:
    """ROC AUC of scores separating ``positive`` from ``negative`` (Mann-Whitney U / (P N), average ranks for ties,
    so a tie counts one half); NaN when either is empty."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    from scipy.stats import rankdata  # noqa: PLC0415

    ranks = rankdata(np.concatenate([positive, negative]))  # average ranks: ties count 1/2
    p, n = len(positive), len(negative)
    return float((ranks[:p].sum() - p * (p + 1) / 2) / (p * n))


def offset_frames(fps: float, seconds: float = MAX_OFFSET_SECONDS) -> int:
    """The offset search's half-width in frames at ``fps``."""
    return max(0, int(round(seconds * fps)))


@dataclass
class LipSyncScore:
    """The lip-sync score of one video (see the module docstring). ``to_dict`` gives its JSON entry."""

    auc: float
    """Best AUC over the offsets (NaN: none could be computed, see ``reason``)."""
    offset: Optional[int]
    """Offset of the best AUC in frames; positive: the video lags the audio. Ties go to the smallest ``|offset|``."""
    auc_at_zero: float
    """AUC with audio and video as given."""
    open_frames: int
    """Open-vowel frames with a face (offset 0)."""
    closed_frames: int
    """Bilabial frames with a face (offset 0)."""
    frames: int
    frames_with_face: int
    opening_mean: float
    opening_std: float
    """Spread of the mouth opening over the frames with a face."""
    max_offset: int
    auc_by_offset: List[float] = field(default_factory=list)
    """AUC at offsets ``-max_offset..+max_offset``."""
    reason: Optional[str] = None
    """Why ``auc_at_zero`` is NaN (None when it is not)."""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _finite_stats(opening: np.ndarray) -> Tuple[float, float]:
    finite = opening[np.isfinite(opening)]
    return (float(finite.mean()), float(finite.std())) if len(finite) else (float("nan"), float("nan"))


def lip_sync_score(
    opening: Float[np.ndarray, "frames"],
    classes: Int[np.ndarray, "frames"],
    max_offset: int = 5,
    min_per_class: int = MIN_FRAMES_PER_CLASS,
) -> LipSyncScore:
    """The AUC of ``opening`` (video) against ``classes`` (audio) at every offset in ``-max_offset..+max_offset``.

    At offset ``d`` the audio class of frame ``k`` is paired with the opening of video frame ``k + d`` (positive
    ``d``: the video lags the audio); pairs beyond either end and frames without a face (NaN) are left out, and an
    offset with fewer than ``min_per_class`` frames of either class gets NaN.
    """
    opening = np.asarray(opening, dtype=np.float64)
    classes = np.asarray(classes)
    if opening.shape != classes.shape:
        raise ValueError(f"{len(opening)} mouth openings but {len(classes)} audio frame classes")
    n = len(opening)
    offsets = range(-max_offset, max_offset + 1)
    aucs = []
    open_frames = closed_frames = 0
    for d in offsets:
        audio_frames = np.arange(max(0, -d), min(n, n - d))
        video = opening[audio_frames + d]
        cls = classes[audio_frames]
        seen = np.isfinite(video)
        positive, negative = video[seen & (cls == OPEN)], video[seen & (cls == CLOSED)]
        enough = min(len(positive), len(negative)) >= min_per_class
        aucs.append(roc_auc(positive, negative) if enough else float("nan"))
        if d == 0:
            open_frames, closed_frames = len(positive), len(negative)
    finite = [i for i, a in enumerate(aucs) if np.isfinite(a)]
    best = max(finite, key=lambda i: (aucs[i], -abs(offsets[i]), offsets[i])) if finite else None
    faces = int(np.isfinite(opening).sum())
    reason = None
    if faces == 0:
        reason = f"no face found in any of the {n} frames"
    elif not np.isfinite(aucs[max_offset]):
        reason = (
            f"too few frames to score: {open_frames} open-vowel and {closed_frames} bilabial (p/b/m) frames with a "
            f"face, at least {min_per_class} of each needed"
        )
    mean, std = _finite_stats(opening)
    return LipSyncScore(
        auc=aucs[best] if best is not None else float("nan"),
        offset=offsets[best] if best is not None else None,
        auc_at_zero=aucs[max_offset],
        open_frames=open_frames,
        closed_frames=closed_frames,
        frames=n,
        frames_with_face=faces,
        opening_mean=mean,
        opening_std=std,
        max_offset=max_offset,
        auc_by_offset=aucs,
        reason=reason,
    )


def opening_correlation(a: Float[np.ndarray, "frames"], b: Float[np.ndarray, "frames"]) -> Tuple[float, int]:
    """Pearson r between two mouth-opening tracks frame by frame, over frames with a face in both, and that count
    (r is NaN with fewer than 3 such frames or when either track is constant)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    x, y = a[both], b[both]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:  # ptp: a constant track has std ~1e-18, not 0
        return float("nan"), int(both.sum())
    return float(np.corrcoef(x, y)[0, 1]), int(both.sum())


# -------------------------------------------------------------------------------------------------------- convenience
def lip_sync_of_frames(
    frames: Sequence[UInt8[np.ndarray, "H W 3"]],
    audio_signal: Float[np.ndarray, "samples"],
    fps: float,
    max_offset: Optional[int] = None,
) -> LipSyncScore:
    """The score of RGB frames (time order) and their 16 kHz audio (sample 0 = the start of frame 0).

    ``max_offset`` in frames; None: :data:`MAX_OFFSET_SECONDS` at ``fps``.
    """
    opening = mouth_openings(frames)
    classes = audio_phone_classes(audio_signal, len(opening), fps)
    return lip_sync_score(opening, classes, offset_frames(fps) if max_offset is None else max_offset)


def lip_sync_of_video(path: Path, max_offset: Optional[int] = None) -> LipSyncScore:
    """The score of a video file with its own audio track, at the video's frame rate (frames are streamed)."""
    from data_processing.audio import load_audio  # noqa: PLC0415
    from data_processing.video import iter_frames_at_rate, probe_video  # noqa: PLC0415

    info = probe_video(Path(path))
    # Like dtnerf-process: frame k at k / fps after the first frame, audio from its first sample.
    opening = mouth_openings(frame for _, frame in iter_frames_at_rate(info, info.fps))
    classes = audio_phone_classes(load_audio(Path(path)), len(opening), info.fps)
    return lip_sync_score(opening, classes, offset_frames(info.fps) if max_offset is None else max_offset)
