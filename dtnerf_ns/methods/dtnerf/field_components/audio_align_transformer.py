"""DT-NeRF's audio-mouth-face-align transformer.

Paper: ``q = Q(a), k = K(x), v = V(x.feat), attn = Softmax(q . k) . v``; the result conditions the density and
colour networks ("transition from a canonical space to a dynamic space").
"""

from __future__ import annotations

import math
from typing import Tuple, Union

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import NeRFEncoding
from torch import Tensor, nn

from dtnerf_ns.methods.dtnerf.field_components.triplane_encoding import PLANE_AXES, plane_coordinates


class AudioMouthFaceAlignTransformer(nn.Module):
    """Cross-attention from the audio code (one query per sample) to the sample's triplane features.

    Token layout: one token per plane, T = 3 (order xy, yz, xz, as TriplaneHashEncoding returns them).

    * value  ``v_t = V(feat_t)``: the point's multi-resolution hash features on plane t (all levels, D values);
    * key    ``k_t = K(PE(x_t)) + e_t``: a NeRF positional encoding of the point's 2D coordinate x_t on plane t,
      plus a learned per-plane embedding e_t (the three planes share K but must stay distinguishable);
    * query  ``q = Q(a)``: the audio code of the sample's ray.

    Why per plane rather than per (plane, level): the key is a function of the coordinate, which is the same
    for every level of a plane, so per-level tokens would only differ by their learned embedding; a level
    token would carry just ``features_per_level`` (2) values; and 3 tokens keep the cost per sample tiny
    (the field runs on ~10^5-10^6 samples per batch).  Because the keys depend on position, the softmax over
    planes varies in space, i.e. audio re-weights the canonical features differently around mouth and face.

    Multi-head (default 4), scaled dot product ``softmax(q_h . k_{t,h} / sqrt(d_head))``.  As in a transformer
    decoder block, the attended values are added to the query (residual path), so the output carries both the
    audio code and the audio-aligned point features; a final linear maps to ``out_dim``.

    Args:
        audio_dim: audio code size A.
        feat_dim: per-token feature size D (levels * features_per_level of the triplane).
        out_dim: output size (conditions the density and colour MLPs).
        model_dim: attention width (split over heads).
        num_heads: number of attention heads; must divide model_dim.
        num_frequencies: frequencies of the key positional encoding (2^0 .. 2^(n-1)).
    """

    num_tokens: int = len(PLANE_AXES)

    def __init__(
        self,
        audio_dim: int = 32,
        feat_dim: int = 32,
        out_dim: int = 32,
        model_dim: int = 64,
        num_heads: int = 4,
        num_frequencies: int = 4,
    ) -> None:
        super().__init__()
        if model_dim % num_heads != 0:
            raise ValueError(f"model_dim ({model_dim}) must be divisible by num_heads ({num_heads})")
        self.audio_dim = audio_dim
        self.feat_dim = feat_dim
        self.out_dim = out_dim
        self.model_dim = model_dim
        self.num_heads = num_heads
        self.head_dim = model_dim // num_heads

        self.position_encoding = NeRFEncoding(
            in_dim=2,
            num_frequencies=num_frequencies,
            min_freq_exp=0.0,
            max_freq_exp=float(num_frequencies - 1),
            include_input=True,
            implementation="torch",  # tiny input; the torch path keeps it differentiable and device-agnostic
        )
        self.q_proj = nn.Linear(audio_dim, model_dim)  # Q(a)
        self.k_proj = nn.Linear(self.position_encoding.get_out_dim(), model_dim)  # K(x)
        self.v_proj = nn.Linear(feat_dim, model_dim)  # V(x.feat)
        self.token_embedding = nn.Parameter(0.02 * torch.randn(self.num_tokens, model_dim))
        self.o_proj = nn.Linear(model_dim, model_dim)
        self.out_proj = nn.Linear(model_dim, out_dim)

    def forward(
        self,
        audio: Float[Tensor, "N A"],
        x: Float[Tensor, "N 3"],
        feats: Float[Tensor, "N T D"],
        return_attention: bool = False,
    ) -> Union[Float[Tensor, "N out_dim"], Tuple[Float[Tensor, "N out_dim"], Float[Tensor, "N H T"]]]:
        """Args:
            audio: audio code per sample, [N, A].
            x: sample positions in [-1, 1]^3 (the space of the triplane), [N, 3].
            feats: per-plane triplane features, [N, 3, D].
            return_attention: also return the attention weights.

        Returns:
            Conditioning vector [N, out_dim]; with ``return_attention`` also weights [N, heads, 3] (sum to 1
            over the last axis).
        """
        n, t, _ = feats.shape
        if t != self.num_tokens:
            raise ValueError(f"expected {self.num_tokens} plane tokens, got {t}")
        h, dh = self.num_heads, self.head_dim
        q = self.q_proj(audio).view(n, h, dh)  # [N, H, dh]
        keys_in = self.position_encoding(plane_coordinates(x))  # [N, T, P]
        k = (self.k_proj(keys_in) + self.token_embedding).view(n, t, h, dh)  # [N, T, H, dh]
        v = self.v_proj(feats).view(n, t, h, dh)  # [N, T, H, dh]

        # Products and sums rather than einsum: with 3 tokens and small heads, einsum's batched matmuls are ~25%
        # slower on a CPU (same values).
        logits = (q[:, None] * k).sum(dim=-1) / math.sqrt(dh)  # [N, T, H]
        attn = torch.softmax(logits, dim=1)
        heads = (attn[..., None] * v).sum(dim=1).reshape(n, self.model_dim)
        out = self.out_proj(q.reshape(n, self.model_dim) + self.o_proj(heads))
        return (out, attn.transpose(1, 2)) if return_attention else out
