"""SAHS-NeRF's template semantic NeRF ``F_t(x', w, d, e_x') -> (c, sigma, s)`` (paper Eqs. 6, 7, 10), two ways.

* ``"mlp"``, the paper's (section 3.2): NeRF encodings of x' (L = 10) and w (L = 4) into an 8 x 256 ReLU MLP with a
  skip at the fifth layer, then three branches: density (one linear layer), colour (4 layers, also fed the encoded
  view direction, L = 4, and the grid feature e_x') and semantic logits (4 layers).
* ``"hash"``, the fast one (our choice for GPUs, as instant-ngp-based talking heads such as RAD-NeRF and ER-NeRF do
  for their static fields): a multi-resolution hash grid on x' with the encoded w alongside, a 2-layer MLP to density
  and a geometry feature, a small colour MLP (spherical-harmonics view direction, e_x') and a small semantic MLP.

Both return raw density (before activation), colour in [0, 1] and 12 logits.
"""

from __future__ import annotations

from typing import Dict, Literal, Tuple

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import NeRFEncoding, SHEncoding
from nerfstudio.field_components.mlp import MLP
from torch import Tensor, nn

from dtnerf_ns.core.compilation import CompileMode, compile_applies, run
from dtnerf_ns.core.field_components.lean_hash_encoding import LeanHashEncoding
from dtnerf_ns.methods.sahs.field_components.hyper_space_deformation import middle_skip


def _nerf_encoding(in_dim: int, frequencies: int) -> NeRFEncoding:
    return NeRFEncoding(
        in_dim=in_dim, num_frequencies=frequencies, min_freq_exp=0.0, max_freq_exp=float(max(frequencies - 1, 0)),
        include_input=True, implementation="torch",
    )  # fmt: skip


class SemanticTemplate(nn.Module):
    """The template field's network (see module docstring).

    Args:
        implementation: "mlp" (the paper's) or "hash".
        ambient_dim: W (0: no ambient input).
        num_classes: semantic classes.
        feature_grid_dim: channels of e_x' (0: none).
        mlp_layers: paper network: trunk layers; hash network: density MLP layers.
        mlp_width: paper network: trunk width; hash network: MLP widths.
        branch_layers: layers of the colour and semantic branches.
        branch_width: width of the colour and semantic branches.
        position_frequencies: paper network: encoding frequencies of x'.
        ambient_frequencies: encoding frequencies of w and (paper network) the view direction.
        hash_levels: hash network: grid levels.
        hash_log2_size: hash network: log2 table size per level.
        hash_max_res: hash network: finest resolution over the template box.
        geo_feat_dim: hash network: geometry feature passed to the branches.
        hash_implementation: hash network: "tcnn" when importable, else "torch".
    """

    def __init__(
        self,
        implementation: Literal["mlp", "hash"],
        ambient_dim: int,
        num_classes: int,
        feature_grid_dim: int,
        mlp_layers: int = 8,
        mlp_width: int = 256,
        branch_layers: int = 4,
        branch_width: int = 128,
        position_frequencies: int = 10,
        ambient_frequencies: int = 4,
        hash_levels: int = 16,
        hash_log2_size: int = 19,
        hash_max_res: int = 1024,
        geo_feat_dim: int = 15,
        hash_implementation: Literal["tcnn", "torch"] = "tcnn",
    ) -> None:
        super().__init__()
        self.implementation = implementation
        self.compile_mode: CompileMode = "auto"
        """Whether the MLP blocks run compiled (set by the model's ``compile`` setting)."""
        self.ambient_encoding = _nerf_encoding(ambient_dim, ambient_frequencies) if ambient_dim > 0 else None
        ambient_out = self.ambient_encoding.get_out_dim() if self.ambient_encoding is not None else 0
        if implementation == "mlp":
            self.position_encoding: nn.Module = _nerf_encoding(3, position_frequencies)
            self.direction_encoding: nn.Module = _nerf_encoding(3, ambient_frequencies)
            trunk_in = self.position_encoding.get_out_dim() + ambient_out
            self.trunk = MLP(trunk_in, mlp_layers, mlp_width, out_dim=mlp_width, skip_connections=middle_skip(mlp_layers),
                             activation=nn.ReLU(), out_activation=nn.ReLU(), implementation="torch")  # fmt: skip
            self.density_head = nn.Linear(mlp_width, 1)
            geo_dim = mlp_width
        elif implementation == "hash":
            self.position_encoding = LeanHashEncoding(
                num_levels=hash_levels, min_res=16, max_res=hash_max_res, log2_hashmap_size=hash_log2_size,
                implementation=hash_implementation,
            )  # fmt: skip
            self.direction_encoding = SHEncoding(levels=4, implementation="torch")
            self.trunk = MLP(self.position_encoding.get_out_dim() + ambient_out, mlp_layers, mlp_width,
                             out_dim=1 + geo_feat_dim, activation=nn.ReLU(), implementation="torch")  # fmt: skip
            self.density_head = None
            geo_dim = geo_feat_dim
        else:
            raise ValueError(f"unknown template implementation {implementation!r}: choose 'mlp' or 'hash'")
        colour_in = geo_dim + self.direction_encoding.get_out_dim() + feature_grid_dim
        self.colour_branch = MLP(colour_in, branch_layers, branch_width, out_dim=3, activation=nn.ReLU(),
                                 out_activation=nn.Sigmoid(), implementation="torch")  # fmt: skip
        self.semantic_branch = MLP(geo_dim, branch_layers, branch_width, out_dim=num_classes, activation=nn.ReLU(),
                                   implementation="torch")  # fmt: skip

    def density(self, x: Float[Tensor, "n 3"], w: Float[Tensor, "n W"]) -> Tuple[Float[Tensor, "n 1"], Float[Tensor, "n G"]]:
        """Raw density and the geometry feature at canonical points x' in [-1, 1]^3 with ambient coordinates w."""
        position = self.position_encoding(x if self.implementation == "mlp" else (x + 1.0) / 2.0)
        return run(SemanticTemplate._trunk, compile_applies(self.compile_mode, x.device), self, position, w)

    def _trunk(self, position: Tensor, w: Tensor) -> Tuple[Tensor, Tensor]:
        inputs = [position] if self.ambient_encoding is None else [position, self.ambient_encoding(w)]
        h = self.trunk(torch.cat(inputs, dim=-1))
        if self.density_head is not None:
            return self.density_head(h), h
        return h[..., :1], h[..., 1:]

    def colour_and_semantics(
        self, geo: Float[Tensor, "n G"], directions: Float[Tensor, "n 3"], grid_feature: Float[Tensor, "n E"]
    ) -> Dict[str, Tensor]:
        """Colour [n, 3] in [0, 1] (unit view directions) and semantic logits [n, K]."""
        compiled = compile_applies(self.compile_mode, geo.device)
        return run(SemanticTemplate._branches, compiled, self, geo, directions, grid_feature)

    def _branches(self, geo: Tensor, directions: Tensor, grid_feature: Tensor) -> Dict[str, Tensor]:
        d = self.direction_encoding(directions)  # both take unit vectors (nerfstudio's torch SH does)
        rgb = self.colour_branch(torch.cat([geo, d, grid_feature], dim=-1))
        return {"rgb": rgb, "semantics": self.semantic_branch(geo)}
