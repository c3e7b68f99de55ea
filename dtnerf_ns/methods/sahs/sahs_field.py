"""SAHS-NeRF's field: hyper-space deformation, then the template semantic NeRF at the canonical point.

Per-ray conditioning comes in ``ray_samples.metadata`` (the model looks it up once per ray): ``"pose"`` [..., 6] (the
frame's head pose) and ``"feature"`` [..., dim] (gamma: the audio code or the expression coefficients). Points are
normalised to [-1, 1]^3 over the scene box, which covers head and torso: SAHS renders both with this one field over
the static background (no head-less paste-back). Density is zero outside the box (nerfacto's convention).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RaySamples
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.activations import trunc_exp
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.fields.base_field import Field
from torch import Tensor

from dtnerf_ns.methods.sahs.field_components.feature_grid import FeatureGrid3D
from dtnerf_ns.methods.sahs.field_components.hyper_space_deformation import HyperSpaceDeformation
from dtnerf_ns.methods.sahs.field_components.semantic_templates import SemanticTemplate

SEMANTICS = "semantics"
"""Output key of the per-sample semantic logits."""


def _per_sample(ray_samples: RaySamples, key: str) -> Tensor:
    metadata = ray_samples.metadata or {}
    if key not in metadata:
        raise KeyError(f"SAHSField needs ray_samples.metadata['{key}'] (per ray, [..., 1, C])")
    value = metadata[key]
    shape = ray_samples.frustums.shape
    return value.expand(*shape, value.shape[-1]).reshape(-1, value.shape[-1])


class SAHSField(Field):
    """Deformation module + template network (+ the shared feature grid e_x').

    Args:
        aabb: scene box [2, 3] (head and torso).
        deformation: the hyper-space deformation (shared by the coarse and fine fields of the paper's sampling).
        template: the template network.
        feature_grid: the learnable feature grid (shared likewise); None for none.
    """

    aabb: Tensor

    def __init__(
        self,
        aabb: Float[Tensor, "2 3"],
        deformation: HyperSpaceDeformation,
        template: SemanticTemplate,
        feature_grid: Optional[FeatureGrid3D],
    ) -> None:
        super().__init__()
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32))
        self.deformation = deformation
        self.template = template
        self.feature_grid = feature_grid

    def get_density(self, ray_samples: RaySamples) -> Tuple[Float[Tensor, "*bs 1"], Float[Tensor, "*bs G"]]:
        shape = ray_samples.frustums.shape
        x = SceneBox.get_normalized_positions(ray_samples.frustums.get_positions().reshape(-1, 3), self.aabb) * 2 - 1
        inside = ((x > -1.0) & (x < 1.0)).all(dim=-1, keepdim=True)
        x_canonical, w = self.deformation(x, _per_sample(ray_samples, "pose"), _per_sample(ray_samples, "feature"))
        raw, geo = self.template.density(x_canonical, w)
        density = torch.where(inside, trunc_exp(raw.float()), torch.zeros_like(raw))
        # The canonical point rides along with the geometry feature, for e_x' in get_outputs.
        return density.view(*shape, 1), torch.cat([geo, x_canonical], dim=-1).view(*shape, -1)

    def get_outputs(self, ray_samples: RaySamples, density_embedding: Optional[Tensor] = None) -> Dict:
        assert density_embedding is not None
        shape = ray_samples.frustums.shape
        embedding = density_embedding.reshape(-1, density_embedding.shape[-1])
        geo, x_canonical = embedding[:, :-3], embedding[:, -3:]
        grid = self.feature_grid(x_canonical) if self.feature_grid is not None else geo.new_zeros(len(geo), 0)
        out = self.template.colour_and_semantics(geo, ray_samples.frustums.directions.reshape(-1, 3), grid)
        return {FieldHeadNames.RGB: out["rgb"].view(*shape, 3), SEMANTICS: out["semantics"].view(*shape, -1)}
