"""SAHS-NeRF's texture enhancement network G (paper section 2.4): I_f = I_c + G(I_c | E_t(I_s), gamma).

An encoder-decoder over the rendered image I_c. A texture extractor E_t, the same pyramid as the encoder, turns a
reference frame I_s of the person into features at every scale; they modulate the encoder's features of I_c at the
same scale (SPADE-style scale and shift, as in the authors' code and HiDe-NeRF, on which the paper bases G). In audio
mode the driving feature, tiled over the image, replaces the deepest texture feature, so the mouth's texture can
follow the audio.

Ours where the paper is silent:
* No normalisation layer before the modulation: G is trained on patches and applied to whole frames, and
  per-image statistics (instance norm) would differ between the two.
* G predicts a residual with a zero-initialised last layer, so an untrained G is the identity and the enhancement
  starts from the NeRF's render.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn


def _block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.LeakyReLU(0.2),
    )


class _Pyramid(nn.Module):
    """Features at full, 1/2, 1/4, ... resolution (one level per entry of ``channels``)."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        ins = [3, *channels[:-1]]
        self.levels = nn.ModuleList([_block(i, o, 1 if k == 0 else 2) for k, (i, o) in enumerate(zip(ins, channels))])

    def forward(self, image: Float[Tensor, "n 3 h w"]) -> List[Tensor]:
        features, x = [], image
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class TextureEnhancer(nn.Module):
    """The texture enhancement network G with its texture extractor E_t.

    Args:
        channels: feature channels per scale, full resolution first; each further entry halves the resolution and
            widens the receptive field (three scales: about 40 px).
        feature_dim: size of the driving feature injected at the deepest scale (the audio code); 0 for none.
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 128), feature_dim: int = 0):
        super().__init__()
        self.channels = tuple(channels)
        self.image_encoder = _Pyramid(self.channels)
        self.texture_extractor = _Pyramid(self.channels)
        self.modulations = nn.ModuleList([nn.Conv2d(c, 2 * c, 3, padding=1) for c in self.channels])
        self.feature_projection = nn.Linear(feature_dim, self.channels[-1]) if feature_dim > 0 else None
        deeper = [*self.channels[1:]]
        self.decoder = nn.ModuleList([_block(c + d, c, 1) for c, d in zip(self.channels[:-1], deeper)])
        self.to_rgb = nn.Conv2d(self.channels[0], 3, 3, padding=1)
        nn.init.zeros_(self.to_rgb.weight)
        nn.init.zeros_(self.to_rgb.bias)

    @property
    def multiple(self) -> int:
        """Image sides are padded to a multiple of this (one halving per scale)."""
        return 2 ** (len(self.channels) - 1)

    def _pad(self, image: Float[Tensor, "n 3 h w"]) -> Float[Tensor, "n 3 H W"]:
        pad_h, pad_w = (-image.shape[-2]) % self.multiple, (-image.shape[-1]) % self.multiple
        return F.pad(image, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else image

    def textures(self, reference: Float[Tensor, "n 3 h w"]) -> List[Tensor]:
        """E_t(I_s): the reference frame's features per scale (constant for a trained G: callers may keep them)."""
        return self.texture_extractor(self._pad(reference))

    def residual(
        self,
        image: Float[Tensor, "n 3 h w"],
        reference: Optional[Float[Tensor, "n 3 h w"]] = None,
        feature: Optional[Float[Tensor, "n f"]] = None,
        textures: Optional[List[Tensor]] = None,
    ) -> Float[Tensor, "n 3 h w"]:
        """What G adds to ``image``; ``reference`` is the reference frame at the same place and scale (or give its
        ``textures``)."""
        height, width = image.shape[-2:]
        encoded = self.image_encoder(self._pad(image))
        if textures is None:
            if reference is None:
                raise ValueError("pass the reference frame or its textures")
            textures = self.textures(reference)
        textures = list(textures)
        if self.feature_projection is not None:
            if feature is None:
                raise ValueError("this texture network injects a driving feature: pass one")
            deepest = encoded[-1]
            tiled = self.feature_projection(feature)[:, :, None, None].expand(-1, -1, *deepest.shape[-2:])
            textures[-1] = tiled  # the paper: audio replaces the deepest texture feature
        fused = []
        for x, texture, modulation in zip(encoded, textures, self.modulations):
            scale, shift = modulation(texture).chunk(2, dim=1)
            fused.append(x * (1 + scale) + shift)
        x = fused[-1]
        for level in reversed(range(len(self.decoder))):
            x = F.interpolate(x, size=fused[level].shape[-2:], mode="bilinear", align_corners=False)
            x = self.decoder[level](torch.cat([fused[level], x], dim=1))
        return self.to_rgb(x)[..., :height, :width]

    def forward(
        self,
        image: Float[Tensor, "n 3 h w"],
        reference: Float[Tensor, "n 3 h w"],
        feature: Optional[Float[Tensor, "n f"]] = None,
    ) -> Float[Tensor, "n 3 h w"]:
        """The enhanced image I_f."""
        return image + self.residual(image, reference, feature)
