"""The offline lip-sync score on synthetic cases with known answers (AUC, offset sign, ties, NaNs, too few frames),
the phone -> frame class mapping on hand-made phone segments, and the mouth opening on real frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_processing.phonetics import PhoneSegment
from dtnerf_ns.evaluation.lip_sync_score import (
    CLOSED,
    IGNORED,
    OPEN,
    frame_phone_classes,
    lip_sync_score,
    mouth_opening_of_landmarks,
    offset_frames,
    opening_correlation,
    roc_auc,
)

SAMPLE_CLIP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hdtf_aoc_8s.mp4"


def _speech_classes(num_frames: int, seed: int = 0) -> np.ndarray:
    """Runs of 1-4 frames of open vowels, closures and other sounds, as speech has."""
    rng = np.random.default_rng(seed)
    classes: list = []
    while len(classes) < num_frames:
        classes += [rng.choice([OPEN, CLOSED, IGNORED])] * int(rng.integers(1, 5))
    return np.array(classes[:num_frames])


def _mouth_following(classes: np.ndarray, seed: int = 1) -> np.ndarray:
    """Wide open on open-vowel frames, shut on closures, in between otherwise, with a little noise."""
    rng = np.random.default_rng(seed)
    level = np.where(classes == OPEN, 0.08, np.where(classes == CLOSED, 0.0, 0.04))
    return level + rng.uniform(0, 0.01, len(classes))


def test_roc_auc_counts_ties_as_half():
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0
    assert roc_auc(np.array([1.0, 1.0]), np.array([1.0, 1.0, 1.0])) == 0.5
    # pairs: (2 vs 1) win, (2 vs 2) tie, (1 vs 1) tie, (1 vs 2) loss -> (1 + 0.5 + 0.5) / 4
    assert roc_auc(np.array([2.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(0.5)
    assert roc_auc(np.array([3.0, 1.0]), np.array([1.0])) == pytest.approx(0.75)
    assert np.isnan(roc_auc(np.array([]), np.array([1.0])))


def test_a_mouth_that_opens_on_vowels_scores_one_at_offset_zero():
    classes = _speech_classes(250)
    score = lip_sync_score(_mouth_following(classes), classes, max_offset=5)
    assert score.auc_at_zero == 1.0 and score.auc == 1.0 and score.offset == 0 and score.reason is None
    assert score.open_frames == np.sum(classes == OPEN) and score.closed_frames == np.sum(classes == CLOSED)
    assert score.frames == score.frames_with_face == 250 and len(score.auc_by_offset) == 11
    assert score.opening_std > 0.02


def test_a_still_mouth_is_chance_at_every_offset():
    classes = _speech_classes(250)
    score = lip_sync_score(np.full(250, 0.03), classes, max_offset=5)
    assert score.auc_by_offset == [0.5] * 11
    assert score.auc == 0.5 and score.offset == 0  # ties go to the smallest |offset|
    assert score.opening_std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("lag", [3, -2])
def test_a_shifted_mouth_is_found_at_its_offset(lag: int):
    """A video that lags the audio by ``lag`` frames (frame k shows the sound of audio frame k - lag): best offset =
    +lag (positive = video lags); negative lag = the video leads."""
    classes = _speech_classes(300)
    mouth = _mouth_following(classes)
    shifted = np.full(300, np.nan)  # frames with nothing to show have no face
    if lag > 0:
        shifted[lag:] = mouth[:-lag]
    else:
        shifted[:lag] = mouth[-lag:]
    score = lip_sync_score(shifted, classes, max_offset=5)
    assert score.offset == lag and score.auc == 1.0
    assert score.auc_at_zero < 0.85
    assert score.frames_with_face == 300 - abs(lag)


def test_frames_without_a_face_are_left_out():
    classes = _speech_classes(250)
    mouth = _mouth_following(classes)
    mouth[::3] = np.nan
    score = lip_sync_score(mouth, classes, max_offset=2)
    assert score.auc_at_zero == 1.0 and score.frames_with_face == 250 - len(mouth[::3])
    assert np.isfinite(score.opening_mean) and np.isfinite(score.opening_std)
    assert score.open_frames == np.sum((classes == OPEN) & np.isfinite(mouth))


def test_too_few_frames_or_no_face_give_nan_with_a_reason():
    classes = np.array([OPEN] * 20 + [CLOSED] * 3 + [IGNORED] * 10)
    score = lip_sync_score(_mouth_following(classes), classes, max_offset=2)
    assert np.isnan(score.auc) and np.isnan(score.auc_at_zero) and score.offset is None
    assert "20 open-vowel and 3 bilabial" in score.reason and "at least 5 of each" in score.reason

    blind = lip_sync_score(np.full(len(classes), np.nan), classes)
    assert np.isnan(blind.auc) and blind.reason == f"no face found in any of the {len(classes)} frames"
    assert np.isnan(blind.opening_std) and blind.frames_with_face == 0

    empty = lip_sync_score(np.zeros(0), np.zeros(0, dtype=int))
    assert np.isnan(empty.auc) and empty.reason is not None
    with pytest.raises(ValueError, match="3 mouth openings but 2"):
        lip_sync_score(np.zeros(3), np.zeros(2, dtype=int))


def test_phone_segments_to_frame_classes():
    segments = [
        PhoneSegment("SIL", 0.0, 0.04),  # frame 0: silence
        PhoneSegment("AA", 0.04, 0.12),  # frames 1, 2: open
        PhoneSegment("M", 0.12, 0.15),  # frame 3: 3 of 4 steps M, 1 of T -> closed
        PhoneSegment("T", 0.15, 0.18),  # frame 4: 2 T, then 2 of EY: a tie -> ignored
        PhoneSegment("EY", 0.18, 0.23),  # frame 5: 3 EY (open vowel), 1 B -> open
        PhoneSegment("B", 0.23, 0.24),
        PhoneSegment("IY", 0.24, 0.28),  # frame 6: a close vowel is not open -> ignored
    ]  # frame 7: past the last segment -> silence
    assert frame_phone_classes(segments, 8, 25.0).tolist() == [
        IGNORED, OPEN, OPEN, CLOSED, IGNORED, OPEN, IGNORED, IGNORED,
    ]  # fmt: skip
    # At 50 fps a frame is 2 steps: frame 6 = 0.12-0.14 s (M), frame 7 = 0.14-0.16 (M, T: tie).
    assert frame_phone_classes(segments, 10, 50.0)[6:8].tolist() == [CLOSED, IGNORED]


def test_offset_search_width_and_correlation():
    assert offset_frames(25.0) == 5 and offset_frames(30.0) == 6
    a = np.array([0.0, 1.0, 2.0, np.nan, 4.0])
    assert opening_correlation(a, 2 * a + 1) == (pytest.approx(1.0), 4)
    assert opening_correlation(a, -a) == (pytest.approx(-1.0), 4)
    r, n = opening_correlation(a, np.ones(5))
    assert np.isnan(r) and n == 4


def test_opening_of_landmarks():
    points = np.zeros((478, 3))
    points[10, :2], points[152, :2] = (50, 10), (50, 110)  # face height 100 px
    points[13, :2], points[14, :2] = (50, 70), (50, 76)  # lips 6 px apart
    assert mouth_opening_of_landmarks(points) == pytest.approx(0.06)


@pytest.mark.skipif(not SAMPLE_CLIP.is_file(), reason=f"sample clip {SAMPLE_CLIP} is absent")
def test_mouth_opening_of_real_frames():
    """mediapipe on a few real frames: finite, positive, a plausible fraction of the face height; the evaluator's
    landmarker gives LMD the same mouth points as LMD's own and about the same opening as the video tracker."""
    from itertools import islice

    from data_processing.video import iter_frames_at_rate, probe_video
    from dtnerf_ns.evaluation.landmark_distance import MouthLandmarker
    from dtnerf_ns.evaluation.lip_sync_score import OpeningLandmarker, mouth_openings

    info = probe_video(SAMPLE_CLIP)
    frames = [f for _, f in islice(iter_frames_at_rate(info, info.fps), 0, 40, 8)]  # 5 frames
    opening = mouth_openings(frames)
    assert np.all(np.isfinite(opening)) and np.all(opening > 0) and np.all(opening < 0.3)

    ours, lmd = OpeningLandmarker(), MouthLandmarker()
    try:
        for frame, tracked in zip(frames, opening):
            assert np.array_equal(ours(frame), lmd(frame))
            assert ours.opening_of(frame) == pytest.approx(tracked, abs=0.01)
            assert np.isnan(ours.opening_of(frame))  # read once
    finally:
        ours.close()
        lmd.close()
