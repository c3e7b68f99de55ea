"""The uint8 frame cache and the datamanager around it: stored values, bytes per frame, rotating subsets, stages."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from data_processing import dataset_layout as layout
from data_processing.io_utils import read_image, read_mask
from dtnerf_ns.core.data.frame_cache import FrameCache
from dtnerf_ns.core.data.talking_head_datamanager import TalkingHeadDataManagerConfig
from dtnerf_ns.core.data.talking_head_dataparser import TalkingHeadDataParserConfig
from dtnerf_ns.core.data.talking_head_dataset import MASK_BITS, TalkingHeadDataset


def dataset(root: Path, maps=("headless", "face", "mouth"), downscale: float = 2.0) -> TalkingHeadDataset:
    config = TalkingHeadDataParserConfig(data=root, downscale_factor=downscale, required_maps=tuple(maps))
    return TalkingHeadDataset(config.setup().get_dataparser_outputs(split="train"))


def datamanager(root: Path, **kwargs):
    config = TalkingHeadDataManagerConfig(dataparser=TalkingHeadDataParserConfig(data=root), **kwargs)
    return config.setup(device="cpu")


def test_cached_pixels_equal_the_files(tiny_dtnerf_dataset: Path):
    data = dataset(tiny_dtnerf_dataset, maps=("headless", "face", "mouth", "eyes", "semantics"))
    cache = FrameCache(data, capacity=len(data), class_maps=("mouth", "semantics"))
    size = data.size(0)
    assert size == (32, 32)
    stored = cache.current.stored
    files = data.pixel_map_files
    assert set(stored) == {"image", "masks", "semantics"}  # no second RGB image per frame
    background = read_image(tiny_dtnerf_dataset / layout.BACKGROUND, size=size)
    assert torch.equal(cache.background, torch.from_numpy(background))
    for slot, i in enumerate(cache.current.image_indices.tolist()):
        assert torch.equal(stored["image"][slot], torch.from_numpy(read_image(data.image_filenames[i], size=size)))
        semantics = read_image(files["semantics"][i], grayscale=True, size=size, nearest=True)
        assert torch.equal(stored["semantics"][slot], torch.from_numpy(semantics))
        for kind in ("face", "mouth", "eyes", "torso"):
            bits = (stored["masks"][slot] & MASK_BITS[kind]) != 0
            assert torch.equal(bits, torch.from_numpy(read_mask(files[kind][i], size=size))), (kind, i)
    # A gathered batch holds, per ray, the values nerfstudio's dataset[i] gives for that pixel.
    torch.manual_seed(0)
    slots, y, x = torch.randint(0, len(data), (200,)), torch.randint(0, 32, (200,)), torch.randint(0, 32, (200,))
    batch = cache.gather(slots, y, x)
    for r in range(0, 200, 7):
        i = int(batch["indices"][r, 0])
        item = data[i]
        for key in ("image", "headless", "face_mask", "mouth_mask", "eyes_mask", "semantics"):
            assert torch.equal(batch[key][r], item[key][int(y[r]), int(x[r])]), key
    # The head-less image is the torso's pixels over the background (data_processing.masks.headless_image): the
    # dataset's headless JPEGs hold the same picture, up to their compression.
    for i in range(3):
        rebuilt, jpeg = data[i]["headless"], torch.from_numpy(read_image(files["headless"][i], size=size)).float() / 255
        torso = torch.from_numpy(read_mask(files["torso"][i], size=size))
        torch.testing.assert_close(rebuilt[~torso], torch.from_numpy(background).float()[~torso] / 255)
        assert float((rebuilt - jpeg).abs().mean()) < 0.02
    assert batch["image"].dtype == torch.float32 and batch["semantics"].dtype == torch.int64
    # Class sizes for class-weighted sampling are exactly the mouth bits and the labels.
    mouth = int(((stored["masks"] & MASK_BITS["mouth"]) != 0).sum())
    assert cache.current.class_counts["mouth"].tolist() == [stored["masks"].numel() - mouth, mouth] and mouth > 0
    assert torch.equal(cache.current.class_counts["semantics"], torch.bincount(stored["semantics"].reshape(-1).long(), minlength=12))
    torch.testing.assert_close(batch["background"], cache.background[y, x].float() / 255)


def test_bytes_per_frame_are_uint8(tiny_dtnerf_dataset: Path):
    """DT-NeRF's frames take 4 bytes a pixel (image 3, all masks 1: the head-less image is rebuilt); semantics add 1."""
    for maps, per_pixel in ((("headless", "face", "mouth"), 4), (("headless", "face", "mouth", "eyes", "semantics"), 5)):
        data = dataset(tiny_dtnerf_dataset, maps=maps)
        cache = FrameCache(data, capacity=len(data))
        assert data.bytes_per_frame() == 32 * 32 * per_pixel
        assert cache.nbytes() == len(data) * 32 * 32 * per_pixel
        assert all(t.dtype == torch.uint8 and t.device.type == "cpu" for t in cache.current.stored.values())


def test_rotating_subsets_are_prefetched_and_swapped(tiny_dtnerf_dataset: Path):
    data = dataset(tiny_dtnerf_dataset)
    cache = FrameCache(data, capacity=5, refresh_every=3, seed=0)
    assert cache.rotates and cache.current.num_frames == 5
    first = cache.current.image_indices.tolist()
    cache.step(2)  # not due yet
    assert cache.current.image_indices.tolist() == first
    deadline = time.time() + 30
    while not cache._next.done() and time.time() < deadline:  # noqa: SLF001 - wait for the background decode
        time.sleep(0.05)
    cache.step(3)
    second = cache.current.image_indices.tolist()
    assert len(second) == 5 and second != first and cache.nbytes() == 5 * data.bytes_per_frame()
    assert cache._next is not None  # noqa: SLF001 - the next subset is being decoded already
    cache.close()


def test_cache_capacity_follows_the_memory_budget(tiny_dtnerf_dataset: Path):
    dm = datamanager(tiny_dtnerf_dataset)
    n, per_frame = len(dm.train_dataset), dm.train_dataset.bytes_per_frame()
    assert dm.train_cache is None  # built on first use, not when an eval or render tool loads the run
    assert dm.train_cache_capacity() == n
    dm.config.cache_memory_gb = 6 * per_frame / 1e9  # room for 6 frames: two subsets of 3
    assert dm.train_cache_capacity() == 3
    dm.config.train_num_images_to_sample_from = 4  # nerfstudio's setting wins
    assert dm.train_cache_capacity() == 4
    rays, batch = dm.next_train(0)
    assert dm.train_cache.rotates and dm.train_cache.current.num_frames == 4 and rays.shape[0] == 1024
    assert set(batch["indices"][:, 0].tolist()) <= set(dm.train_cache.current.image_indices.tolist())


def _callbacks(dm, iterations: int):
    trainer = SimpleNamespace(config=SimpleNamespace(max_num_iterations=iterations))
    return dm.get_training_callbacks(SimpleNamespace(trainer=trainer, optimizers=None, grad_scaler=None, pipeline=None))


def test_fine_stage_starts_at_the_configured_fraction(tiny_dtnerf_dataset: Path):
    dm = datamanager(tiny_dtnerf_dataset, fine_stage_fraction=0.75, train_num_rays_per_batch=256, fine_patch_size=8)
    _callbacks(dm, 20)
    assert dm.fine_stage_start == 15
    assert "patch_size" not in dm.next_train(14)[1]
    assert dm.next_train(15)[1]["patch_size"] == 8
    no_fine = datamanager(tiny_dtnerf_dataset)
    _callbacks(no_fine, 20)
    assert no_fine.fine_stage_start is None and "patch_size" not in no_fine.next_train(19)[1]


@pytest.mark.parametrize("fraction, iterations", [(0.99, 10), (0.01, 10)])
def test_a_fine_stage_that_never_runs_is_refused(tiny_dtnerf_dataset: Path, capsys, fraction, iterations):
    dm = datamanager(tiny_dtnerf_dataset, fine_stage_fraction=fraction)
    with pytest.raises(SystemExit) as info:
        _callbacks(dm, iterations)
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would never run" in err[0] and "--max-num-iterations 10" in err[0]


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_a_fraction_outside_zero_one_is_refused(tiny_dtnerf_dataset: Path, capsys, fraction):
    with pytest.raises(SystemExit) as info:
        datamanager(tiny_dtnerf_dataset, fine_stage_fraction=fraction)
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fine-stage-fraction" in err[0] and "(0, 1)" in err[0]


def test_eval_batches_come_from_a_small_cache(tiny_dtnerf_dataset: Path):
    dm = datamanager(tiny_dtnerf_dataset, eval_num_rays_per_batch=64)
    rays, batch = dm.next_eval(0)
    assert rays.shape[0] == 64 and batch["image"].shape == (64, 3)
    assert dm.eval_cache.current.num_frames == min(16, len(dm.eval_dataset))
    assert np.isin(batch["indices"][:, 0].numpy(), np.arange(len(dm.eval_dataset))).all()
