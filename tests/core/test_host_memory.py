"""host_memory: freed blocks go back to the OS (glibc), measured in a fresh process."""

import subprocess
import sys

import pytest

from dtnerf_ns.core import host_memory

CHILD = r"""
import sys, torch
from dtnerf_ns.core.host_memory import mmap_large_blocks
def rss_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024
applied = mmap_large_blocks(float(sys.argv[1]))
warm = torch.ones(4 * 1024 * 1024)  # freeing a 16 MB mapped block raises glibc's dynamic threshold, as in training
del warm
before = rss_mb()
big, small = [], []
for i in range(40):  # 8 MB blocks interleaved with small long-lived ones: the pattern that pins a heap
    big.append(torch.ones(2 * 1024 * 1024))
    small.append(torch.ones(1024))
peak = rss_mb()
del big
print(applied, round(peak - before), round(rss_mb() - before))
"""


@pytest.mark.skipif(host_memory._libc() is None, reason="needs glibc")
def test_large_blocks_are_returned_when_freed():
    out = subprocess.run([sys.executable, "-c", CHILD, "4"], capture_output=True, text=True, check=True).stdout.split()
    applied, grown, kept = out[0] == "True", int(out[1]), int(out[2])
    assert applied
    assert grown >= 300  # 40 x 8 MB were resident
    assert kept < 40  # and went back to the OS on free


def test_no_threshold_changes_nothing():
    assert host_memory.mmap_large_blocks(0) is False
    assert isinstance(host_memory.return_freed_memory(), bool)
