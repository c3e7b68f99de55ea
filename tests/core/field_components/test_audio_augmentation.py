import torch

from dtnerf_ns.core.field_components.audio_augmentation import AudioFeatureAugmentation


def _windows(frames: int = 64) -> torch.Tensor:
    """Gated-feature-like windows: values in (0, 1] with a silent (0) channel band and a silent step."""
    torch.manual_seed(0)
    x = torch.rand(frames, 16, 29) * 0.9 + 0.1
    x[:, :, 20:] = 0.0
    x[:, 3] = 0.0
    return x


def test_identity_in_eval_mode_and_when_disabled():
    x = _windows()
    aug = AudioFeatureAugmentation().eval()
    assert torch.equal(aug(x), x)
    off = AudioFeatureAugmentation(formant_shift=0, tilt=0, gain=0, noise=0).train()
    assert not off.enabled and torch.equal(off(x), x)


def test_training_changes_voiced_values_keeps_silence_and_range():
    x = _windows()
    aug = AudioFeatureAugmentation(formant_shift=0, tilt=0.2, gain=0.1, noise=0.02).train()
    y = aug(x)
    assert y.shape == x.shape and (y >= 0).all()
    assert torch.equal(y[x == 0], x[x == 0])  # gated silence stays silence
    change = (y - x)[x > 0.4]  # away from the clamp at 0
    assert change.abs().mean() > 0.01
    assert change.abs().max() <= 0.1 + 0.1 + 4 * 0.02 + 1e-6  # gain + half the tilt range + 4 sigma
    assert not torch.equal(aug(x), y)  # a fresh draw each call


def test_level_changes_are_drawn_per_frame_not_per_step():
    x = torch.full((32, 16, 29), 0.5)
    aug = AudioFeatureAugmentation(formant_shift=0, tilt=0.2, gain=0.1, noise=0).train()
    y = aug(x)
    torch.testing.assert_close(y, y[:, :1].expand_as(y))  # all steps of a window alike
    assert y[:, 0].std(dim=0).min() > 0.01  # frames differ
    gain_only = AudioFeatureAugmentation(formant_shift=0, tilt=0, gain=0.1, noise=0).train()(x)
    per_frame = gain_only - x
    torch.testing.assert_close(per_frame, per_frame[:, :1, :1].expand_as(per_frame))  # one level per frame
    assert per_frame.abs().max() <= 0.1 + 1e-6


def test_formant_shift_moves_a_spectral_peak_by_at_most_the_limit():
    x = torch.zeros(200, 16, 29)
    x[:, :, 10] = 1.0
    y = AudioFeatureAugmentation(formant_shift=1.5, tilt=0, gain=0, noise=0).train()(x)
    channels = torch.arange(29, dtype=torch.float32)
    centre = (y[:, 0] * channels).sum(-1) / y[:, 0].sum(-1)
    assert (centre - 10).abs().max() <= 1.5 + 1e-5
    assert centre.std() > 0.3  # shifted by different amounts per frame
    torch.testing.assert_close(y[:, 0].sum(-1), torch.ones(200))  # interpolation keeps the peak's energy
