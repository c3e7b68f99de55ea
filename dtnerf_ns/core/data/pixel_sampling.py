"""Which pixels of the cached frames a training batch takes: class-weighted rays, or square patches.

Both return (slot, y, x) per ray, on the CPU, with no per-step pass over the frames.

* Rays (:func:`sample_rays`): each ray first draws a class of a class map with probability ``p_i`` (the semantic map's
  12 classes, or a region mask's outside/inside), then a pixel uniformly among that class's pixels of all cached
  frames. This is SAHS-NeRF's dynamic weighted ray sampling (its Eq. 3 gives ``p``, from running per-class losses) and
  DT-NeRF's mouth-weighted rays (``p_mouth`` = the mouth fraction plus the uniform share of the rest, see
  :func:`region_fraction_probabilities`). The lips cover 1-2% of a portrait: with uniform rays a small batch gives them
  a handful per step, too few to learn a different mouth per frame. (ER-NeRF samples ~65k rays per step, enough at any
  fraction; its lip fine-tuning stage samples the lips' box.)
  How, without per-class pixel lists (8 bytes a pixel: gigabytes for a long clip): uniform candidate pixels are drawn
  and labelled (one byte read each), enough that the rarest wanted class is expected among them (``p_i / f_i`` times
  the rays, ``f_i`` its share of the pixels, counted once per cache load); each ray takes a random candidate of its
  class, which is a uniform pixel of that class. A class with no candidate this step (rarer than the cap allows)
  gives its rays to uniform candidates.
* Patches (:func:`sample_patches`): ``patch_size`` squares for image-space losses (LPIPS), a fraction of them centred
  on a pixel of a region, the rest anywhere. Rays come patch-major and row-major, so [patches * P * P] reshapes to
  [patches, P, P]. (Own sampler rather than nerfstudio's PatchPixelSampler: that one cannot bias patches towards the
  mouth, and it uses the reserved ``mask`` key.)
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from jaxtyping import Float, Int64
from torch import Tensor

from dtnerf_ns.core.data.frame_cache import CachedFrames

Pixels = Tuple[Int64[Tensor, "rays"], Int64[Tensor, "rays"], Int64[Tensor, "rays"]]
MAX_CANDIDATES_PER_RAY = 64
"""Cap on candidates per ray (a class under 1/64 of its wanted share of rays is topped up with uniform pixels)."""


def _unflatten(flat: Tensor, height: int, width: int) -> Pixels:
    return flat // (height * width), (flat // width) % height, flat % width


def region_fraction_probabilities(fraction: float, counts: Int64[Tensor, "2"]) -> Float[Tensor, "2"]:
    """Class probabilities (outside, inside) of "``fraction`` of the rays in the region, the rest uniform"."""
    inside = float(counts[1]) / max(float(counts.sum()), 1.0)
    p_inside = fraction + (1.0 - fraction) * inside
    return torch.tensor([1.0 - p_inside, p_inside])


def sample_pixels_by_class(
    frames: CachedFrames, class_map: str, probabilities: Float[Tensor, "classes"], num: int
) -> Int64[Tensor, "num"]:
    """``num`` flat pixel indices (slot * H * W + y * W + x): class ``i`` with probability ``probabilities[i]`` (classes
    without pixels in ``frames`` are left out), then uniform within the class."""
    counts = frames.class_counts[class_map].double()
    total_pixels = int(counts.sum())
    share = counts / max(total_pixels, 1)
    p = probabilities.double().clamp(min=0) * (counts > 0)
    if float(p.sum()) <= 0:
        return torch.randint(0, total_pixels, (num,))
    p = p / p.sum()
    ray_class = torch.multinomial(p.float(), num, replacement=True)
    oversample = float((p[share > 0] / share[share > 0]).max())
    num_candidates = int(min(max(1.0, 1.25 * oversample), MAX_CANDIDATES_PER_RAY) * num) + 1
    candidates = torch.randint(0, total_pixels, (num_candidates,))
    labels = frames.labels(class_map, candidates)
    order = torch.argsort(labels, stable=True)
    found = torch.bincount(labels, minlength=len(counts))[: len(counts)]
    starts = torch.cumsum(found, 0) - found
    available = found[ray_class]
    pick = (torch.rand(num) * available.clamp(min=1)).long()
    chosen = candidates[order[(starts[ray_class] + pick).clamp(max=num_candidates - 1)]]
    return torch.where(available > 0, chosen, candidates[:num])  # a class without candidates: uniform pixels


def sample_rays(
    frames: CachedFrames,
    height: int,
    width: int,
    num_rays: int,
    class_map: Optional[str] = None,
    probabilities: Optional[Float[Tensor, "classes"]] = None,
) -> Pixels:
    """``num_rays`` pixels, by class of ``class_map`` with ``probabilities`` (see module docstring), else uniform."""
    if class_map is None or probabilities is None:
        slots = torch.randint(0, frames.num_frames, (num_rays,))
        return slots, torch.randint(0, height, (num_rays,)), torch.randint(0, width, (num_rays,))
    return _unflatten(sample_pixels_by_class(frames, class_map, probabilities, num_rays), height, width)


def sample_patches(
    frames: CachedFrames, height: int, width: int, num_rays: int, patch_size: int, region: str, region_fraction: float
) -> Tuple[Int64[Tensor, "rays"], Int64[Tensor, "rays"], Int64[Tensor, "rays"], int]:
    """Square patches covering about ``num_rays`` pixels (at least one patch); returns (slot, y, x, patch side)."""
    size = max(1, min(patch_size, height, width))
    num_patches = max(1, num_rays // (size * size))
    # Expected fraction, also with a single patch: floor(f * n + U[0, 1)).
    num_region = min(num_patches, int(region_fraction * num_patches + float(torch.rand(1))))
    slots = torch.randint(0, frames.num_frames, (num_patches,))
    cy, cx = torch.randint(0, height, (num_patches,)), torch.randint(0, width, (num_patches,))
    if num_region > 0 and region in frames.class_counts and int(frames.class_counts[region][1]) > 0:
        inside = sample_pixels_by_class(frames, region, torch.tensor([0.0, 1.0]), num_region)
        slots[:num_region], cy[:num_region], cx[:num_region] = _unflatten(inside, height, width)
    top = (cy - size // 2).clamp(0, height - size)
    left = (cx - size // 2).clamp(0, width - size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    y = (top[:, None, None] + yy).flatten()
    x = (left[:, None, None] + xx).flatten()
    s = slots[:, None, None].expand(-1, size, size).flatten()
    return s, y, x, size
