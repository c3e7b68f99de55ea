"""talking-head-data dataparser (alias dtnerf-data), dataset and datamanager on a tiny processed dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from data_processing import dataset_layout as layout
from data_processing.audio_features import DEFAULT_KIND as FEATURE_KIND
from dtnerf_ns.core.data.talking_head_dataparser import TalkingHeadDataParserConfig, TalkingHeadDatasetError
from dtnerf_ns.core.data.talking_head_dataset import TalkingHeadDataset


def parse(root: Path, split: str = "train", **kwargs):
    return TalkingHeadDataParserConfig(data=root, **kwargs).setup().get_dataparser_outputs(split=split)


def test_parses_splits_cameras_and_metadata(tiny_dtnerf_dataset: Path):
    root = tiny_dtnerf_dataset
    meta = json.loads((root / layout.TRANSFORMS).read_text())
    n = meta["dtnerf"]["num_frames"]
    train, val = parse(root, "train"), parse(root, "val")
    assert len(train.image_filenames) == len(meta["train_filenames"])
    assert len(val.image_filenames) == len(meta["val_filenames"])
    assert len(train.image_filenames) + len(val.image_filenames) == n
    for out in (train, val):
        md = out.metadata
        assert md["audio_features"].shape == (n, 16, 41)  # 12 viseme + 29 log-mel channels
        assert md["blink"].shape == (n,) and md["expression"].shape[0] == n
        assert md["mouth_aabb"].shape == (2, 3)
        assert md["audio_feature_kind"] == FEATURE_KIND == meta["dtnerf"]["audio_feature_kind"]
        # times identify the frame: round(time * (N - 1)) == frame index, and back
        frames = torch.round(out.cameras.times[:, 0] * (n - 1)).long()
        assert torch.equal(frames, md["frame_indices"])
        assert torch.equal(layout.frame_of_time(out.cameras.times[:, 0], n), frames)
        assert [layout.frame_time(int(f), n) for f in frames] == pytest.approx(out.cameras.times[:, 0].tolist())
        files = md["pixel_map_files"]
        assert set(files) == {"headless", "face", "mouth", "torso"}  # the default maps (torso rebuilds head-less images)
        assert all(len(paths) == len(out.image_filenames) and all(p.is_file() for p in paths) for paths in files.values())
        # head pose: the inverse of each frame's camera-to-world, as axis-angle + translation
        assert md["head_pose"].shape == (n, 6)
        c2w = torch.tensor(meta["frames"][0]["transform_matrix"])
        rotation = torch.tensor(Rotation.from_rotvec(md["head_pose"][meta["frames"][0]["frame_index"], :3]).as_matrix())
        torch.testing.assert_close(rotation.float(), c2w[:3, :3].T, atol=1e-4, rtol=0)
        # the mouth box lies inside the scene box
        aabb = out.scene_box.aabb
        assert bool((md["mouth_aabb"][0] >= aabb[0]).all() and (md["mouth_aabb"][1] <= aabb[1]).all())
    assert int(train.cameras.width[0]) == 64


def test_downscale_and_dataset_extras(tiny_dtnerf_dataset: Path):
    out = parse(tiny_dtnerf_dataset, "train", downscale_factor=2.0)
    assert int(out.cameras.width[0]) == 32 and int(out.cameras.height[0]) == 32
    data = TalkingHeadDataset(out)[0]
    assert data["image"].shape == (32, 32, 3)
    assert data["headless"].shape == (32, 32, 3) and data["headless"].dtype == torch.float32
    assert data["face_mask"].shape == (32, 32, 1) and data["mouth_mask"].shape == (32, 32, 1)
    assert set(torch.unique(data["face_mask"]).tolist()) <= {0.0, 1.0}
    assert data["face_mask"].sum() > 0
    assert "mask" not in data  # reserved by nerfstudio (restricts ray sampling)
    assert "audio" not in data and "audio_features" not in data  # per-frame arrays never reach the pixel sampler


@pytest.fixture()
def dataset_copy(tiny_dtnerf_dataset: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(tiny_dtnerf_dataset, dst)
    return dst


def _one_line_error(root: Path) -> str:
    with pytest.raises(TalkingHeadDatasetError) as info:
        parse(root)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_not_a_dataset(tmp_path: Path):
    (tmp_path / "images").mkdir()
    message = _one_line_error(tmp_path)
    assert str(tmp_path / layout.REPORT) in message and "not a processed dataset" in message


def test_audio_windows_not_matching_frames(dataset_copy: Path):
    path = dataset_copy / layout.AUDIO_FEATURES
    np.save(path, np.load(path)[:-3])
    message = _one_line_error(dataset_copy)
    assert str(path) in message and "expected [24" in message


def test_missing_headless_image(dataset_copy: Path):
    path = layout.headless_path(dataset_copy, 5)
    path.unlink()
    message = _one_line_error(dataset_copy)
    assert str(path) in message and "missing" in message


def test_dataset_without_feature_kind_is_the_first_version(dataset_copy: Path):
    # Version-1 datasets did not record their audio features: per-utterance mean/variance-normalised log-mel.
    path = dataset_copy / layout.TRANSFORMS
    meta = json.loads(path.read_text())
    del meta["dtnerf"]["audio_feature_kind"]
    path.write_text(json.dumps(meta))
    assert parse(dataset_copy).metadata["audio_feature_kind"] == "logmel29-cmvn" != FEATURE_KIND


def test_missing_blink(dataset_copy: Path):
    (dataset_copy / layout.BLINK).unlink()
    assert str(dataset_copy / layout.BLINK) in _one_line_error(dataset_copy)


def test_datamanager_exits_with_one_line(dataset_copy: Path, capsys):
    from dtnerf_ns.core.data.talking_head_datamanager import TalkingHeadDataManagerConfig

    (dataset_copy / layout.BLINK).unlink()
    config = TalkingHeadDataManagerConfig(dataparser=TalkingHeadDataParserConfig(data=dataset_copy))
    with pytest.raises(SystemExit) as info:
        config.setup(device="cpu")
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(dataset_copy / layout.BLINK) in err


def test_fine_stage_samples_mouth_and_random_patches(tiny_dtnerf_dataset: Path):
    from dtnerf_ns.core.data.talking_head_datamanager import TalkingHeadDataManagerConfig

    config = TalkingHeadDataManagerConfig(
        dataparser=TalkingHeadDataParserConfig(data=tiny_dtnerf_dataset),
        train_num_rays_per_batch=512,
        fine_patch_size=16,
        mouth_patch_fraction=1.0,
    )
    dm = config.setup(device="cpu")
    dm.fine_stage_start = 10
    rays, batch = dm.next_train(0)
    assert "patch_size" not in batch and rays.shape[0] == 512
    rays, batch = dm.next_train(10)
    assert batch["patch_size"] == 16 and rays.shape[0] == 512 and batch["image"].shape == (512, 3)
    # patches are contiguous squares (row-major) and, with fraction 1, they touch the mouth
    idx = batch["indices"].reshape(2, 16, 16, 3)
    assert torch.equal(idx[:, :, 1:, 2] - idx[:, :, :-1, 2], torch.ones(2, 16, 15, dtype=idx.dtype))
    assert (batch["mouth_mask"].reshape(2, -1).sum(-1) > 0).all()
    assert rays.times is not None


def test_coarse_stage_puts_a_fraction_of_rays_on_the_mouth(tiny_dtnerf_dataset: Path):
    from dtnerf_ns.core.data.talking_head_datamanager import TalkingHeadDataManagerConfig

    def mouth_share(fraction: float) -> float:
        torch.manual_seed(0)
        config = TalkingHeadDataManagerConfig(
            dataparser=TalkingHeadDataParserConfig(data=tiny_dtnerf_dataset),
            train_num_rays_per_batch=1024,
            mouth_ray_fraction=fraction,
        )
        dm = config.setup(device="cpu")
        rays, batch = dm.next_train(0)
        assert rays.shape[0] == 1024 and batch["image"].shape == (1024, 3) and rays.times is not None
        # Each ray's batch values are its pixel's: re-read them through `indices` (image, y, x).
        images = {int(i): dm.train_dataset[int(i)] for i in batch["indices"][:, 0].unique()}
        for (i, y, x), colour, mouth in zip(batch["indices"][:50].tolist(), batch["image"][:50], batch["mouth_mask"][:50]):
            torch.testing.assert_close(colour, images[i]["image"][y, x])
            assert float(mouth) == float(images[i]["mouth_mask"][y, x])
        return float((batch["mouth_mask"] > 0.5).float().mean())

    area = mouth_share(0.0)  # nerfstudio's uniform sampler: the mouth's share of the image
    biased = mouth_share(0.3)
    assert area < 0.1
    assert 0.3 <= biased <= 0.3 + area + 0.05
