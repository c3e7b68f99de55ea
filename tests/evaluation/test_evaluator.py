"""The evaluator on a stand-in pipeline whose "renders" are the ground truth itself: every metric must give its
perfect score (PSNR at the 100 dB cap, SSIM 1, L1 0, LPIPS 0, FID 0, LMD 0, equal SyncNet confidence for render and
ground truth); without weights the learned metrics are unavailable with the reason and the rest is still computed.
The offline lip-sync score's plumbing (test frames in time order, the audio of their span) on stand-in openings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from data_processing import dataset_layout
from data_processing.audio import SAMPLE_RATE, write_wav
from dtnerf_ns.evaluation import evaluator, fid, weights
from dtnerf_ns.evaluation.evaluator import EvalOptions, evaluate
from dtnerf_ns.evaluation.lip_sync_score import CLOSED, IGNORED, OPEN
from dtnerf_ns.evaluation.syncnet import SyncNetS

NUM_FRAMES = 8  # SyncNet needs at least 6


class _Cameras:
    def __init__(self, n: int, size: int):
        self.width = torch.full((n, 1), size)
        self.height = torch.full((n, 1), size)

    def to(self, device):
        return self

    def __getitem__(self, index: slice) -> int:
        return index.start  # the stand-in model renders by index


class _Dataset:
    """The first NUM_FRAMES frames of a dtnerf-process dataset, as TalkingHeadDataset items."""

    def __init__(self, root: Path):
        self.pixel_map_files = {"face": [dataset_layout.mask_path(root, "face", i) for i in range(NUM_FRAMES)]}
        self.images = [np.asarray(Image.open(dataset_layout.image_path(root, i))) for i in range(NUM_FRAMES)]
        self.cameras = _Cameras(NUM_FRAMES, self.images[0].shape[0])
        self.metadata = {"frame_indices": torch.arange(NUM_FRAMES), "fps": 25.0, "data_dir": root}

    def __len__(self) -> int:
        return NUM_FRAMES

    def size(self, i: int):
        return self.images[i].shape[1], self.images[i].shape[0]

    def __getitem__(self, i: int):
        mask = np.asarray(Image.open(self.pixel_map_files["face"][i]).convert("L")) > 127
        return {
            "image": torch.from_numpy(self.images[i] / 255.0).float(),
            "face_mask": torch.from_numpy(mask[..., None].astype(np.float32)),
        }


class _PerfectModel:
    device = torch.device("cpu")

    def __init__(self, dataset: _Dataset):
        self.dataset = dataset

    def render_final_frame(self, index: int):
        return {"rgb": self.dataset[index]["image"].clone()}


class _Downsampled(torch.nn.Module):
    """Stands in for Inception: 4x4 average-pooled pixels as 48 features."""

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x.float(), 4).flatten(1)


class _Pipeline:
    def __init__(self, root: Path):
        dataset = _Dataset(root)
        self.datamanager = type("DataManager", (), {"eval_dataset": dataset})()
        self.model = _PerfectModel(dataset)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(weights, "hub_checkpoint_dir", lambda: tmp_path / "hub")
    return tmp_path / "hub"


def test_perfect_renders_score_perfectly(tiny_dtnerf_dataset: Path, tmp_path: Path, empty_hub, monkeypatch):
    torch.manual_seed(0)  # random weights: only to run LPIPS and SyncNet (identical inputs score perfectly anyway)
    alexnet, syncnet, inception = tmp_path / "alexnet.pth", tmp_path / "syncnet.model", tmp_path / "inception.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), alexnet)
    torch.save(SyncNetS().state_dict(), syncnet)
    inception.write_bytes(b"")
    monkeypatch.setattr(fid, "_load_inception", lambda path: _Downsampled())

    frames, stages = [], []
    result = evaluate(
        _Pipeline(tiny_dtnerf_dataset),
        EvalOptions(lpips_weights=alexnet, fid_weights=inception, syncnet_weights=syncnet, strip_frames=3),
        on_frame=lambda: frames.append(1),
        on_stage=stages.append,
    )
    m = result.metrics
    assert len(frames) == NUM_FRAMES and stages == ["FID", "SyncNet", "lip sync"]
    assert m["psnr"] == {"available": True, "frame": pytest.approx(100.0), "face": pytest.approx(100.0)}
    assert m["ssim"]["frame"] == pytest.approx(1.0, abs=1e-5) and m["ssim"]["face"] == pytest.approx(1.0, abs=1e-5)
    assert m["l1"]["frame"] == 0.0 and m["l1"]["face"] == 0.0
    assert m["lpips"]["frame"] == pytest.approx(0.0, abs=1e-7) and m["lpips"]["face"] == pytest.approx(0.0, abs=1e-7)
    assert m["fid"]["frame"] == pytest.approx(0.0, abs=1e-6) and m["fid"]["face"] == pytest.approx(0.0, abs=1e-6)
    assert m["lmd"]["available"] and m["lmd"]["value"] == 0.0
    assert m["lmd"]["frames_scored"] + m["lmd"]["no_face_ground_truth"] == NUM_FRAMES
    sync = m["sync"]
    assert sync["available"] and sync["frames"] == NUM_FRAMES and sync["render"]["windows"] == NUM_FRAMES - 5
    assert sync["render"] == sync["ground_truth"]  # identical crops, identical audio
    assert [s["frame_index"] for s in result.strip] == [0, 4, 7] and result.info["resolution"] == [64, 64]
    assert [r["frame_index"] for r in result.per_frame] == list(range(NUM_FRAMES))
    # 8 frames cannot hold 5 open-vowel and 5 p/b/m frames; the openings are measured once per image, equal here.
    assert not m["lip_sync"]["available"] and m["lip_sync"]["reason"].startswith("lip-sync score: ")
    for row in result.per_frame:
        assert np.array_equal(row["mouth_opening"], row["mouth_opening_gt"], equal_nan=True)


def test_missing_weights_are_reported_not_fatal(tiny_dtnerf_dataset: Path, empty_hub):
    result = evaluate(_Pipeline(tiny_dtnerf_dataset), EvalOptions())
    m = result.metrics
    assert m["lpips"] == {
        "available": False,
        "reason": f"LPIPS AlexNet weights: alexnet-owt-7be5be79.pth not in the torch hub cache {empty_hub}; "
        "pass --lpips-weights PATH",
    }
    assert not m["fid"]["available"] and m["fid"]["reason"].endswith("pass --fid-weights PATH")
    assert m["sync"] == {
        "available": False,
        "reason": f"SyncNet weights: syncnet_v2.model not in the torch hub cache {empty_hub}; "
        "pass --syncnet-weights PATH",
    }
    assert m["psnr"]["frame"] == pytest.approx(100.0) and m["lmd"]["available"]


def test_lip_sync_of_a_shuffled_test_split(tmp_path: Path, monkeypatch):
    """Test frames 100..139 held out of order: the openings are put in time order and scored against the phone
    classes of their frames, decoded once from the whole audio.wav (frame k at k / 25 s)."""
    fps, first, num = 25.0, 100, 40
    write_wav(tmp_path / dataset_layout.AUDIO_WAV, np.linspace(-0.5, 0.5, 8 * SAMPLE_RATE, dtype=np.float32))
    dataset = type("Dataset", (), {"metadata": {"data_dir": tmp_path}})()
    rng = np.random.default_rng(0)
    in_time = np.array([OPEN, OPEN, IGNORED, CLOSED] * (num // 4))
    perm = rng.permutation(num)  # dataset order -> time order
    frame_indices = first + perm
    gt = np.where(in_time == OPEN, 0.08, np.where(in_time == CLOSED, 0.0, 0.04))[perm]
    render = np.full(num, 0.03)
    render[perm == 7] = np.nan  # no face in one render
    heard = []

    def classes_of(audio, num_frames, rate):
        heard.append(audio)
        assert (num_frames, rate) == (first + num, fps)
        return np.concatenate([np.full(first, IGNORED), in_time])

    monkeypatch.setattr(evaluator, "audio_phone_classes", classes_of)
    entry = evaluator._lip_sync_metric(dataset, frame_indices, fps, {"render": list(render), "gt": list(gt)})
    expected = np.linspace(-0.5, 0.5, 8 * SAMPLE_RATE)
    assert len(heard) == 1 and np.allclose(heard[0], expected, atol=1e-4)  # decoded once, for both
    assert entry["available"] and entry["frames"] == num and entry["frames_compared"] == num - 1
    assert entry["ground_truth"]["auc_at_zero"] == 1.0 and entry["ground_truth"]["offset"] == 0
    assert entry["render"]["auc_at_zero"] == 0.5 and entry["render"]["frames_with_face"] == num - 1
    assert entry["ground_truth"]["opening_std"] > 0.03 and entry["render"]["opening_std"] < 1e-12
    assert np.isnan(entry["opening_pearson_r"])  # a still render mouth has no correlation

    gaps = evaluator._lip_sync_metric(dataset, frame_indices * 2, fps, {"render": list(render), "gt": list(gt)})
    assert gaps == {"available": False, "reason": "the test frames are not one contiguous stretch of the clip"}
    blind = evaluator._lip_sync_metric(dataset, frame_indices, fps, {"render": [np.nan] * num, "gt": [np.nan] * num})
    assert blind == {"available": False, "reason": f"lip-sync score: no face found in any of the {num} frames"}
