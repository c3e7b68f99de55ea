"""Nerfstudio's own ns-render works on dtnerf models: dataset renders of the test split, and camera paths with times."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import yaml
from PIL import Image


def ns_render(*args: str) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent  # .venv/bin: ns-render, and the ffmpeg that scripts/setup_env.sh links
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    exe = shutil.which("ns-render", path=env["PATH"]) or str(bin_dir / "ns-render")
    result = subprocess.run([exe, *args], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, f"ns-render {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def dataset_of(config_path: Path) -> Path:
    config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    return Path(config.pipeline.datamanager.data)


def test_ns_render_dataset_test_split(tiny_trained_config: Path, tmp_path: Path):
    out = tmp_path / "renders"
    ns_render("dataset", "--load-config", str(tiny_trained_config), "--split", "test", "--output-path", str(out),
              "--rendered-output-names", "rgb", "gt-rgb", "rgb_mouth")
    test_names = json.loads((dataset_of(tiny_trained_config) / "transforms.json").read_text())["test_filenames"]
    rgb = sorted((out / "test" / "rgb").glob("*"))
    assert len(rgb) == len(test_names) == len(list((out / "test" / "gt-rgb").glob("*")))
    assert len(list((out / "test" / "rgb_mouth").glob("*"))) == len(test_names)
    image = np.asarray(Image.open(rgb[0]).convert("RGB"), dtype=np.float32)
    assert image.shape == (64, 64, 3) and image.std() > 5  # composited over the head-less frame, not blank


def test_ns_render_camera_path_with_times(tiny_trained_config: Path, tmp_path: Path):
    meta = json.loads((dataset_of(tiny_trained_config) / "transforms.json").read_text())
    fov = math.degrees(2 * math.atan(meta["h"] / 2 / meta["fl_y"]))
    frames = meta["frames"][:2]
    keyframes = [
        {"camera_to_world": np.asarray(f["transform_matrix"]).reshape(-1).tolist(), "fov": fov, "aspect": 1.0,
         "render_time": float(f["time"])}
        for f in frames
    ]
    path_file = tmp_path / "camera_path.json"
    path_file.write_text(json.dumps({
        "camera_type": "perspective", "render_height": 64, "render_width": 64, "fps": 2, "seconds": 1.0,
        "camera_path": keyframes,
    }))
    video = tmp_path / "path.mp4"
    ns_render("camera-path", "--load-config", str(tiny_trained_config), "--camera-path-filename", str(path_file),
              "--output-path", str(video))
    with av.open(str(video)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 2 and decoded[0].shape[:2] == (64, 64) and decoded[0].std() > 5
