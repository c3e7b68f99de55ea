"""Does the mouth of a rendered talking video follow its audio? Prints figures and writes a frame strip.

Runs mediapipe's face mesh on every frame of an mp4 written by ``dtnerf-render`` and measures the mouth opening
(inner-lip gap, landmarks 13-14, over the face height 10-152; :mod:`dtnerf_ns.evaluation.lip_sync_score`). Compares it
with the loudness of the muxed audio (RMS per video frame): speech opens the mouth, pauses close it, so the two should
correlate positively. Then the offline lip-sync score with the same audio: the ROC AUC of the mouth opening separating
open-vowel frames from p/b/m frames (pocketsphinx phones), best over AV offsets of +-0.2 s and at offset 0.
Without SyncNet weights (offline) these are the checks we can run; they are not SyncNet confidence.

    python benchmarks/lip_sync_check.py outputs/hdtf_aoc_8s/talking_speech_en_60s_10s.mp4 [--strip strip.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_processing.audio import SAMPLE_RATE, load_audio  # noqa: E402
from dtnerf_ns.evaluation.lip_sync_score import (  # noqa: E402
    audio_phone_classes,
    lip_sync_score,
    mouth_openings,
    offset_frames,
)


def read_frames(path: Path) -> tuple[list, float]:
    import av  # noqa: PLC0415

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], fps


def frame_rms(signal: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
    """RMS of 16 kHz audio over each video frame's interval."""
    per_frame = SAMPLE_RATE / fps
    return np.asarray(
        [np.sqrt(np.mean(signal[int(i * per_frame) : int((i + 1) * per_frame)] ** 2) + 1e-12) for i in range(num_frames)]
    )


def write_phone_strip(path: Path, frames: list, classes: np.ndarray, fps: float, count: int = 8) -> None:
    """Mouth crops of frames whose audio is an open vowel (top row) and p/b/m (bottom row), spread over the video."""
    from PIL import Image, ImageDraw  # noqa: PLC0415

    from dtnerf_ns.evaluation.lip_sync_score import CLOSED, OPEN  # noqa: PLC0415

    h, w = frames[0].shape[:2]
    sheet = Image.new("RGB", (110 + 160 * count, 2 * 128 + 40), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (label, name) in enumerate(((OPEN, "open vowels"), (CLOSED, "p / b / m"))):
        chosen = np.flatnonzero(classes == label)
        picks = chosen[np.linspace(0, len(chosen) - 1, min(count, len(chosen))).astype(int)] if len(chosen) else []
        y = 20 + row * 148
        draw.text((6, y + 56), name, fill="black")
        for i, k in enumerate(picks):
            crop = Image.fromarray(frames[k][h // 2 : h // 2 + h // 3, w // 4 : 3 * w // 4]).resize((160, 107))
            sheet.paste(crop, (110 + 160 * i, y + 14))
            draw.text((110 + 160 * i + 4, y), f"t={k / fps:.2f}s", fill="black")
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path)
    parser.add_argument("--strip", type=Path, default=None, help="write 8 evenly spaced mouth crops with their audio level")
    parser.add_argument("--phones", type=Path, default=None, help="write mouth crops of open-vowel and of p/b/m frames")
    args = parser.parse_args()

    frames, fps = read_frames(args.video)
    opening = mouth_openings(frames)
    signal = load_audio(args.video)  # the muxed audio, sample 0 at the first video frame
    level = frame_rms(signal, len(frames), fps)
    found = np.isfinite(opening)
    # Loudness leads the lips slightly and both are noisy per frame: correlate over a 3-frame moving average.
    kernel = np.ones(3) / 3
    smooth_open = np.convolve(np.where(found, opening, np.nanmean(opening)), kernel, mode="same")
    smooth_level = np.convolve(level, kernel, mode="same")
    r = float(np.corrcoef(smooth_open[found], smooth_level[found])[0, 1])
    quiet = level < np.percentile(level, 25)
    loud = level > np.percentile(level, 75)
    print(f"video: {args.video} ({len(frames)} frames at {fps:g} fps, face found in {found.mean():.0%})")
    print(f"mouth opening (lip gap / face height): mean {np.nanmean(opening):.4f}, std {np.nanstd(opening):.4f}")
    print(f"  quietest quarter of frames: {np.nanmean(opening[quiet & found]):.4f}")
    print(f"  loudest quarter of frames:  {np.nanmean(opening[loud & found]):.4f}")
    print(f"correlation of mouth opening with audio loudness (3-frame average): r = {r:+.3f}")
    classes = audio_phone_classes(signal, len(frames), fps)
    score = lip_sync_score(opening, classes, offset_frames(fps))
    print(
        f"lip-sync score (open vowels vs p/b/m, not SyncNet): AUC {score.auc:.3f} at offset {score.offset} frames "
        f"(positive: video lags audio), AUC at offset 0 {score.auc_at_zero:.3f}; "
        f"{score.open_frames} open-vowel / {score.closed_frames} p/b/m frames"
    )
    if score.reason:
        print(f"  not scored: {score.reason}")
    offsets = range(-score.max_offset, score.max_offset + 1)
    curve = " ".join(f"{d:+d}:{a:.2f}" for d, a in zip(offsets, score.auc_by_offset))
    print(f"  AUC by offset: {curve}")

    if args.phones is not None:
        write_phone_strip(args.phones, frames, classes, fps)
        print(f"wrote {args.phones}")
    if args.strip is not None:
        from PIL import Image, ImageDraw  # noqa: PLC0415

        picks = np.linspace(0, len(frames) - 1, 8).astype(int)
        h, w = frames[0].shape[:2]
        crop = lambda f: Image.fromarray(f[h // 2 : h // 2 + h // 3, w // 4 : 3 * w // 4]).resize((192, 128))  # noqa: E731
        sheet = Image.new("RGB", (192 * len(picks), 128 + 20), "white")
        draw = ImageDraw.Draw(sheet)
        for i, k in enumerate(picks):
            sheet.paste(crop(frames[k]), (192 * i, 20))
            draw.text((192 * i + 4, 4), f"t={k / fps:.2f}s rms={level[k]:.3f}", fill="black")
        sheet.save(args.strip)
        print(f"wrote {args.strip}")


if __name__ == "__main__":
    main()
