"""DT-NeRF's ray sampling: set-up of the proposal or occupancy-grid sampler, the occupancy path's packed rendering,
and putting the outputs of a subset of rays back in place.

Both samplers produce the same outputs (``rgb_head``, ``accumulation``, ``depth``, face-only and mouth-only renders).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import nerfacc
import numpy as np
import torch
from jaxtyping import Bool, Float
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.model_components.ray_samplers import ProposalNetworkSampler, UniformSampler
from nerfstudio.model_components.renderers import DepthRenderer
from torch import Tensor, nn

from dtnerf_ns.core.field_components.lean_hash_encoding import LeanHashMLPDensityField
from dtnerf_ns.methods.dtnerf.audio_occupancy_grid import AudioVolumetricSampler, SamplerKind, render_weights
from dtnerf_ns.methods.dtnerf.dtnerf_field import (
    AUDIO_GATE,
    DENSITY_FACE,
    DENSITY_MOUTH,
    EYE_GATE,
    RGB_FACE,
    RGB_MOUTH,
    DTNeRFField,
)
from dtnerf_ns.methods.dtnerf.dtnerf_model_config import DTNeRFModelConfig


@dataclass
class Samplers:
    """What :func:`build_samplers` made (proposal networks + sampler, or the occupancy sampler)."""

    density_fns: List[Any] = field(default_factory=list)
    proposal_networks: Optional[nn.ModuleList] = None
    proposal_sampler: Optional[ProposalNetworkSampler] = None
    occupancy_sampler: Optional[AudioVolumetricSampler] = None
    render_step_size: float = 0.0


def build_samplers(kind: SamplerKind, c: DTNeRFModelConfig, aabb: Float[Tensor, "2 3"], density_fn: Callable) -> Samplers:
    """nerfacto's proposal networks and sampler (bounded scene: no spatial distortion, not audio-conditioned), or a
    nerfacc occupancy grid over the scene box with its audio-aware sampler."""
    if kind == "occupancy":
        step = c.render_step_size or float(torch.linalg.norm(aabb[1] - aabb[0])) / 1000
        # The grid's occupancy buffers are persistent: trained state (as instant-ngp's) that goes into checkpoints,
        # so a loaded model renders without re-estimating them.
        grid = nerfacc.OccGridEstimator(roi_aabb=aabb.flatten(), resolution=c.grid_resolution, levels=c.grid_levels)
        return Samplers(occupancy_sampler=AudioVolumetricSampler(occupancy_grid=grid, density_fn=density_fn), render_step_size=step)

    networks = nn.ModuleList()
    num = c.num_proposal_iterations
    if c.use_same_proposal_network:
        networks.append(LeanHashMLPDensityField(aabb, **c.proposal_net_args_list[0], implementation=c.implementation))
        density_fns = [networks[0].density_fn for _ in range(num)]
    else:
        for i in range(num):
            args = c.proposal_net_args_list[min(i, len(c.proposal_net_args_list) - 1)]
            networks.append(LeanHashMLPDensityField(aabb, **args, implementation=c.implementation))
        density_fns = [net.density_fn for net in networks]

    def update_schedule(step: int) -> float:
        return np.clip(np.interp(step, [0, c.proposal_warmup], [0, c.proposal_update_every]), 1, c.proposal_update_every)

    sampler = ProposalNetworkSampler(
        num_nerf_samples_per_ray=c.num_nerf_samples_per_ray,
        num_proposal_samples_per_ray=c.num_proposal_samples_per_ray,
        num_proposal_network_iterations=num,
        single_jitter=c.use_single_jitter,
        update_sched=update_schedule,
        initial_sampler=UniformSampler(single_jitter=c.use_single_jitter),
    )
    return Samplers(density_fns=density_fns, proposal_networks=networks, proposal_sampler=sampler)


def scatter_rays(outputs: Dict[str, Tensor], keep: Bool[Tensor, "*rays"]) -> Dict[str, Tensor]:
    """Outputs computed for the rays where ``keep`` is True, put back in place over all rays (zeros elsewhere)."""
    full = {}
    for key, value in outputs.items():
        out = value.new_zeros(*keep.shape, *value.shape[1:])
        out[keep] = value
        full[key] = out
    return full


_depth_packed = DepthRenderer(method="expected")  # median depth is not implemented for packed samples


def render_packed(
    field: DTNeRFField,
    sampler: AudioVolumetricSampler,
    ray_bundle: RayBundle,
    c: DTNeRFModelConfig,
    render_step_size: float,
) -> Dict[str, Tensor]:
    """The proposal path's image outputs from occupancy-grid marching (packed samples) and nerfacc-style volume
    rendering (as nerfstudio's instant-ngp model). Needs ``ray_bundle.metadata`` audio and blink per ray."""
    shape = ray_bundle.shape
    rays = ray_bundle.flatten()
    num_rays = len(rays)
    with torch.no_grad():
        ray_samples, ray_indices = sampler(
            rays, render_step_size=render_step_size, near_plane=c.near_plane, alpha_thre=c.alpha_thre, cone_angle=c.cone_angle
        )
    # Per-sample conditioning: each sample carries its ray's audio code and blink (with their gradients).
    ray_samples.metadata = {key: rays.metadata[key][ray_indices] for key in ("audio", "blink")}
    field_outputs = field.forward(ray_samples)
    densities = (field_outputs[FieldHeadNames.DENSITY], field_outputs[DENSITY_FACE], field_outputs[DENSITY_MOUTH])
    starts, ends = ray_samples.frustums.starts[..., 0], ray_samples.frustums.ends[..., 0]
    weights, w_face, w_mouth = (
        w[..., None] for w in render_weights(starts, ends, [d[..., 0] for d in densities], ray_indices, num_rays)
    )

    def accumulate(w: Tensor, values: Optional[Tensor] = None) -> Tensor:
        return nerfacc.accumulate_along_rays(w[..., 0], values, ray_indices=ray_indices, n_rays=num_rays)

    rgb_head = accumulate(weights, field_outputs[FieldHeadNames.RGB])
    outputs = {
        "rgb_head": rgb_head,
        "rgb": rgb_head,
        "accumulation": accumulate(weights),
        "depth": _depth_packed(weights=weights, ray_samples=ray_samples, ray_indices=ray_indices, num_rays=num_rays),
        "rgb_face": accumulate(w_face, field_outputs[RGB_FACE]),
        "rgb_mouth": accumulate(w_mouth, field_outputs[RGB_MOUTH]),
        "accumulation_mouth": accumulate(w_mouth),
        AUDIO_GATE: accumulate(w_face, field_outputs[AUDIO_GATE]),
        EYE_GATE: accumulate(w_face, field_outputs[EYE_GATE]),
    }
    return {key: value.reshape(*shape, -1) for key, value in outputs.items()}
