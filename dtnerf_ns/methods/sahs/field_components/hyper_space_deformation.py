"""SAHS-NeRF's hyper-space deformation module (paper Eqs. 4, 5, 8, 9).

A global deformation field ``F_d(x, p, gamma) -> dx`` moves an observed point to the canonical space, ``x' = x + dx``,
and an ambient lifting field ``F_h(x, p, gamma) -> w`` (HyperNeRF's "bendy sheet") places it in W extra dimensions,
where topological changes (an opening mouth, a blink) become slices of one template. Both take the point's position
(NeRF encoding, L = 10), the head pose ``p`` (6 numbers, NeRF encoding with 3 frequencies, as the authors' code) and
the facial feature ``gamma`` (audio code or expression coefficients). Sizes: section 3.2 (F_d 6 x 128 with a skip at
the fourth layer, F_h 4 x 64, W = 2).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import NeRFEncoding
from nerfstudio.field_components.mlp import MLP
from torch import Tensor, nn

from dtnerf_ns.core.compilation import CompileMode, compile_applies, run


def middle_skip(num_layers: int) -> Optional[Tuple[int]]:
    """NeRF's skip connection (the input joins again after the first half), for nerfstudio's MLP: at layer
    ``num_layers // 2 + 1`` (the fifth of 8, as NeRF; the fourth of 6, as the authors' deformation), None for MLPs too
    shallow to have one."""
    skip = num_layers // 2 + 1
    return (skip,) if skip < num_layers - 1 else None


class HyperSpaceDeformation(nn.Module):
    """Observed point -> (canonical point x', ambient coordinate w).

    Args:
        feature_dim: size of the facial feature gamma.
        use_global: learn the global deformation (else x' = x).
        use_ambient: learn the ambient lifting (else w is empty, ``ambient_dim`` is ignored).
        ambient_dim: W.
        position_frequencies: NeRF-encoding frequencies of x.
        pose_frequencies: NeRF-encoding frequencies of the 6 head-pose numbers.
        deform_layers: linear layers of F_d.
        deform_width: width of F_d.
        ambient_layers: linear layers of F_h.
        ambient_width: width of F_h.
    """

    def __init__(
        self,
        feature_dim: int,
        use_global: bool = True,
        use_ambient: bool = True,
        ambient_dim: int = 2,
        position_frequencies: int = 10,
        pose_frequencies: int = 3,
        deform_layers: int = 6,
        deform_width: int = 128,
        ambient_layers: int = 4,
        ambient_width: int = 64,
    ) -> None:
        super().__init__()
        self.use_global = use_global
        self.ambient_dim = ambient_dim if use_ambient else 0
        self.position_encoding = NeRFEncoding(
            in_dim=3, num_frequencies=position_frequencies, min_freq_exp=0.0,
            max_freq_exp=float(position_frequencies - 1), include_input=True, implementation="torch",
        )  # fmt: skip
        self.pose_encoding = NeRFEncoding(
            in_dim=6, num_frequencies=pose_frequencies, min_freq_exp=0.0,
            max_freq_exp=float(pose_frequencies - 1), include_input=False, implementation="torch",
        )  # fmt: skip
        in_dim = self.position_encoding.get_out_dim() + self.pose_encoding.get_out_dim() + feature_dim
        self.deform_mlp = (
            MLP(in_dim, deform_layers, deform_width, out_dim=3, skip_connections=middle_skip(deform_layers),
                activation=nn.ReLU(), implementation="torch")  # fmt: skip
            if use_global
            else None
        )
        self.ambient_mlp = (
            MLP(in_dim, ambient_layers, ambient_width, out_dim=self.ambient_dim, activation=nn.ReLU(), implementation="torch")
            if self.ambient_dim > 0
            else None
        )
        self.compile_mode: CompileMode = "auto"
        """Whether the encodings and MLPs run as one compiled block (set by the model's ``compile`` setting)."""
        # Start at the identity (HyperNeRF initialises its warp and ambient outputs near zero): the template is
        # learned first, then deformed.
        for mlp in (self.deform_mlp, self.ambient_mlp):
            if mlp is not None:
                last = mlp.layers[-1]
                nn.init.uniform_(last.weight, -1e-4, 1e-4)
                nn.init.zeros_(last.bias)

    def forward(
        self, x: Float[Tensor, "n 3"], pose: Float[Tensor, "n 6"], feature: Float[Tensor, "n dim"]
    ) -> Tuple[Float[Tensor, "n 3"], Float[Tensor, "n W"]]:
        """x in the template's normalised space ([-1, 1]^3); returns (x', w)."""
        if self.deform_mlp is None and self.ambient_mlp is None:
            return x, x.new_zeros(x.shape[0], 0)
        return run(HyperSpaceDeformation._deform, compile_applies(self.compile_mode, x.device), self, x, pose, feature)

    def _deform(self, x: Tensor, pose: Tensor, feature: Tensor) -> Tuple[Tensor, Tensor]:
        inputs = torch.cat([self.position_encoding(x), self.pose_encoding(pose), feature], dim=-1)
        # The authors' code bounds dx with tanh (normalised units).
        x_canonical = x + torch.tanh(self.deform_mlp(inputs)) if self.deform_mlp is not None else x
        w = self.ambient_mlp(inputs) if self.ambient_mlp is not None else x.new_zeros(x.shape[0], 0)
        return x_canonical, w
