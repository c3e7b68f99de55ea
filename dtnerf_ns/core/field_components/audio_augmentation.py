"""Random speaker and recording changes applied to audio feature windows while training.

A talking-head NeRF learns its audio-to-mouth map from one speaker, often from only minutes (our sample: 7 s) of
speech, and is then driven by other voices. ER-NeRF and AD-NeRF rely on DeepSpeech logits being speaker-independent
for that; our filterbank features (see :mod:`data_processing.audio`) are referenced per channel, which removes a
voice's long-term spectrum but not how its energy moves between channels. So, as speech recognisers do for
unseen speakers (vocal-tract-length perturbation, SpecAugment-style level changes), each training frame's window
gets a random formant shift along the mel axis, a random spectral tilt and level, and a little noise. The network
then cannot key the mouth on exact feature values of the one training voice, only on what survives those changes.
Nothing is changed at evaluation or render time.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


class AudioFeatureAugmentation(nn.Module):
    """Per-frame random formant shift, tilt, level and noise on gated filterbank windows (values ~0..1).

    Args:
        formant_shift: largest shift along the channel (mel) axis, in channels; one mel channel of 29 is about a
            10% change of formant frequencies around 1-3 kHz (vocal-tract-length perturbation).
        tilt: largest level difference between the highest and the lowest channel, in feature units
            (1 unit = the features' gate range, 30 dB).
        gain: largest level change of the whole window, in feature units.
        noise: standard deviation of Gaussian noise per value, in feature units.
    """

    def __init__(self, formant_shift: float = 1.0, tilt: float = 0.2, gain: float = 0.1, noise: float = 0.02) -> None:
        super().__init__()
        self.formant_shift = float(formant_shift)
        self.tilt = float(tilt)
        self.gain = float(gain)
        self.noise = float(noise)

    @property
    def enabled(self) -> bool:
        return any(v > 0 for v in (self.formant_shift, self.tilt, self.gain, self.noise))

    def forward(self, windows: Float[Tensor, "frames steps channels"]) -> Float[Tensor, "frames steps channels"]:
        """Returns the windows changed at random, one draw per frame (all steps of a window alike); identity in
        eval mode. Values stay >= 0 (0 is the features' silence floor)."""
        if not self.training or not self.enabled:
            return windows
        frames, _, channels = windows.shape
        device, dtype = windows.device, windows.dtype
        uniform = lambda limit: (torch.rand(frames, 1, 1, device=device, dtype=dtype) * 2 - 1) * limit  # noqa: E731
        out = windows
        if self.formant_shift > 0:
            # Read channel c from position c + shift (linear interpolation, edges clamped).
            position = torch.arange(channels, device=device, dtype=dtype) + uniform(self.formant_shift)
            position = position.clamp(0, channels - 1).expand(frames, windows.shape[1], channels)
            low = position.floor().long().clamp(max=channels - 1)
            high = (low + 1).clamp(max=channels - 1)
            frac = position - low.to(dtype)
            out = torch.gather(out, 2, low) * (1 - frac) + torch.gather(out, 2, high) * frac
        ramp = torch.linspace(-0.5, 0.5, channels, device=device, dtype=dtype)
        level = uniform(self.tilt) * ramp + uniform(self.gain)
        if self.noise > 0:
            level = level + torch.randn_like(out) * self.noise
        # Only voiced energy moves; the gated floor stays silence (a louder room is not a louder voice).
        return torch.where(out > 0, (out + level).clamp(min=0), out)
