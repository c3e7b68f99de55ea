"""SAHS-NeRF's dynamic weighted ray sampling: Eq. 3 from running class losses, the floor, checkpoints, and the rays
the datamanager's sampler then draws."""

import pytest
import torch

from data_processing.semantic_classes import SEMANTIC_CLASSES
from dtnerf_ns.core.data.frame_cache import CachedFrames, _count_classes
from dtnerf_ns.core.data.pixel_sampling import sample_rays
from dtnerf_ns.methods.sahs.dynamic_ray_weights import DynamicRayWeights, class_weight_vector

K = len(SEMANTIC_CLASSES)


def _frames() -> CachedFrames:
    """8 frames of 32x32 whose label map holds every class but glasses, in bands of different widths."""
    semantics = torch.zeros(8, 32, 32, dtype=torch.uint8)
    widths = [8, 4, 4, 2, 2, 2, 2, 1, 1, 0, 2, 4]  # columns per class (glasses: none)
    column = 0
    for label, width in enumerate(widths):
        semantics[:, :, column : column + width] = label
        column += width
    stored = {"image": torch.zeros(8, 32, 32, 3, dtype=torch.uint8), "semantics": semantics}
    return CachedFrames(torch.arange(8), stored, {"semantics": _count_classes(stored, "semantics")})


def test_weights_by_name_and_eq3_probabilities():
    omega = class_weight_vector(SEMANTIC_CLASSES, {"lips": 1.1, "inner_mouth": 1.1})
    assert omega[SEMANTIC_CLASSES.index("lips")] == pytest.approx(1.1) and omega[0] == 1.0 and omega.sum() == pytest.approx(K + 0.2)
    with pytest.raises(ValueError, match="unknown semantic classes"):
        class_weight_vector(SEMANTIC_CLASSES, {"mouth": 2.0})
    weights = DynamicRayWeights(omega, floor=0.0)
    table = torch.linspace(0.1, 1.2, K)
    weights.class_loss.copy_(table)
    expected = omega * table / (omega * table).sum()
    torch.testing.assert_close(weights.probabilities(), expected)


def test_sampled_rays_follow_the_probabilities_of_a_known_loss_table():
    torch.manual_seed(0)
    weights = DynamicRayWeights(torch.ones(K), floor=0.0)
    table = torch.tensor([0.5, 1.0, 0.2, 0.3, 2.0, 0.1, 0.4, 3.0, 3.0, 1.0, 0.6, 0.2])
    weights.class_loss.copy_(table)
    frames = _frames()
    slots, y, x = sample_rays(frames, 32, 32, 30000, "semantics", weights.probabilities())
    labels = frames.stored["semantics"][slots, y, x].long()
    frequency = torch.bincount(labels, minlength=K).float() / len(labels)
    expected = table.clone()
    expected[SEMANTIC_CLASSES.index("glasses")] = 0  # no pixels: its share goes to the others
    torch.testing.assert_close(frequency, expected / expected.sum(), atol=0.012, rtol=0)


def test_a_starved_class_recovers_and_classes_without_rays_keep_their_loss():
    weights = DynamicRayWeights(torch.ones(K), momentum=0.5, floor=0.02)
    weights.class_loss.fill_(1.0)
    weights.class_loss[7] = 0.0  # the lips' loss collapsed
    p = weights.probabilities()
    assert float(p[7]) >= 0.02 / (1 + 0.02 * K)  # still drawn (the floor)
    labels = torch.tensor([7, 7, 7, 0, 0])
    losses = torch.tensor([4.0, 4.0, 4.0, 1.0, 1.0])
    for _ in range(4):
        weights.update(losses, labels)
    assert float(weights.probabilities()[7]) > 0.2  # its loss is high again: it gets many rays
    assert float(weights.class_loss[3]) == 1.0  # no rays of class 3: unchanged (not zero)


def test_running_losses_are_saved_and_restored():
    weights = DynamicRayWeights(torch.ones(K))
    weights.update(torch.tensor([0.5, 2.0]), torch.tensor([1, 4]))
    restored = DynamicRayWeights(torch.ones(K))
    restored.load_state_dict(weights.state_dict())
    assert list(weights.state_dict()) == ["class_loss"]
    torch.testing.assert_close(restored.probabilities(), weights.probabilities())
