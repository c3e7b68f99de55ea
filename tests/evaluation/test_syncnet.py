"""SyncNet: syncnet_python's network shapes and parameter names, the offset search and confidence on synthetic
distances, the face crops, and loading weights (random ones here, only to run the code)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dtnerf_ns.evaluation import syncnet, weights
from dtnerf_ns.evaluation.syncnet import (
    VSHIFT,
    SyncNetS,
    calc_pdist,
    crop_face,
    face_boxes,
    frames_at_25fps,
    load_syncnet,
    offset_and_confidence,
    sync_confidence,
)
from dtnerf_ns.evaluation.weights import WeightsUnavailable


@pytest.fixture(scope="module")
def random_net() -> SyncNetS:
    torch.manual_seed(0)
    return SyncNetS().eval()


def test_architecture_matches_syncnet_python(random_net):
    state = random_net.state_dict()
    # syncnet_python's names (its released syncnet_v2.model loads by these) and a few shapes.
    assert state["netcnnlip.0.weight"].shape == (96, 3, 5, 7, 7)
    assert state["netcnnlip.18.weight"].shape == (512, 256, 1, 6, 6)
    assert state["netcnnaud.0.weight"].shape == (64, 1, 3, 3)
    assert state["netcnnaud.18.weight"].shape == (512, 256, 5, 4)
    assert state["netfcaud.3.weight"].shape == (1024, 512) and state["netfclip.3.weight"].shape == (1024, 512)
    with torch.no_grad():
        assert random_net.forward_lip(torch.rand(2, 3, 5, 224, 224)).shape == (2, 1024)
        assert random_net.forward_aud(torch.rand(2, 1, 13, 20)).shape == (2, 1024)


def test_confidence_of_a_synthetic_distance_curve():
    shift = 3
    j = np.arange(2 * VSHIFT + 1)
    curve = np.abs(j - (VSHIFT + shift)) + 1.0  # minimum 1 at window index VSHIFT + shift
    dists = torch.tensor(np.tile(curve, (7, 1)))
    offset, confidence, min_dist = offset_and_confidence(dists)
    assert offset == -shift and min_dist == 1.0
    assert confidence == pytest.approx(np.median(curve) - 1.0)


def test_offset_search_finds_a_known_shift():
    torch.manual_seed(0)
    n, s = 20, 4
    video = torch.randn(n, 16)
    audio = torch.randn(n, 16)
    audio[s:] = video[: n - s]  # audio window i + s carries video window i
    dists = calc_pdist(video, audio)
    assert dists.shape == (n, 2 * VSHIFT + 1)
    offset, confidence, min_dist = offset_and_confidence(dists[: n - s])
    assert offset == -s and min_dist == pytest.approx(0.0, abs=1e-4) and confidence > 0


def test_face_boxes_and_crop_geometry():
    masks = [np.zeros((100, 100), bool) for _ in range(5)]
    for k in (0, 1, 3, 4):
        masks[k][20:60, 30:70] = True  # 40x40 box centred at (50, 40)
    boxes = face_boxes(masks)  # frame 2 (empty) is interpolated
    np.testing.assert_allclose(boxes, [[50, 40, 20]] * 5)
    with pytest.raises(ValueError, match="no ground-truth face mask"):
        face_boxes([np.zeros((8, 8), bool)])

    image = np.zeros((100, 100, 3), np.uint8)
    image[20:60, 30:70] = (255, 0, 0)  # the face box, red in RGB
    crop = crop_face(image, boxes[0])
    assert crop.shape == (224, 224, 3)
    # Crop: rows 20..76 and columns 22..78 of the image (2.8 half-sizes from the box's top), scaled 4x: the box
    # (red, BGR order) fills crop rows 0..160 and columns 32..192.
    assert tuple(crop[40, 112]) == (0, 0, 255) and tuple(crop[150, 40]) == (0, 0, 255)
    assert tuple(crop[200, 112]) == (0, 0, 0) and tuple(crop[100, 16]) == (0, 0, 0)
    edge = crop_face(image, np.array([5.0, 5.0, 20.0]))  # box at the corner: padded with grey 110
    assert tuple(edge[0, 0]) == (110, 110, 110)


def test_frames_at_25fps():
    np.testing.assert_array_equal(frames_at_25fps(10, 25.0), np.arange(10))
    np.testing.assert_array_equal(frames_at_25fps(10, 50.0), [0, 2, 4, 6, 8])


def test_weights_loading(tmp_path, monkeypatch, random_net):
    monkeypatch.setattr(weights, "hub_checkpoint_dir", lambda: tmp_path)
    with pytest.raises(WeightsUnavailable, match="syncnet_v2.model not in the torch hub cache.*--syncnet-weights"):
        load_syncnet(None, torch.device("cpu"))
    # Like the released file: no BatchNorm num_batches_tracked counters.
    state = {k: v for k, v in random_net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / syncnet.SYNCNET_FILE)
    net = load_syncnet(None, torch.device("cpu"))
    assert torch.equal(net.state_dict()["netfclip.3.weight"], state["netfclip.3.weight"]) and not net.training
    del state["netfcaud.3.bias"]
    torch.save(state, tmp_path / "partial.model")
    with pytest.raises(WeightsUnavailable, match="1 missing, e.g. netfcaud.3.bias"):
        load_syncnet(tmp_path / "partial.model", torch.device("cpu"))


def test_sync_confidence_runs_syncnet_python_windows(random_net):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, size=(8, 224, 224, 3), dtype=np.uint8)
    audio = rng.normal(scale=0.1, size=16000 * 8 // 25)
    result = sync_confidence(random_net, crops, audio)
    assert result["windows"] == 3  # frames 0..2 start a 5-frame window
    assert -VSHIFT <= result["av_offset"] <= VSHIFT and result["confidence"] >= 0
    with pytest.raises(ValueError, match="at least 6 frames"):
        sync_confidence(random_net, crops[:5], audio)
