"""Occupancy-grid sampling for an audio-conditioned density field (nerfacc's ``OccGridEstimator``).

ER-NeRF (like RAD-NeRF and instant-ngp) marches rays through a density grid that marks empty space. A talking head's
density depends on the audio (the mouth opens and closes), so a single grid has to hold for every audio: it is updated
with the density under the audio codes of random training frames, and nerfacc keeps, per cell, a decayed max over
updates (``occs = max(0.95 * occs, new)``), so a cell stays occupied while some recently drawn frame fills it.

What runs where (nerfacc 0.5): ray traversal (``OccGridEstimator.sampling``) and the packed scans
(``nerfacc.pack_info``, ``render_weight_from_density`` on packed samples) are CUDA-only; grid updates
(``update_every_n_steps``) and ``accumulate_along_rays`` are plain torch. :func:`render_weights` uses nerfacc on CUDA
tensors and the same formula in torch otherwise, so everything after the traversal also runs (and is tested) on a CPU.
"""

from __future__ import annotations

import functools
from typing import Callable, List, Literal, Optional, Sequence, Tuple

import nerfacc
import torch
from jaxtyping import Bool, Float, Int
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.model_components.ray_samplers import VolumetricSampler
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

SamplerKind = Literal["proposal", "occupancy"]

# density_fn(positions [N, 3], audio=[N or 1, A] codes) -> density [N, 1], e.g. DTNeRFField.density_fn.
AudioDensityFn = Callable[..., Float[Tensor, "N 1"]]


@functools.lru_cache(maxsize=None)
def occupancy_unavailable_reason() -> Optional[str]:
    """Why the occupancy sampler cannot run on this machine, or None when it can (CUDA and nerfacc's CUDA kernels).

    Checked once, lazily: importing nerfacc's backend may JIT-compile its kernels (minutes the first time), and a
    one-ray traversal on the GPU proves that they run on this device.
    """
    if not torch.cuda.is_available():
        return "no CUDA device"
    reason = None
    try:
        from nerfacc.cuda._backend import _C  # noqa: PLC0415

        if _C is None:
            reason = "nerfacc's CUDA kernels are not built (no prebuilt nerfacc wheel, no nvcc to compile them)"
        else:
            grid = nerfacc.OccGridEstimator(roi_aabb=[0.0, 0.0, 0.0, 1.0, 1.0, 1.0], resolution=2).cuda()
            grid.binaries.fill_(True)
            origin = torch.tensor([[0.5, 0.5, -1.0]], device="cuda")
            grid.sampling(origin, torch.tensor([[0.0, 0.0, 1.0]], device="cuda"), render_step_size=0.25)
    except Exception as err:  # noqa: BLE001 - any failure means "not on this machine"
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        reason = f"nerfacc's CUDA kernels do not run here ({detail})"
    if reason is not None:  # a GPU user expected the occupancy grid: say why not, once
        CONSOLE.print(f"[bold yellow]WARNING: {reason}; no occupancy sampler (sampler=auto uses the proposal sampler).")
    return reason


def resolve_sampler(choice: Literal["auto", "proposal", "occupancy"]) -> SamplerKind:
    """The sampler to build: "auto" is "occupancy" where :func:`occupancy_unavailable_reason` is None, else "proposal".

    Raises:
        RuntimeError: "occupancy" was asked for on a machine where it cannot run.
    """
    if choice == "proposal":
        return "proposal"
    reason = occupancy_unavailable_reason()
    if choice == "occupancy" and reason is not None:
        raise RuntimeError(
            f"The occupancy sampler needs CUDA and nerfacc's CUDA kernels ({reason}): train with "
            "--pipeline.model.sampler proposal (or auto); a model trained with it renders only where they load."
        )
    return "occupancy" if reason is None else "proposal"


class AudioVolumetricSampler(VolumetricSampler):
    """Nerfstudio's :class:`VolumetricSampler` for a density that depends on each ray's audio.

    The parent skips samples whose opacity is below ``alpha_thre`` and ends rays whose transmittance is spent by
    evaluating ``density_fn`` on the marched samples (nerfacc's ``sigma_fn``); here each sample gets its own ray's audio code, looked up through
    nerfacc's ``ray_indices`` in ``ray_bundle.metadata["audio"]`` ([num_rays, audio_dim]), so the mouth is never
    culled with another frame's audio.

    Args:
        occupancy_grid: nerfacc occupancy grid to march through.
        density_fn: ``density_fn(positions, audio=codes)`` -> density [N, 1].
    """

    def __init__(self, occupancy_grid: nerfacc.OccGridEstimator, density_fn: AudioDensityFn) -> None:
        super().__init__(occupancy_grid=occupancy_grid, density_fn=density_fn)
        self._ray_audio: Optional[Tensor] = None  # the current call's per-ray audio, read by get_sigma_fn
        self._ray_blink: Optional[Tensor] = None  # and blink

    def get_sigma_fn(
        self, origins: Float[Tensor, "R 3"], directions: Float[Tensor, "R 3"], times: Optional[Tensor] = None
    ) -> Optional[Callable]:
        # Also at render time: nerfacc then stops each ray once its transmittance is below 1e-4 (early ray
        # termination) and skips samples under alpha_thre, so rays through the face stop at its surface.
        if self.density_fn is None:
            return None
        density_fn, ray_audio, ray_blink = self.density_fn, self._ray_audio, self._ray_blink
        assert ray_audio is not None, "get_sigma_fn is only called from forward()"

        def sigma_fn(t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor) -> Tensor:
            positions = origins[ray_indices] + directions[ray_indices] * ((t_starts + t_ends) / 2.0)[:, None]
            # The blink too, where the density reads it (the eye gate): skipped samples match the rendered density.
            extra = {} if ray_blink is None else {"blink": ray_blink[ray_indices]}
            return density_fn(positions, audio=ray_audio[ray_indices], **extra).squeeze(-1)

        return sigma_fn

    def forward(
        self,
        ray_bundle: RayBundle,
        render_step_size: float,
        near_plane: float = 0.0,
        far_plane: Optional[float] = None,
        alpha_thre: float = 0.01,
        cone_angle: float = 0.0,
    ) -> Tuple[RaySamples, Int[Tensor, "num_samples"]]:
        """Packed samples of flat rays ([num_rays]) and their ray indices; see :class:`VolumetricSampler`."""
        assert ray_bundle.metadata is not None and "audio" in ray_bundle.metadata, "rays need metadata['audio']"
        self._ray_audio = ray_bundle.metadata["audio"].reshape(len(ray_bundle), -1)
        blink = ray_bundle.metadata.get("blink")
        self._ray_blink = None if blink is None else blink.reshape(len(ray_bundle), -1)
        try:
            return super().forward(
                ray_bundle,
                render_step_size=render_step_size,
                near_plane=near_plane,
                far_plane=far_plane,
                alpha_thre=alpha_thre,
                cone_angle=cone_angle,
            )
        finally:
            self._ray_audio = None


@torch.no_grad()
def max_density_over_audio(
    density_fn: AudioDensityFn,
    positions: Float[Tensor, "N 3"],
    audio_codes: Float[Tensor, "K A"],
    chunk_size: int = 1 << 18,
) -> Float[Tensor, "N 1"]:
    """Density at positions, the max over the given audio codes (evaluated in chunks of positions).

    Args:
        density_fn: ``density_fn(positions, audio=code)`` -> density [n, 1].
        positions: world positions (e.g. one random point per grid cell).
        audio_codes: audio codes to take the max over.
        chunk_size: positions per density_fn call.
    """
    densities = []
    for x in positions.split(chunk_size):
        density = density_fn(x, audio=audio_codes[0])
        for code in audio_codes[1:]:
            density = torch.maximum(density, density_fn(x, audio=code))
        densities.append(density)
    return torch.cat(densities)


@torch.no_grad()
def cells_overlapping_box(
    grid: nerfacc.OccGridEstimator, box: Float[Tensor, "2 3"]
) -> Bool[Tensor, "levels rx ry rz"]:
    """Which cells of each grid level overlap the (closed) box [min, max]; laid out like ``grid.binaries``."""
    resolution = grid.resolution.to(box)
    lo, hi = grid.aabbs[:, None, :3], grid.aabbs[:, None, 3:]  # [L, 1, 3]
    size = (hi - lo) / resolution
    cell_min = lo + grid.grid_coords[None].to(box) * size  # [L, cells, 3]
    overlap = ((cell_min <= box[1]) & (cell_min + size >= box[0])).all(dim=-1)
    return overlap.view(grid.binaries.shape)


def render_weights(
    t_starts: Float[Tensor, "S"],
    t_ends: Float[Tensor, "S"],
    sigmas: Sequence[Float[Tensor, "S"]],
    ray_indices: Int[Tensor, "S"],
    num_rays: int,
) -> List[Float[Tensor, "S"]]:
    """Volume-rendering weights ``w_i = T_i (1 - exp(-sigma_i delta_i))`` of packed samples, one list entry per density.

    Samples must be grouped by ray in marching order, as ``OccGridEstimator.sampling`` returns them. nerfacc's packed
    scan is CUDA-only (``nerfacc.pack_info`` raises NotImplementedError for CPU tensors); for other tensors the same
    per-ray exclusive sums are a float64 cumulative sum over the batch minus its value at each ray's first sample.

    Args:
        t_starts: sample starts along their rays.
        t_ends: sample ends.
        sigmas: densities to render (e.g. fused, face-only, mouth-only), each [S].
        ray_indices: ray of each sample.
        num_rays: number of rays.
    """
    if t_starts.is_cuda:
        packed_info = nerfacc.pack_info(ray_indices, num_rays)
        return [nerfacc.render_weight_from_density(t_starts, t_ends, s, packed_info=packed_info)[0] for s in sigmas]
    counts = torch.bincount(ray_indices, minlength=num_rays)
    first = (torch.cumsum(counts, dim=0) - counts)[ray_indices]  # index of each sample's first sample on its ray
    weights = []
    for sigma in sigmas:
        sigma_dt = sigma * (t_ends - t_starts)
        before = torch.cumsum(sigma_dt.double(), dim=0) - sigma_dt.double()  # sum over all earlier samples
        transmittance = torch.exp(-(before - before[first])).to(sigma.dtype)
        weights.append(transmittance * (1.0 - torch.exp(-sigma_dt)))
    return weights


@torch.no_grad()
def update_audio_occupancy_grid(
    grid: nerfacc.OccGridEstimator,
    step: int,
    density_fn: AudioDensityFn,
    audio_codes: Float[Tensor, "K A"],
    render_step_size: float,
    occ_threshold: float,
    warmup_steps: int,
    update_every: int,
    keep_box: Optional[Float[Tensor, "2 3"]] = None,
) -> None:
    """nerfacc's grid update with the max density over ``audio_codes`` (random training frames' audio).

    One grid serves every frame, so it must cover every mouth shape. ER-NeRF's ``update_extra_state``
    (nerf_triplane/renderer.py, read for this) draws one random training frame per update and queries the density
    with that frame's audio code, keeping ``max(0.95 * grid, new)``. Here too fresh random frames are drawn at each
    update and nerfacc's decayed max (x 0.95 per update) remembers earlier ones; taking the max over a few distinct
    frames per update refreshes rare mouth shapes sooner. Cells overlapping ``keep_box`` (the mouth box) stay occupied:
    new speech may open the mouth unlike any training frame.
    """

    def occ_eval_fn(x: Tensor) -> Tensor:
        return max_density_over_audio(density_fn, x, audio_codes) * render_step_size

    grid.update_every_n_steps(
        step=step, occ_eval_fn=occ_eval_fn, occ_thre=occ_threshold, warmup_steps=warmup_steps, n=update_every
    )
    if keep_box is not None:
        grid.binaries |= cells_overlapping_box(grid, keep_box)
