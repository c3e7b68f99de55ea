"""End-to-end: dtnerf-process on the sample clips, bad inputs, resuming."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_processing import dataset_layout as layout
from data_processing.io_utils import read_image, read_mask

from .conftest import FACE30, HDTF, need, write_video, write_wav

pytestmark = pytest.mark.slow


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "data_processing", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def error_line(result) -> str:
    """The CLI's error: exactly one line on stderr (mediapipe's own log lines aside), no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.startswith("dtnerf-process: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def no_output_left(out: Path) -> bool:
    return not out.exists() and not (out.parent / f".{out.name}.partial").exists()


def test_hdtf_sample_dataset(hdtf_dataset: Path):
    root = hdtf_dataset
    report = json.loads((root / layout.REPORT).read_text())
    assert report["frames"] == 200 and report["fps"] == 25
    assert report["split"] == {"train": 175, "test": 25}
    assert report["face_detection_rate"] == 1.0
    assert report["audio"]["feature_shape"] == [200, 16, 41]
    assert report["audio"]["feature_kind"] == "visemes12-stream+logmel29"
    assert set(report["timings_seconds"]) >= {"crop", "track", "audio", "poses", "masks", "signals"}
    assert report["pose"]["jitter_after"]["rotation_deg"] < report["pose"]["jitter_before"]["rotation_deg"]
    assert report["pose"]["reprojection_px"] < 8.0

    transforms = json.loads((root / layout.TRANSFORMS).read_text())
    frames = transforms["frames"]
    assert len(frames) == 200 and transforms["w"] == transforms["h"] == 512
    assert len(transforms["train_filenames"]) == 175 and len(transforms["test_filenames"]) == 25
    assert transforms["test_filenames"][0] == "images/000175.jpg"
    assert frames[0]["time"] == 0.0 and frames[-1]["time"] == 1.0
    c2w = np.array([f["transform_matrix"] for f in frames])
    # Plausible poses: rigid, a few face widths away, looking at the head, moving smoothly.
    np.testing.assert_allclose(np.einsum("fij,fkj->fik", c2w[:, :3, :3], c2w[:, :3, :3]), np.broadcast_to(np.eye(3), (200, 3, 3)), atol=1e-4)
    dist = np.linalg.norm(c2w[:, :3, 3], axis=1)
    assert (dist > 2).all() and (dist < 20).all()
    view = -c2w[:, :3, 2]
    assert (np.einsum("fi,fi->f", view, -c2w[:, :3, 3] / dist[:, None]) > 0.97).all()
    assert np.degrees(np.arccos(np.clip(view[:, 2] * -1, -1, 1))).max() < 45
    assert np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=1).max() < 0.5  # no jumps of half a face width
    mouth = np.array(transforms["dtnerf"]["mouth_aabb"])
    assert (mouth[0] < mouth[1]).all() and mouth[1, 1] < 0  # below the eyes/centre

    assert np.load(root / layout.AUDIO_FEATURES).shape == (200, 16, 41)
    assert np.load(root / layout.LANDMARKS).shape == (200, 478, 3)
    blink = np.load(root / layout.BLINK)
    assert blink.shape == (200,) and 0 <= blink.min() and blink.max() <= 1 and (blink > 0.5).any()
    assert np.load(root / layout.EXPRESSION).shape == (200, 76)
    for i in (0, 99, 199):
        assert read_image(layout.image_path(root, i)).shape == (512, 512, 3)
        for kind in layout.MASK_KINDS:
            assert read_mask(layout.mask_path(root, kind, i)).any(), (kind, i)
        sem = read_image(layout.semantics_path(root, i), grayscale=True)
        assert set(np.unique(sem)) >= {0, 1, 2, 3, 4, 5, 7, 10, 11}
        assert read_image(layout.headless_path(root, i)).shape == (512, 512, 3)
    sheet = read_image(root / layout.CONTACT_SHEET)
    assert sheet.shape[1] == 1024 and sheet.shape[0] > 1000


def test_nerfstudio_reads_the_transforms(hdtf_dataset: Path):
    """The layout is Nerfstudio's own: its stock dataparser reads cameras and the split."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    parser = NerfstudioDataParserConfig(data=hdtf_dataset, orientation_method="none", center_method="none", auto_scale_poses=False).setup()
    train = parser.get_dataparser_outputs("train")
    test = parser.get_dataparser_outputs("test")
    assert len(train.image_filenames) == 175 and len(test.image_filenames) == 25
    assert float(train.cameras.fx[0]) == pytest.approx(1200.0)


def test_30fps_clip_with_short_audio(tmp_path):
    out = tmp_path / "face30"
    result = run_cli(need(FACE30), "--output-dir", out)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / layout.REPORT).read_text())
    assert report["source"]["fps"] == pytest.approx(30)
    assert report["frames"] == 165  # 6.6 s at 25 fps
    assert report["split"] == {"train": 144, "test": 21}
    assert report["size"] == 512 and read_image(layout.image_path(out, 0)).shape == (512, 512, 3)
    assert 0 < report["audio"]["padded_seconds"] < 0.1
    assert "shorter than the video; padded with silence" in result.stderr
    assert np.load(out / layout.AUDIO_FEATURES).shape == (165, 16, 41)
    assert report["face_detection_rate"] == 1.0


def test_bad_inputs_one_line_and_nothing_left(tmp_path):
    out = tmp_path / "out"
    assert "video file not found" in error_line(run_cli(tmp_path / "missing.mp4", "-o", out))
    assert no_output_left(out)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert "as a video" in error_line(run_cli(text, "-o", out))
    wav = write_wav(tmp_path / "speech.wav", 3.0)
    assert "has no video stream" in error_line(run_cli(wav, "-o", out))
    silent = write_video(tmp_path / "silent.mkv", np.zeros((30, 64, 64, 3), np.uint8), fps=25)
    assert "has no audio track; pass the speech with --audio" in error_line(run_cli(silent, "-o", out))
    short = write_wav(tmp_path / "short.wav", 1.0)
    line = error_line(run_cli(need(HDTF), "-o", out, "--audio", short))
    assert "the audio is 1.00 s but the video is 8.00 s" in line
    features = tmp_path / "deepspeech.npy"
    np.save(features, np.zeros((150, 16, 29), np.float32))
    line = error_line(run_cli(need(HDTF), "-o", out, "--audio-features", features))
    assert "windows of shape [150, 16, 29] do not fit 200 frames" in line
    assert no_output_left(out)


def test_users_own_audio_features(tmp_path):
    out = tmp_path / "hubert"
    hubert = np.random.default_rng(0).normal(size=(400, 32)).astype(np.float32)  # [T, C] at 50 Hz, 8 s
    np.save(tmp_path / "hubert.npy", hubert)
    result = run_cli(need(HDTF), "-o", out, "--size", "64", "--max-frames", "40", "--audio-features", tmp_path / "hubert.npy")
    assert result.returncode == 0, result.stderr
    feats = np.load(out / layout.AUDIO_FEATURES)
    assert feats.shape == (40, 16, 32)
    np.testing.assert_array_equal(feats[10, 8], hubert[20])  # frame 10 at 25 fps = step 20
    info = json.loads((out / layout.TRANSFORMS).read_text())["dtnerf"]
    assert info["audio_feature_kind"] == "external:hubert.npy" and info["audio_window"] == [16, 32]


def test_too_few_faces_refused_with_the_count(tmp_path):
    import av

    frames = []
    with av.open(str(need(HDTF))) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= 20:
                break
            frames.append(f.to_ndarray(format="rgb24")[::4, ::4])
    frames = np.stack(frames + [np.zeros_like(frames[0])] * 30)  # a face in 20 of 50 frames
    clip = write_video(tmp_path / "mostly_empty.mkv", frames, fps=25, audio_seconds=2.0)
    out = tmp_path / "out"
    line = error_line(run_cli(clip, "-o", out, "--size", 64))
    assert "a face was found in only 20 of 50 frames (40%" in line
    assert no_output_left(out)


def test_existing_dataset_refused_unless_overwrite_and_unicode_paths(tmp_path):
    out = tmp_path / "dir with spaces" / "données é"
    ok = run_cli(need(HDTF), "-o", out, "--size", 64, "--max-frames", 24)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((out / layout.REPORT).read_text())["frames"] == 24
    again = run_cli(HDTF, "-o", out, "--size", 64, "--max-frames", 24)
    assert again.returncode == 0 and "Already processed" in again.stderr
    other = run_cli(need(FACE30), "-o", out, "--size", 64, "--max-frames", 24)
    assert "already holds a different dataset" in error_line(other)
    assert json.loads((out / layout.REPORT).read_text())["source"]["video"].endswith("hdtf_aoc_8s.mp4")
    replaced = run_cli(FACE30, "-o", out, "--size", 64, "--max-frames", 24, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((out / layout.REPORT).read_text())["source"]["video"].endswith("face_30fps_7s.mp4")
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    assert "is not empty and is not a dtnerf dataset" in error_line(run_cli(HDTF, "-o", stray, "--size", 64, "--max-frames", 24))
    assert (stray / "notes.txt").read_text() == "mine"


def test_interrupted_run_resumes(tmp_path, monkeypatch):
    from data_processing.pipeline import Pipeline, ProcessingOptions

    out = tmp_path / "ds"
    options = ProcessingOptions(size=64, max_frames=24)

    def interrupt(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Pipeline, "_stage_audio", interrupt)
    with pytest.raises(KeyboardInterrupt):
        Pipeline(need(HDTF), out, options=options).run()
    staging = tmp_path / ".ds.partial"
    assert not out.exists() and staging.is_dir()
    assert set(json.loads((staging / "stages.json").read_text())["done"]) == {"crop", "background", "track"}
    monkeypatch.undo()

    def must_not_run(self):
        raise AssertionError("finished stage was run again")

    for stage in ("crop", "background", "track"):
        monkeypatch.setattr(Pipeline, f"_stage_{stage}", must_not_run)
    report = Pipeline(HDTF, out, options=options).run()
    assert report["frames"] == 24 and not staging.exists()
    assert len(list((out / "images").glob("*.jpg"))) == 24
