"""Class-weighted ray sampling (SAHS-NeRF's dynamic weighted sampling, DT-NeRF's mouth fraction) and patches."""

import torch

from dtnerf_ns.core.data.frame_cache import CachedFrames, _count_classes
from dtnerf_ns.core.data.pixel_sampling import region_fraction_probabilities, sample_patches, sample_rays
from dtnerf_ns.core.data.talking_head_dataset import MASK_BITS

H = W = 40


def _frames() -> CachedFrames:
    """6 frames whose semantic labels have very different areas: class 0 most pixels, class 8 a 2x2 square, class 9
    none at all."""
    semantics = torch.zeros(6, H, W, dtype=torch.uint8)
    semantics[:, 10:30, 10:30] = 2
    semantics[:, 20:30, 15:25] = 7
    semantics[:, 24:26, 19:21] = 8
    semantics[:, 0:5, :] = 11
    masks = ((semantics == 7) | (semantics == 8)).to(torch.uint8) * MASK_BITS["mouth"]
    stored = {"image": torch.zeros(6, H, W, 3, dtype=torch.uint8), "masks": masks, "semantics": semantics}
    counts = {name: _count_classes(stored, name, chunk_frames=4) for name in ("semantics", "mouth")}
    return CachedFrames(torch.arange(6), stored, counts)


def test_rays_follow_the_class_probabilities_uniformly_within_a_class():
    torch.manual_seed(0)
    frames = _frames()
    p = torch.zeros(12)
    p[[0, 2, 7, 8, 9, 11]] = torch.tensor([0.1, 0.2, 0.3, 0.3, 0.5, 0.1])  # 9 has no pixels: its share is spread
    slots, y, x = sample_rays(frames, H, W, 20000, "semantics", p)
    labels = frames.stored["semantics"][slots, y, x].long()
    frequency = torch.bincount(labels, minlength=12).float() / 20000
    expected = p.clone()
    expected[9] = 0
    expected /= expected.sum()
    torch.testing.assert_close(frequency, expected, atol=0.015, rtol=0)
    # Within the rare class (4 pixels a frame) every pixel and frame is drawn about equally often.
    rare = labels == 8
    cells = torch.bincount(slots[rare] * 4 + (y[rare] - 24) * 2 + (x[rare] - 19), minlength=24).float()
    assert cells.min() > 0.6 * cells.mean()


def test_mouth_fraction_is_the_same_sampler():
    torch.manual_seed(0)
    frames = _frames()
    counts = frames.class_counts["mouth"]
    area = float(counts[1] / counts.sum())
    p = region_fraction_probabilities(0.25, counts)
    torch.testing.assert_close(p, torch.tensor([0.75 * (1 - area), 0.25 + 0.75 * area]))
    slots, y, x = sample_rays(frames, H, W, 20000, "mouth", p)
    inside = (frames.stored["masks"][slots, y, x] & MASK_BITS["mouth"]) != 0
    assert abs(float(inside.float().mean()) - float(p[1])) < 0.015


def test_uniform_without_a_class_map_and_patches_on_the_region():
    torch.manual_seed(0)
    frames = _frames()
    slots, y, x = sample_rays(frames, H, W, 5000)
    assert slots.max() == 5 and y.max() == H - 1 and x.max() == W - 1
    s, y, x, size = sample_patches(frames, H, W, 16 * 9, 4, "mouth", 1.0)
    assert size == 4 and len(s) == 9 * 16
    centres_in_mouth = (frames.stored["masks"][s, y, x] & MASK_BITS["mouth"]).view(9, 16).amax(dim=1) != 0
    assert bool(centres_in_mouth.all())
