"""Keeping the host (CPU) memory of a training process near what it actually uses (glibc's malloc; no-ops elsewhere).

PyTorch's CPU tensors come from glibc's ``malloc``. Blocks under its (dynamic, up to 32 MB) mmap threshold are carved
from the heap and, once freed, stay mapped; a training step frees and re-allocates gigabytes of such blocks in a
different order every time, so the heap's footprint creeps up to ~2x the live memory (measured: ``ns-train dtnerf``
on the 50 s clip, CPU, 1.3 GB live per step, 5+ GB peak after 10 steps). Two remedies, both process-wide:

* :func:`return_freed_memory` (``malloc_trim``) after one-off work such as decoding the frame cache, whose decoding
  buffers otherwise stay in the heap (~0.4 GB for 1,100 frames at 512x512);
* :func:`mmap_large_blocks`: blocks from the threshold up are mapped on their own and unmapped when freed, so the
  heap no longer grows with a step's temporaries; the price is the kernel zeroing fresh pages (steps of the full
  ``dtnerf`` preset on a CPU ~1.4x slower; small presets barely allocate such blocks). Used when training on the CPU,
  where host memory holds every activation; on a GPU the host holds only the frames and the batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache
from typing import Optional

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)


@lru_cache(maxsize=1)
def _libc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # glibc only (musl has neither)
        return libc
    except (OSError, AttributeError):
        return None


def return_freed_memory() -> bool:
    """Returns the heap's free pages to the OS (glibc ``malloc_trim(0)``); True when something was released."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def mmap_large_blocks(threshold_mb: float) -> bool:
    """Makes glibc map every block of ``threshold_mb`` MB or more on its own (fixed threshold: glibc's dynamic one
    stops adjusting). True when applied."""
    libc = _libc()
    if libc is None or threshold_mb <= 0:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold_mb * 1024 * 1024)))
