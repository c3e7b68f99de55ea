"""Shared fixtures for the dtnerf_ns tests (tests/data, tests/models)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CLIP = REPO.parent / "shared" / "data" / "hdtf_aoc_8s.mp4"


@pytest.fixture(scope="session")
def tiny_dtnerf_dataset(tmp_path_factory) -> Path:
    """A 64 px, 24-frame dataset made once per session with dtnerf-process from the sample clip."""
    if not SAMPLE_CLIP.is_file():
        pytest.skip(f"sample clip {SAMPLE_CLIP} is absent (it lives in ../shared/data beside the repository)")
    exe = shutil.which("dtnerf-process") or str(Path(sys.executable).parent / "dtnerf-process")
    out = tmp_path_factory.mktemp("dtnerf") / "tiny"
    result = subprocess.run(
        [exe, str(SAMPLE_CLIP), "-o", str(out), "--size", "64", "--max-frames", "24"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"dtnerf-process failed:\n{result.stdout}\n{result.stderr}"
    return out
