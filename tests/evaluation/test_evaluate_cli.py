"""``dtnerf-eval`` end to end on the tiny trained model, and its one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dtnerf_ns.evaluation import fid, weights
from dtnerf_ns.evaluation.syncnet import SyncNetS
from dtnerf_ns.scripts import evaluate


def _run_in_process(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["dtnerf-eval", *map(str, args)])
    evaluate.entrypoint()


def test_end_to_end(tiny_trained_config: Path, tmp_path: Path, monkeypatch, capsys):
    import torchvision

    # No cached weights; random-weight networks given as files / a stand-in Inception, only to run every code path.
    monkeypatch.setattr(weights, "hub_checkpoint_dir", lambda: tmp_path / "empty-hub")
    torch.manual_seed(0)
    alexnet = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), alexnet)
    syncnet = tmp_path / "syncnet.model"
    torch.save(SyncNetS().state_dict(), syncnet)
    inception = tmp_path / "inception.pth"
    inception.write_bytes(b"")

    class MeanColour(torch.nn.Module):
        def forward(self, x):
            return x.float().mean(dim=(2, 3))

    monkeypatch.setattr(fid, "_load_inception", lambda path: MeanColour())

    out = tmp_path / "eval"
    out.mkdir()  # an earlier evaluation there is replaced as a whole
    (out / "metrics.json").write_text(json.dumps({"format": "dtnerf-eval"}))
    (out / "stale.txt").write_text("from an earlier run")
    _run_in_process(monkeypatch, "--load-config", tiny_trained_config, "--output", out, "--lpips-weights", alexnet,
                    "--fid-weights", inception, "--syncnet-weights", syncnet, "--strip-frames", "2")

    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "metrics.md", "strip.png"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial / old folders left
    data = json.loads((out / "metrics.json").read_text())
    m = data["metrics"]
    assert data["frames"] == 3 and data["resolution"] == [64, 64] and data["step"] == 29
    for name in ("psnr", "ssim", "l1", "lpips", "fid"):
        assert m[name]["available"] and isinstance(m[name]["frame"], float) and isinstance(m[name]["face"], float)
    assert 0 < m["psnr"]["frame"] < 100 and -1 <= m["ssim"]["face"] <= 1 and m["lpips"]["frame"] > 0
    lmd = m["lmd"]
    assert lmd["frames_scored"] + max(lmd["no_face_render"], lmd["no_face_ground_truth"]) <= 3
    assert lmd["available"] == (lmd["frames_scored"] > 0)
    assert m["sync"] == {"available": False, "reason": "SyncNet needs at least 6 frames at 25 fps, the test set has 3"}
    assert len(data["per_frame"]) == 3 and data["strip_frames"] == [21, 23]
    assert "| Methods | PSNR ↑ | LPIPS ↓ | FID ↓ | LMD ↓ |" in (out / "metrics.md").read_text()
    printed = capsys.readouterr().out
    assert "PSNR" in printed and f"wrote {out / 'metrics.json'}" in printed


def test_not_a_config_is_one_line(tmp_path: Path):
    exe = shutil.which("dtnerf-eval") or str(Path(sys.executable).parent / "dtnerf-eval")
    bad = tmp_path / "config.yml"
    bad.write_text("garbage: [\n")
    result = subprocess.run([exe, "--load-config", str(bad)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"dtnerf-eval: error: {bad}: not a nerfstudio config.yml (while "
                                                  "parsing a flow node)."]
    assert not (tmp_path / "eval").exists() and [p.name for p in tmp_path.iterdir()] == ["config.yml"]


def test_other_models_and_occupied_folders_are_refused(tmp_path: Path, monkeypatch, capsys):
    import yaml
    from nerfstudio.configs.method_configs import method_configs

    nerfacto = tmp_path / "run" / "config.yml"
    nerfacto.parent.mkdir()
    nerfacto.write_text(yaml.dump(method_configs["nerfacto"]))
    occupied = tmp_path / "mine"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    cases = [
        ([nerfacto], f"{nerfacto}: a 'nerfacto' model, not a talking-head model of dtnerf_ns"),
        ([tmp_path / "absent.yml"], "absent.yml: no such file"),
        ([nerfacto, "--output", occupied], f"{occupied}: holds other files (not an earlier dtnerf-eval output)"),
    ]
    for args, expected in cases:
        with pytest.raises(SystemExit) as exit_info:
            _run_in_process(monkeypatch, "--load-config", *args)
        assert exit_info.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dtnerf-eval: error: ") and expected in err[0], err
    assert (occupied / "notes.txt").read_text() == "keep me" and not (nerfacto.parent / "eval").exists()
