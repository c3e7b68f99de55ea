"""metrics.json (strict JSON), metrics.md (the paper's table shape, footnotes for unavailable metrics) and strip.png."""

from __future__ import annotations

import json
import math

import numpy as np
from PIL import Image

from dtnerf_ns.evaluation.evaluator import EvalResult
from dtnerf_ns.evaluation.output_layout import FORMAT
from dtnerf_ns.evaluation.report import MIN_TILE, markdown, strip_image, to_json, write_report


def _lip_sync(auc, offset, at_zero, reason) -> dict:
    return {"auc": auc, "offset": offset, "auc_at_zero": at_zero, "open_frames": 30, "closed_frames": 12, "frames": 150,
            "frames_with_face": 149, "opening_mean": 0.03, "opening_std": 0.01234, "max_offset": 5,
            "auc_by_offset": [0.5] * 11, "reason": reason}


def _result() -> EvalResult:
    frame = np.full((64, 64, 3), 100, np.uint8)
    metrics = {
        "psnr": {"available": True, "frame": 30.123, "face": 25.5},
        "ssim": {"available": True, "frame": 0.95, "face": float("nan")},
        "l1": {"available": True, "frame": 0.02, "face": 0.03},
        "lpips": {"available": False, "reason": "no AlexNet here"},
        "fid": {"available": True, "frame": 12.5, "face": 20.25, "frames": 3},
        "lmd": {"available": True, "value": 2.5, "unit": "pixels at 512x512", "frames_scored": 2, "no_face_render": 1,
                "no_face_ground_truth": 0},
        "sync": {"available": False, "reason": "no SyncNet here"},
        "lip_sync": {"available": True, "frames": 150, "offset_sign": "positive: the video lags the audio",
                     "ground_truth": _lip_sync(0.8512, -1, 0.7904, None), "render": _lip_sync(0.5, 0, 0.5, None),
                     "opening_pearson_r": 0.4321, "frames_compared": 149},
    }
    info = {"frames": 3, "resolution": [64, 64], "device": "cpu", "render_fps": 1.5, "dataset": "/data/me",
            "experiment": "me", "step": 29, "method": "dtnerf-small",
            "paper": {"name": "DT-NeRF", "row": {"psnr": 35.39, "lpips": 0.0169, "fid": 9.472, "lmd": 2.601, "fps": 32}}}
    strip = [{"frame_index": 21, "gt": frame, "render": frame}, {"frame_index": 23, "gt": frame, "render": frame // 2}]
    return EvalResult(metrics=metrics, per_frame=[{"frame_index": 21, "lmd": None, "psnr": math.inf}], info=info,
                      strip=strip)


def test_json_is_strict_and_complete():
    def no_constants(name):
        raise AssertionError(f"non-JSON constant {name}")

    data = json.loads(to_json(_result()), parse_constant=no_constants)
    assert data["format"] == FORMAT and data["step"] == 29 and data["strip_frames"] == [21, 23]
    assert data["metrics"]["ssim"]["face"] is None and data["per_frame"][0]["psnr"] is None
    assert data["metrics"]["lpips"] == {"available": False, "reason": "no AlexNet here"}
    assert set(data["definitions"]) == {"psnr", "ssim", "l1", "lpips", "fid", "lmd", "sync", "lip_sync"}
    assert data["metrics"]["lip_sync"]["render"]["auc_by_offset"] == [0.5] * 11


def test_markdown_table_shape():
    text = markdown(_result())
    lines = text.splitlines()
    header = "| Methods | PSNR ↑ | LPIPS ↓ | FID ↓ | LMD ↓ | SSIM ↑ | L1 ↓ | Sync ↑ | FPS |"
    start = lines.index(header)
    rows = [line.split(" | ") for line in lines[start + 2 : start + 6]]
    assert [r[0] for r in rows] == ["| Ground Truth", "| dtnerf-small (this model)", "| dtnerf-small (this model)_face",
                                    "| DT-NeRF (paper, its data)"]
    assert lines[0] == "# dtnerf-small evaluation: me"
    assert rows[0][1:5] == ["N/A", "0", "0", "0"]
    assert rows[1][1:8] == ["30.12", "n/a [1]", "12.500", "2.500", "0.9500", "0.0200", "n/a [2]"]
    assert rows[2][1:8] == ["25.50", "n/a [1]", "20.250", "–", "–", "0.0300", "–"]
    assert rows[3][1:5] == ["35.39", "0.0169", "9.472", "2.601"]
    assert "[1] LPIPS unavailable: no AlexNet here" in text and "[2] SYNC unavailable: no SyncNet here" in text
    assert "no face in 1 render(s)" in text


def test_markdown_lip_sync_section():
    result = _result()
    lines = markdown(result).splitlines()
    assert any(line.startswith("Offline lip-sync score (not SyncNet") for line in lines)
    assert "| Ground Truth | 0.851 | -1 | 0.790 | 0.0123 | 30 / 12 | 149 / 150 |" in lines
    assert "| render | 0.500 | +0 | 0.500 | 0.0123 | 30 / 12 | 149 / 150 |" in lines
    assert "Mouth opening, render vs ground truth frame by frame: Pearson r = 0.432 over 149 frames." in lines

    lip = result.metrics["lip_sync"]
    lip["render"] = _lip_sync(float("nan"), None, float("nan"), "no face found in any of the 150 frames")
    lip["opening_pearson_r"] = float("nan")
    lines = markdown(result).splitlines()
    assert "| render | – | – | – | 0.0123 | 30 / 12 | 149 / 150 |" in lines
    assert "- Render not scored: no face found in any of the 150 frames" in lines
    assert "Mouth opening, render vs ground truth frame by frame: Pearson r = – over 149 frames." in lines
    result.metrics["lip_sync"] = {"available": False, "reason": "the test frames are not one contiguous stretch"}
    assert "Unavailable: the test frames are not one contiguous stretch" in markdown(result)
    del result.metrics["lip_sync"]  # a result from before the score existed
    assert "Offline lip-sync score" not in markdown(result)


def test_a_sahs_run_is_named_and_set_beside_its_own_paper():
    result = _result()
    from dtnerf_ns.methods.sahs.sahs_model import SAHSModel

    result.info["method"] = "sahs-nerf-small"
    result.info["paper"] = {"name": SAHSModel.paper[0], "row": SAHSModel.paper[1]}
    lines = markdown(result).splitlines()
    assert lines[0] == "# sahs-nerf-small evaluation: me"
    paper = next(line for line in lines if "(paper, its data)" in line).split(" | ")
    assert paper[0] == "| SAHS-NeRF (paper, its data)"
    assert paper[1:8] == ["27.90", "0.0420", "–", "–", "0.9560", "0.0150", "3.984"]
    assert any(line.startswith("| sahs-nerf-small (this model) |") for line in lines)


def test_strip_and_files(tmp_path):
    result = _result()
    strip = strip_image(result.strip)
    assert strip.shape == (2 * MIN_TILE, 3 * MIN_TILE, 3) and strip.dtype == np.uint8
    # Second row: render is half as bright, the error column is coloured; first row: no error (dark).
    assert strip[MIN_TILE + 128, 2 * MIN_TILE + 128].mean() > strip[128, 2 * MIN_TILE + 128].mean()
    write_report(tmp_path, result)
    assert {p.name for p in tmp_path.iterdir()} == {"metrics.json", "metrics.md", "strip.png"}
    assert Image.open(tmp_path / "strip.png").size == (3 * MIN_TILE, 2 * MIN_TILE)
