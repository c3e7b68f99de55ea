"""Audio feature networks (ER-NeRF / AD-NeRF style; the DT-NeRF paper does not describe its audio front end).

* ``AudioNet``: one frame's window of ASR features (DeepSpeech: 16 steps x 29 logits) -> audio code.
* ``AudioAttNet``: temporal smoothing; a learned softmax over a window of neighbouring frames' codes.
* ``AudioEncoder``: the two chained, [B, W, 16, C] -> [B, audio_dim], as the model calls it once per image.
"""

from __future__ import annotations

from typing import Tuple, Union

import torch
from jaxtyping import Float
from torch import Tensor, nn


class AudioNet(nn.Module):
    """Encodes one frame's window of ASR features with strided 1D convolutions over time and an MLP.

    Args:
        in_channels: ASR feature channels C (29 for DeepSpeech logits).
        audio_dim: output code size.
        hidden_channels: conv channels; ER-NeRF uses 32, 32, 64, 64 (four stride-2 convs: 16 steps -> 1).
    """

    def __init__(
        self,
        in_channels: int = 29,
        audio_dim: int = 32,
        hidden_channels: Tuple[int, ...] = (32, 32, 64, 64),
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.audio_dim = audio_dim
        layers = []
        prev = in_channels
        for ch in hidden_channels:
            # LeakyReLU(0.02) as in ER-NeRF / AD-NeRF.
            layers += [nn.Conv1d(prev, ch, kernel_size=3, stride=2, padding=1), nn.LeakyReLU(0.02, inplace=True)]
            prev = ch
        self.encoder_conv = nn.Sequential(*layers)
        self.encoder_fc = nn.Sequential(nn.Linear(prev, 64), nn.LeakyReLU(0.02, inplace=True), nn.Linear(64, audio_dim))

    def forward(self, audio: Float[Tensor, "*bs T C"]) -> Float[Tensor, "*bs audio_dim"]:
        """Args:
            audio: ASR features of one frame's window, time-major [..., 16, C].

        Returns:
            Audio codes [..., audio_dim].
        """
        batch_shape = audio.shape[:-2]
        x = audio.reshape(-1, *audio.shape[-2:]).transpose(1, 2)  # [B, C, T] for Conv1d
        # Mean over the remaining steps (exactly 1 for T=16, as in ER-NeRF) keeps other window lengths usable.
        x = self.encoder_conv(x).mean(dim=-1)
        return self.encoder_fc(x).view(*batch_shape, self.audio_dim)


class AudioAttNet(nn.Module):
    """Smooths audio codes over neighbouring frames with learned attention weights (ER-NeRF's AudioAttNet).

    Args:
        audio_dim: code size A.
        window: number of frames W in the smoothing window.
    """

    def __init__(self, audio_dim: int = 32, window: int = 8) -> None:
        super().__init__()
        self.audio_dim = audio_dim
        self.window = window
        chans = (audio_dim, 16, 8, 4, 2, 1)
        layers = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv1d(c_in, c_out, kernel_size=3, stride=1, padding=1), nn.LeakyReLU(0.02, inplace=True)]
        self.attention_conv = nn.Sequential(*layers)
        self.attention_fc = nn.Linear(window, window)

    def forward(
        self, codes: Float[Tensor, "B W A"], return_weights: bool = False
    ) -> Union[Float[Tensor, "B A"], Tuple[Float[Tensor, "B A"], Float[Tensor, "B W"]]]:
        """Args:
            codes: per-frame audio codes of the window centred on the target frame, [B, W, A].
            return_weights: also return the softmax weights over the window.

        Returns:
            Smoothed codes [B, A] (and weights [B, W], summing to 1).
        """
        if codes.shape[-2] != self.window:
            raise ValueError(f"AudioAttNet expects a window of {self.window} frames, got {codes.shape[-2]}")
        logits = self.attention_conv(codes.transpose(1, 2)).squeeze(1)  # [B, W]
        weights = torch.softmax(self.attention_fc(logits), dim=-1)
        smoothed = torch.sum(weights[..., None] * codes, dim=1)
        return (smoothed, weights) if return_weights else smoothed


class AudioEncoder(nn.Module):
    """AudioNet on each frame of a window, then (optionally) AudioAttNet smoothing.

    Args:
        in_channels: ASR feature channels C.
        audio_dim: output code size.
        window: smoothing window W (frames); 1 or ``use_smoothing=False`` disables smoothing.
        use_smoothing: whether to apply AudioAttNet (ER-NeRF enables it after a warm-up; the model decides).
    """

    def __init__(self, in_channels: int = 29, audio_dim: int = 32, window: int = 8, use_smoothing: bool = True) -> None:
        super().__init__()
        self.audio_dim = audio_dim
        self.audio_net = AudioNet(in_channels=in_channels, audio_dim=audio_dim)
        self.att_net = AudioAttNet(audio_dim=audio_dim, window=window) if use_smoothing and window > 1 else None

    def forward(self, audio: Float[Tensor, "B W T C"], smooth: bool = True) -> Float[Tensor, "B A"]:
        """Args:
            audio: ASR feature windows of W neighbouring frames, [B, W, 16, C] (W=1 without smoothing).
            smooth: apply temporal smoothing (when built with it); otherwise the centre frame's code is used.

        Returns:
            Audio codes [B, audio_dim].
        """
        codes = self.audio_net(audio)  # [B, W, A]
        if self.att_net is not None and smooth and codes.shape[1] > 1:
            return self.att_net(codes)
        return codes[:, codes.shape[1] // 2]
