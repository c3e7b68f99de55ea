"""The method configs and the dataparser are registered with nerfstudio (what ns-train lists)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def test_registered_in_process():
    from nerfstudio.plugins.registry import discover_methods
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    methods, _ = discover_methods()
    assert {"dtnerf", "dtnerf-small"} <= set(methods)
    dataparsers, _ = discover_dataparsers()
    assert {"talking-head-data", "dtnerf-data"} <= set(dataparsers)


def test_ns_train_help_lists_method_and_dataparser():
    exe = shutil.which("ns-train") or str(Path(sys.executable).parent / "ns-train")
    out = subprocess.run([exe, "dtnerf", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "dtnerf-data" in out.stdout and "talking-head-data" in out.stdout
    assert "fine-stage-fraction" in out.stdout and "cache-memory-gb" in out.stdout
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert "dtnerf-small" in out.stdout
