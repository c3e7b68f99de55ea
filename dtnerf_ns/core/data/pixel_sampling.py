"""Which pixels of the cached frames a training batch takes: region-weighted rays, or square patches.

Both return (slot, y, x) per ray, on the CPU, drawn without any data-dependent shapes (region pixel lists are found
once per cache load, not per step).

* Rays: a fraction of the rays per region (e.g. DT-NeRF's quarter on the lips, ``{"mouth": 0.25}``), drawn uniformly
  among that region's pixels of all cached frames; the rest uniformly over all pixels. The lips cover 1-2% of a
  portrait: with uniform rays a small batch gives them a handful per step, too few to learn a different mouth per
  frame. (ER-NeRF samples ~65k rays per step, enough at any fraction; its lip fine-tuning stage samples the lips' box.)
* Patches: ``patch_size`` squares for image-space losses (LPIPS), a fraction of them centred on a random pixel of a
  region, the rest anywhere. Rays come patch-major and row-major, so [patches * P * P] reshapes to [patches, P, P].
  (Own sampler rather than nerfstudio's PatchPixelSampler: that one cannot bias patches towards the mouth, and it
  uses the reserved ``mask`` key.)
"""

from __future__ import annotations

from typing import Mapping, Tuple

import torch
from jaxtyping import Int64
from torch import Tensor

from dtnerf_ns.core.data.frame_cache import CachedFrames

Pixels = Tuple[Int64[Tensor, "rays"], Int64[Tensor, "rays"], Int64[Tensor, "rays"]]


def _unflatten(flat: Tensor, height: int, width: int) -> Pixels:
    return flat // (height * width), (flat // width) % height, flat % width


def sample_rays(frames: CachedFrames, height: int, width: int, num_rays: int, region_fractions: Mapping[str, float]) -> Pixels:
    """``num_rays`` pixels: ``region_fractions[kind] * num_rays`` of them in region ``kind``, the rest uniform."""
    slots = torch.randint(0, frames.num_frames, (num_rays,))
    y, x = torch.randint(0, height, (num_rays,)), torch.randint(0, width, (num_rays,))
    start = 0
    for kind, fraction in region_fractions.items():
        pixels = frames.region_pixels.get(kind)
        count = min(num_rays - start, int(fraction * num_rays)) if pixels is not None and len(pixels) else 0
        if count > 0:
            chosen = pixels[torch.randint(0, len(pixels), (count,))]
            slots[start : start + count], y[start : start + count], x[start : start + count] = _unflatten(chosen, height, width)
            start += count
    return slots, y, x


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
    pixels = frames.region_pixels.get(region)
    if num_region > 0 and pixels is not None and len(pixels) > 0:
        chosen = pixels[torch.randint(0, len(pixels), (num_region,))]
        slots[:num_region], cy[:num_region], cx[:num_region] = _unflatten(chosen, height, width)
    top = (cy - size // 2).clamp(0, height - size)
    left = (cx - size // 2).clamp(0, width - size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    y = (top[:, None, None] + yy).flatten()
    x = (left[:, None, None] + xx).flatten()
    s = slots[:, None, None].expand(-1, size, size).flatten()
    return s, y, x, size
