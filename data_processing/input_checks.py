"""What dtnerf-process checks about its input beyond "can it be read": speech in the audio, a face large enough for
a sharp model, and a head that is upright in the frames."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from jaxtyping import Float

from data_processing.errors import ProcessingError
from data_processing.face_regions import CHIN, FOREHEAD

SILENT_DBFS = -50.0
"""An audio track whose loud moments (99th percentile of 20 ms levels) stay below this holds no speech: speech in the
sample clips peaks at -14 to -29 dBFS, their rooms' noise floors sit at -53 to -73 dBFS."""


def loud_level_dbfs(signal: Float[np.ndarray, "samples"], sample_rate: int = 16000) -> float:
    """The 99th percentile of the signal's 20 ms RMS levels, in dB below full scale."""
    hop = sample_rate // 50
    steps = len(signal) // hop
    if steps == 0:
        return -120.0
    rms = np.sqrt(np.mean(signal[: steps * hop].astype(np.float64).reshape(steps, hop) ** 2, axis=1))
    return float(20.0 * np.log10(np.percentile(rms, 99) + 1e-9))


def check_speech(signal: Float[np.ndarray, "samples"], source: Path, from_option: bool) -> None:
    """Refuses an audio track without speech: a model trained on it could never learn to move the mouth."""
    level = loud_level_dbfs(signal)
    if level < SILENT_DBFS:
        where = f"{source}" if from_option else f"the audio track of {source}"
        fix = "pass a file with the speech" if from_option else "pass the speech with --audio FILE"
        raise ProcessingError(
            f"{where} is silent (its loudest moments are {level:.0f} dBFS); the mouth could never learn to speak "
            f"from it: {fix}."
        )


def small_face_note(face_px: float, crop_px: int, size: int, crop_scale: float) -> Optional[str]:
    """A note when the face is so small in the video that its frames are enlarged to ``size`` (soft renders), with the
    face size from which they are not; None when it is fine."""
    if crop_px >= size:
        return None
    needed = size / crop_scale
    return (
        f"the face is only {face_px:.0f} px tall in the video, so its frames are enlarged {size / crop_px:.1f}x to "
        f"{size} px and the model will look soft; from a face of about {needed:.0f} px (film closer, or at a higher "
        f"resolution) the frames need no enlarging."
    )


def clockwise_rotation_to_upright(landmarks: Float[np.ndarray, "frames 478 3"]) -> int:
    """Clockwise quarter turns (0, 90, 180 or 270 degrees) that stand the tracked head upright, from the direction of
    its forehead-to-chin line (down in an upright frame)."""
    down = np.nanmedian(landmarks[:, CHIN, :2] - landmarks[:, FOREHEAD, :2], axis=0)
    angle = np.degrees(np.arctan2(down[1], down[0]))  # image axes, y down: 90 when upright
    return int(round((90.0 - angle) / 90.0)) * 90 % 360


def check_upright(landmarks: Float[np.ndarray, "frames 478 3"], video: Path, rotate: int) -> None:
    """Refuses a clip whose head lies on its side or upside down: a video stored sideways without rotation metadata.
    Masks, poses and the model all assume an upright head."""
    turn = clockwise_rotation_to_upright(landmarks)
    if turn:
        total = (rotate + turn) % 360
        raise ProcessingError(
            f"the head in {video} lies {'upside down' if turn == 180 else 'on its side'} in the frames: the video is "
            f"stored turned without rotation metadata; run again with --rotate {total} to turn it upright"
            f"{'' if not rotate else f' (instead of --rotate {rotate})'}."
        )
