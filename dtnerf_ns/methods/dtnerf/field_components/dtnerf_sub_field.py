"""One DT-NeRF sub-field (face or mouth): triplane hash features, the audio-mouth-face align transformer, and the
density and colour MLPs, with ER-NeRF's per-position gates on the driving signals.

The paper gives the transformer's attention (``attn = Softmax(q . k) . v``) but not how much of it reaches each point;
left ungated, the audio code moves every sample, hair and head outline included. As ER-NeRF does, a small MLP on the
point's own triplane features gates the conditioning channel-wise (``c = g_a(x) * transformer(a, x, x.feat)``), and
a second one lets the eye blink reach the density (``b * g_e(x)``) so that closed eyes change shape, not only colour.
The gates are returned per sample so the model can regularise them towards 0 where nothing speaks or blinks.
"""

from __future__ import annotations

from typing import Literal, Optional, Tuple

import torch
from jaxtyping import Float
from nerfstudio.field_components.activations import trunc_exp
from nerfstudio.field_components.mlp import MLP
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from dtnerf_ns.core.compilation import CompileMode, compile_applies, run
from dtnerf_ns.methods.dtnerf.field_components.audio_align_transformer import AudioMouthFaceAlignTransformer
from dtnerf_ns.methods.dtnerf.field_components.triplane_encoding import TriplaneHashEncoding


class DTNeRFSubField(nn.Module):
    """One of the two decomposed fields: triplane hash -> align transformer -> density MLP -> colour MLP.

    Args:
        audio_dim: audio code size.
        num_levels: hash-grid levels per plane.
        features_per_level: features per level.
        log2_hashmap_size: log2 of the hash table size per level.
        base_res: coarsest grid resolution.
        max_res: finest grid resolution.
        hidden_dim: width of the density MLP.
        num_layers: linear layers of the density MLP.
        geo_feat_dim: geometry feature size passed from the density to the colour MLP.
        hidden_dim_color: width of the colour MLP.
        num_layers_color: linear layers of the colour MLP.
        transformer_out_dim: size of the transformer's conditioning vector.
        transformer_dim: attention width.
        num_heads: attention heads.
        transformer_pe_frequencies: frequencies of the key positional encoding.
        direction_dim: size of the view-direction encoding.
        use_blink: whether the colour MLP takes the eye-blink scalar.
        transformer_recompute: see ``DTNeRFField``.
        use_audio_gate: gate the transformer's conditioning per position (ER-NeRF's audio channel attention).
        use_eye_gate: feed ``blink * g_e(x)`` to the density MLP (ER-NeRF's eye attention).
        implementation: "tcnn" (when importable) or "torch" for hash grids and MLPs.
    """

    def __init__(
        self,
        audio_dim: int,
        num_levels: int,
        features_per_level: int,
        log2_hashmap_size: int,
        base_res: int,
        max_res: int,
        hidden_dim: int,
        num_layers: int,
        geo_feat_dim: int,
        hidden_dim_color: int,
        num_layers_color: int,
        transformer_out_dim: int,
        transformer_dim: int,
        num_heads: int,
        transformer_pe_frequencies: int,
        direction_dim: int,
        use_blink: bool,
        transformer_recompute: Literal["cpu", "always", "never"] = "cpu",
        use_audio_gate: bool = True,
        use_eye_gate: bool = False,
        implementation: Literal["tcnn", "torch"] = "tcnn",
    ) -> None:
        super().__init__()
        self.use_audio_gate = use_audio_gate
        self.use_eye_gate = use_eye_gate
        self.geo_feat_dim = geo_feat_dim
        self.use_blink = use_blink
        self.transformer_recompute = transformer_recompute
        self.compile_mode: CompileMode = "auto"
        """Whether the blocks after the hash grids run compiled (set by the model's ``compile`` setting)."""
        self.encoding = TriplaneHashEncoding(
            num_levels=num_levels,
            features_per_level=features_per_level,
            log2_hashmap_size=log2_hashmap_size,
            base_resolution=base_res,
            max_resolution=max_res,
            implementation=implementation,
        )
        feat_dim = self.encoding.out_dim
        self.transformer = AudioMouthFaceAlignTransformer(
            audio_dim=audio_dim,
            feat_dim=feat_dim,
            out_dim=transformer_out_dim,
            model_dim=transformer_dim,
            num_heads=num_heads,
            num_frequencies=transformer_pe_frequencies,
        )
        planes_dim = self.encoding.num_tokens * feat_dim
        # ER-NeRF's gate sizes: audio MLP(in, audio_dim, 64, 2), eye MLP(in, 1, 16, 2); both read the position features.
        gate = dict(in_dim=planes_dim, num_layers=2, activation=nn.ReLU(), out_activation=None, implementation="torch")
        self.audio_gate = MLP(layer_width=64, out_dim=transformer_out_dim, **gate) if use_audio_gate else None  # type: ignore[arg-type]
        self.eye_gate = MLP(layer_width=16, out_dim=1, **gate) if use_eye_gate else None  # type: ignore[arg-type]
        # Density MLP sees the concatenated planes (ER-NeRF's input) plus the audio-aligned vector (and gated blink).
        self.mlp_density = MLP(
            in_dim=planes_dim + transformer_out_dim + (1 if use_eye_gate else 0),
            num_layers=num_layers,
            layer_width=hidden_dim,
            out_dim=1 + geo_feat_dim,
            activation=nn.ReLU(),
            out_activation=None,
            implementation=implementation,
        )
        # Colour MLP: geometry feature + transformer vector (the paper conditions both heads) + SH(dir) + blink.
        self.mlp_color = MLP(
            in_dim=geo_feat_dim + transformer_out_dim + direction_dim + (1 if use_blink else 0),
            num_layers=num_layers_color,
            layer_width=hidden_dim_color,
            out_dim=3,
            activation=nn.ReLU(),
            out_activation=None,
            implementation=implementation,
        )

    @property
    def embedding_dim(self) -> int:
        """Size of the per-sample embedding passed from density to colour."""
        return self.geo_feat_dim + self.transformer.out_dim

    def density(
        self, x: Float[Tensor, "N 3"], audio: Float[Tensor, "N A"], blink: Optional[Float[Tensor, "N 1"]] = None
    ) -> Tuple[Float[Tensor, "N 1"], Float[Tensor, "N E"], Float[Tensor, "N 2"]]:
        """Density, embedding (geometry feature, transformer vector) and gates (mean audio gate, eye gate; 0 when
        off) at points x in [-1, 1]^3. ``blink`` is needed with ``use_eye_gate``."""
        feats = self.encoding(x)  # [N, 3, D]
        mode = self.transformer_recompute
        if torch.is_grad_enabled() and (mode == "always" or (mode == "cpu" and x.device.type == "cpu")):
            return self._density_from_features(x, audio, blink, feats, recompute=True)
        # One compiled block from the plane features on: transformer, gates and MLP (compilation.py).
        return run(DTNeRFSubField._density_from_features, self._compiled(x), self, x, audio, blink, feats)

    def _compiled(self, x: Tensor) -> bool:
        return compile_applies(self.compile_mode, x.device)

    def _density_from_features(
        self,
        x: Float[Tensor, "N 3"],
        audio: Float[Tensor, "N A"],
        blink: Optional[Float[Tensor, "N 1"]],
        feats: Float[Tensor, "N 3 D"],
        recompute: bool = False,
    ) -> Tuple[Float[Tensor, "N 1"], Float[Tensor, "N E"], Float[Tensor, "N 2"]]:
        planes = feats.flatten(start_dim=-2)
        if recompute:
            cond = checkpoint(self.transformer, audio, x, feats, use_reentrant=False)  # [N, out]
        else:
            cond = self.transformer(audio, x, feats)  # [N, out]
        gates = cond.new_zeros(cond.shape[0], 2)
        if self.audio_gate is not None:
            audio_gate = torch.sigmoid(self.audio_gate(planes))
            cond = cond * audio_gate
            gates = torch.cat([audio_gate.mean(dim=-1, keepdim=True), gates[:, 1:]], dim=-1)
        inputs = [planes, cond]
        if self.eye_gate is not None:
            assert blink is not None, "this sub-field's density needs the blink scalar (use_eye_gate)"
            eye_gate = torch.sigmoid(self.eye_gate(planes))
            inputs.append(blink * eye_gate)
            gates = torch.cat([gates[:, :1], eye_gate], dim=-1)
        h = self.mlp_density(torch.cat(inputs, dim=-1)).float()
        density_raw, geo = torch.split(h, [1, self.geo_feat_dim], dim=-1)
        # trunc_exp as nerfacto: exp is stable for large densities, gradients clamped.
        density = trunc_exp(density_raw)
        return density, torch.cat([geo, cond], dim=-1), gates

    def color(
        self,
        embedding: Float[Tensor, "N E"],
        direction_encoding: Float[Tensor, "N Dd"],
        blink: Optional[Float[Tensor, "N 1"]] = None,
    ) -> Float[Tensor, "N 3"]:
        """Colour from the density embedding, encoded view direction and (face) eye blink."""
        return run(DTNeRFSubField._color, self._compiled(embedding), self, embedding, direction_encoding, blink)

    def _color(
        self, embedding: Float[Tensor, "N E"], direction_encoding: Float[Tensor, "N Dd"], blink: Optional[Tensor]
    ) -> Float[Tensor, "N 3"]:
        inputs = [embedding, direction_encoding]
        if self.use_blink:
            assert blink is not None, "this sub-field needs the blink scalar"
            inputs.append(blink)
        h = self.mlp_color(torch.cat(inputs, dim=-1)).float()
        # ER-NeRF's slightly widened sigmoid lets colours reach exactly 0 and 1.
        return torch.sigmoid(h) * (1 + 2 * 0.001) - 0.001
