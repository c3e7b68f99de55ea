"""LPIPS: unavailable without the AlexNet weights; with weights (random here, only to run the code) the whole-frame and
face values behave as defined. Never downloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dtnerf_ns.evaluation import lpips_metric, weights
from dtnerf_ns.evaluation.lpips_metric import ALEXNET_FILE, LPIPSMetric
from dtnerf_ns.evaluation.weights import WeightsUnavailable


@pytest.fixture
def empty_hub(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    monkeypatch.setattr(weights, "hub_checkpoint_dir", lambda: cache)
    return cache


@pytest.fixture(scope="module")
def random_alexnet_file(tmp_path_factory) -> Path:
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("alexnet") / ALEXNET_FILE
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def test_unavailable_without_weights(empty_hub):
    with pytest.raises(WeightsUnavailable, match=f"{ALEXNET_FILE} not in the torch hub cache .*--lpips-weights"):
        LPIPSMetric(torch.device("cpu"))
    with pytest.raises(WeightsUnavailable, match="is not a file"):
        LPIPSMetric(torch.device("cpu"), empty_hub / "missing.pth")


def test_weights_that_do_not_fit_are_refused(tmp_path, empty_hub):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(WeightsUnavailable, match="does not fit"):
        LPIPSMetric(torch.device("cpu"), path)


def test_cached_weights_are_found_and_values_behave(empty_hub, random_alexnet_file):
    (empty_hub / ALEXNET_FILE).write_bytes(random_alexnet_file.read_bytes())
    metric = LPIPSMetric(torch.device("cpu"))  # from the (fake) torch hub cache
    torch.manual_seed(0)
    x = torch.rand(64, 64, 3)
    y = (x + 0.2 * torch.rand(64, 64, 3)).clamp(0, 1)
    full = torch.ones(64, 64, dtype=torch.bool)
    same = metric(x, x, full)
    assert same["lpips"] == pytest.approx(0.0, abs=1e-7) and same["lpips_face"] == pytest.approx(0.0, abs=1e-7)
    diff = metric(x, y, full)
    assert diff["lpips"] > 0
    # The spatial map averaged over the whole frame is the whole-frame value (up to the maps' bilinear upsampling).
    assert diff["lpips_face"] == pytest.approx(diff["lpips"], rel=1e-2)


def test_trunk_keys_map_onto_lpips_slices():
    state = {"features.0.weight": 0, "features.3.bias": 1, "features.10.weight": 2, "classifier.1.weight": 3}
    assert lpips_metric._trunk_state(state) == {"slice1.0.weight": 0, "slice2.3.bias": 1, "slice5.10.weight": 2}
