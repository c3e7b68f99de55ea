"""Sampler choice, the audio-aware occupancy grid and the occupancy render path, on a CPU.

nerfacc's ray traversal (``OccGridEstimator.sampling``) is CUDA-only, so the render-path tests replace it with
:func:`uniform_marching_double`, a pure-torch TEST DOUBLE with the same inputs and outputs. Grid updates, the packed
rendering and everything else run for real.
"""

from __future__ import annotations

import io
from typing import Callable, Dict, List

import nerfacc
import pytest
import torch
from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import Optimizers

import dtnerf_ns.methods.dtnerf.audio_occupancy_grid as aog
from dtnerf_ns.methods.dtnerf.dtnerf_config import dtnerf_config, dtnerf_small_config
from dtnerf_ns.methods.dtnerf.dtnerf_model import DTNeRFModel

import tiny_models  # same folder
from tiny_models import AABB, MOUTH_AABB, make_batch, make_rays

TRAIN_FRAMES = list(range(8))  # frames 8 and 9 are held out
IMAGE_KEYS = {"rgb_head", "rgb", "accumulation", "depth", "rgb_face", "rgb_mouth", "accumulation_mouth", "audio_gate", "eye_gate"}


def make_model(**kwargs) -> DTNeRFModel:
    """A tiny DT-NeRF model; occupancy sampler on a coarse 8^3 grid with long steps unless told otherwise."""
    occupancy = dict(sampler="occupancy", grid_resolution=8, render_step_size=0.1, occ_audio_codes_per_update=2)
    return tiny_models.make_model(train_frames=TRAIN_FRAMES, **{**occupancy, **kwargs})


def uniform_marching_double(grid: nerfacc.OccGridEstimator) -> tuple[Callable, List[Dict]]:
    """TEST DOUBLE for ``grid.sampling`` (nerfacc's traversal needs CUDA).

    Marches every ray in uniform steps of ``render_step_size`` from max(near_plane, t_min) to min(far_plane, t_max)
    (no cone stepping, no stratification) and keeps the steps whose midpoint lies in an occupied level-0 cell. Like
    nerfacc it calls ``sigma_fn(t_starts, t_ends, ray_indices)`` when given one, but only records the densities (no
    skipping). Returns ``(ray_indices, t_starts, t_ends)``, grouped by ray in marching order, as nerfacc does; the
    second return value lists each call's samples and densities.
    """
    calls: List[Dict] = []

    def sampling(rays_o, rays_d, sigma_fn=None, near_plane=0.0, far_plane=1e10, t_min=None, t_max=None,
                 render_step_size=1e-3, **_):  # fmt: skip
        near = torch.full_like(rays_o[:, 0], near_plane)
        far = torch.full_like(rays_o[:, 0], far_plane)
        near = near if t_min is None else torch.maximum(near, t_min)
        far = far if t_max is None else torch.minimum(far, t_max)
        num_steps = int(torch.ceil((far - near).clamp_min(0).max() / render_step_size))
        starts = near[:, None] + render_step_size * torch.arange(num_steps)[None]  # [R, steps]
        ends = starts + render_step_size
        mid = rays_o[:, None] + rays_d[:, None] * ((starts + ends) / 2)[..., None]
        lo, hi = grid.aabbs[0, :3], grid.aabbs[0, 3:]
        cell = torch.floor((mid - lo) / (hi - lo) * grid.resolution).long()
        keep = ((cell >= 0) & (cell < grid.resolution)).all(dim=-1) & (ends <= far[:, None])
        cell = torch.minimum(cell.clamp_min(0), grid.resolution - 1)
        keep &= grid.binaries[0][cell[..., 0], cell[..., 1], cell[..., 2]]
        ray_indices, step = torch.nonzero(keep, as_tuple=True)  # row-major: grouped by ray, t ascending
        t_starts, t_ends = starts[ray_indices, step], ends[ray_indices, step]
        sigmas = None if sigma_fn is None else sigma_fn(t_starts, t_ends, ray_indices)
        calls.append({"ray_indices": ray_indices, "t_starts": t_starts, "t_ends": t_ends, "sigmas": sigmas})
        return ray_indices, t_starts, t_ends

    return sampling, calls


@pytest.fixture
def occupancy_available(monkeypatch):
    """Pretend CUDA and nerfacc's kernels are there (the traversal itself is replaced where a test renders)."""
    monkeypatch.setattr(aog, "occupancy_unavailable_reason", lambda: None)


def occupied_columns(model: DTNeRFModel) -> set:
    """x indices of the grid's occupied cells."""
    return set(torch.nonzero(model.occupancy_grid.binaries[0].any(dim=2).any(dim=1)).flatten().tolist())


# ---------------------------------------------------------------- (a) which sampler


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the choice on a machine without CUDA")
def test_auto_picks_the_proposal_sampler_on_this_cpu_machine():
    assert aog.occupancy_unavailable_reason() == "no CUDA device"
    model = make_model(sampler="auto")
    assert model.sampler_kind == "proposal"
    assert hasattr(model, "proposal_sampler") and not hasattr(model, "occupancy_sampler")
    assert set(model.get_param_groups()) == {"proposal_networks", "fields", "audio"}


def test_occupancy_without_cuda_kernels_fails_with_the_reason(monkeypatch):
    monkeypatch.setattr(aog, "occupancy_unavailable_reason", lambda: "no CUDA device")
    assert make_model(sampler="auto").sampler_kind == "proposal"
    with pytest.raises(RuntimeError, match=r"needs CUDA and nerfacc's CUDA kernels \(no CUDA device\)"):
        make_model(sampler="occupancy")


def test_configs_gpu_auto_small_proposal():
    assert dtnerf_config.pipeline.model.sampler == "auto"
    assert dtnerf_small_config.pipeline.model.sampler == "proposal"


def test_auto_builds_the_occupancy_grid_where_nerfacc_runs(occupancy_available):
    model = make_model(sampler="auto")
    assert model.sampler_kind == "occupancy" and not hasattr(model, "proposal_networks")
    keys = set(model.state_dict())
    assert {"occupancy_sampler.occupancy_grid.occs", "occupancy_sampler.occupancy_grid.binaries"} <= keys
    assert not any(k.startswith("proposal_networks.") for k in keys)
    # No proposal parameter group; the dtnerf optimizer config (which has one) still sets up.
    groups = model.get_param_groups()
    assert set(groups) == {"fields", "audio"}
    Optimizers(dtnerf_config.optimizers, groups)
    # One callback: before each iteration (grid update); nothing after (no proposal schedule).
    callbacks = model.get_training_callbacks(TrainingCallbackAttributes(None, None, None, None))
    assert [c.where_to_run for c in callbacks] == [[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION]]
    model.train()
    callbacks[0].run_callback_at_location(0, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    assert model.occupancy_grid.occs.max() > 0  # the callback updated the grid


# ---------------------------------------------------------------- (b) grid updates with random audio


def test_grid_update_runs_on_cpu_with_random_training_frames(occupancy_available, monkeypatch):
    model = make_model()
    model.train()
    encoded: List[List[int]] = []
    encode_audio = model.conditioning.audio_codes

    def spy(frames):
        encoded.append(frames.tolist())
        return encode_audio(frames)

    monkeypatch.setattr(model.conditioning, "audio_codes", spy)
    torch.manual_seed(3)
    for step in range(0, 49):
        model.update_occupancy_grid(step)
    assert len(encoded) == 4  # steps 0, 16, 32, 48 only
    for frames in encoded:
        assert len(set(frames)) == 2 and set(frames) <= set(TRAIN_FRAMES)  # distinct training frames, never held-out
    assert len({f for frames in encoded for f in frames}) > 2  # different frames at different updates
    occs = model.occupancy_grid.occs
    assert torch.isfinite(occs).all() and (occs >= 0).all() and occs.max() > 0


def test_grid_keeps_the_max_density_over_random_audio(occupancy_available, monkeypatch):
    """Density non-zero only in the grid column x = frame index (audio of frame k fills column k): after each update
    exactly the columns of the frames drawn so far are occupied (nerfacc's decayed max keeps earlier audio)."""

    def setup(codes_per_update: int) -> tuple[DTNeRFModel, List[int]]:
        model = make_model(occ_audio_codes_per_update=codes_per_update, occ_keep_mouth_box=False)
        model.train()
        drawn: List[int] = []

        def encode_audio(frames):  # audio code = the frame index in channel 0
            drawn.extend(frames.tolist())
            return torch.nn.functional.pad(frames.float()[:, None], (0, model.config.audio_dim - 1))

        cell_width = (AABB[1, 0] - AABB[0, 0]) / model.config.grid_resolution

        def density_fn(positions, audio):
            column = torch.floor((positions[:, 0] - AABB[0, 0]) / cell_width)
            return 1e3 * (column == audio[..., 0]).float()[:, None]

        monkeypatch.setattr(model.conditioning, "audio_codes", encode_audio)
        monkeypatch.setattr(model.field, "density_fn", density_fn)
        return model, drawn

    torch.manual_seed(4)
    model, drawn = setup(codes_per_update=1)
    for step in (0, 16, 32, 48):
        model.update_occupancy_grid(step)
        assert occupied_columns(model) == set(drawn)
    assert len(set(drawn)) > 1
    column = model.occupancy_grid.binaries[0][drawn[0]]
    assert column.all()  # the first frame's column is still fully occupied after later updates

    model, drawn = setup(codes_per_update=len(TRAIN_FRAMES))
    model.update_occupancy_grid(0)
    assert occupied_columns(model) == set(TRAIN_FRAMES)  # one update: max over all training audio


def test_mouth_box_cells_stay_occupied(occupancy_available, monkeypatch):
    model = make_model(occ_keep_mouth_box=True)
    model.train()
    monkeypatch.setattr(model.field, "density_fn", lambda positions, audio: positions.new_zeros(len(positions), 1))
    model.update_occupancy_grid(0)
    res = model.config.grid_resolution
    overlap = []
    for axis in range(3):  # cells whose extent overlaps the mouth box, per axis
        edges = torch.linspace(float(AABB[0, axis]), float(AABB[1, axis]), res + 1)
        overlap.append((edges[:-1] <= MOUTH_AABB[1, axis]) & (edges[1:] >= MOUTH_AABB[0, axis]))
    expected = overlap[0][:, None, None] & overlap[1][None, :, None] & overlap[2][None, None, :]
    assert 0 < int(expected.sum()) < res**3
    assert torch.equal(model.occupancy_grid.binaries[0], expected)


# ---------------------------------------------------------------- (c) occupancy render path


def test_packed_render_weights_on_cpu_match_nerfacc():
    """nerfacc's packed scan needs CUDA; render_weights' CPU path must equal nerfacc's batched (CPU) weights."""
    g = torch.Generator().manual_seed(5)
    num_rays, steps = 4, 6
    t = torch.cumsum(torch.rand(num_rays, steps + 1, generator=g), dim=-1)
    sigmas = torch.rand(num_rays, steps, generator=g) * 3
    reference = nerfacc.render_weight_from_density(t[:, :-1], t[:, 1:], sigmas)[0]  # [R, steps]
    keep = torch.ones(num_rays, steps, dtype=torch.bool)
    keep[1] = False  # a ray without samples
    keep[2, 3:] = False  # a ray cut short
    ray_indices, step = torch.nonzero(keep, as_tuple=True)
    sig = sigmas[ray_indices, step].requires_grad_()
    (weights,) = aog.render_weights(t[:, :-1][keep], t[:, 1:][keep], [sig], ray_indices, num_rays)
    assert torch.allclose(weights, reference[keep], atol=1e-6)
    accumulation = nerfacc.accumulate_along_rays(weights, None, ray_indices=ray_indices, n_rays=num_rays)
    assert accumulation[1] == 0 and torch.allclose(accumulation[[0, 3], 0], reference[[0, 3]].sum(-1), atol=1e-6)
    weights.sum().backward()
    assert sig.grad is not None and torch.isfinite(sig.grad).all()


def test_occupancy_render_path_end_to_end_on_cpu(occupancy_available, monkeypatch):
    # Without audio augmentation, so the codes recomputed below equal those the training forward used.
    model = make_model(**tiny_models.NO_AUDIO_AUGMENTATION)
    model.train()
    model.occupancy_grid.binaries.fill_(True)
    sampling, calls = uniform_marching_double(model.occupancy_grid)
    monkeypatch.setattr(model.occupancy_grid, "sampling", sampling)
    skip_test_audio = []
    density_fn = model.occupancy_sampler.density_fn

    def spy(positions, audio, blink=None):
        skip_test_audio.append(audio)
        return density_fn(positions, audio=audio, blink=blink)

    monkeypatch.setattr(model.occupancy_sampler, "density_fn", spy)
    rays, batch = make_rays(), make_batch()
    frames = model.conditioning.frames_of_rays(rays)

    outputs = model(rays)
    assert set(outputs) == IMAGE_KEYS  # no weights_list / proposal outputs
    for key in IMAGE_KEYS:
        assert outputs[key].shape == (64, 1 if key.startswith(("accumulation", "depth")) or key.endswith("gate") else 3)
        assert torch.isfinite(outputs[key]).all()

    # The skip test (sigma_fn) saw each sample with its own ray's audio.
    (call,) = calls
    ray_indices, t_mid = call["ray_indices"], (call["t_starts"] + call["t_ends"]) / 2
    positions = rays.origins[ray_indices] + rays.directions[ray_indices] * t_mid[:, None]
    with torch.no_grad():
        codes = model.conditioning.audio_codes(frames)
        blink = model.conditioning.blink[frames][ray_indices, None]
        own = model.field.density_fn(positions, audio=codes[ray_indices], blink=blink)[:, 0]
    (audio,) = skip_test_audio
    assert len(set(frames.tolist())) > 1 and torch.allclose(audio, codes[ray_indices])
    assert torch.allclose(call["sigmas"], own, rtol=1e-5, atol=1e-6)
    # Packed volume rendering: accumulation = 1 - exp(-sum sigma dt) per ray.
    optical_depth = torch.zeros(64).index_add_(0, ray_indices, own * (call["t_ends"] - call["t_starts"]))
    assert torch.allclose(outputs["accumulation"][:, 0], 1 - torch.exp(-optical_depth), atol=1e-5)

    losses = model.get_loss_dict(outputs, batch, model.get_metrics_dict(outputs, batch))
    assert set(losses) == {"face_loss", "mouth_loss", "image_loss", "audio_gate_loss"}  # no eyes mask in this batch
    sum(losses.values()).backward()
    for name, param in [("face hash grid", next(model.field.face.encoding.parameters())),
                        ("audio net", model.conditioning.audio_encoder.audio_net.encoder_fc[0].weight)]:  # fmt: skip
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_occupancy_eval_render_follows_audio(occupancy_available, monkeypatch):
    model = make_model()
    model.eval()
    model.occupancy_grid.binaries.fill_(True)
    sampling, calls = uniform_marching_double(model.occupancy_grid)
    monkeypatch.setattr(model.occupancy_grid, "sampling", sampling)
    with torch.no_grad():
        a = model(make_rays(32, frame=0))["rgb_head"]
        b = model(make_rays(32, frame=5))["rgb_head"]
        with model.driven_by(audio_features=torch.randn(3, 16, 29) * 3, blink=torch.zeros(3)):
            driven = model(make_rays(32, frame=0))["rgb_head"]
    # At render time too, samples are tested with their own ray's density (nerfacc's early ray termination).
    assert calls and all(call["sigmas"] is not None for call in calls)
    assert not torch.allclose(a, b) and not torch.allclose(a, driven)


# ---------------------------------------------------------------- checkpoints


def roundtrip(state_dict: dict) -> dict:
    """Through torch.save / torch.load (weights_only, as nerfstudio loads checkpoints)."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_occupancy_checkpoint_carries_its_grid_and_loads_with_it(occupancy_available):
    trained = make_model()
    trained.train()
    trained.update_occupancy_grid(0)
    trained.occupancy_grid.binaries[0, :4] = False
    state = roundtrip(trained.state_dict())

    model = make_model(sampler="proposal")
    model.eval()
    model.load_state_dict(state)  # strict
    assert model.sampler_kind == "occupancy" and not hasattr(model, "proposal_networks")
    assert torch.equal(model.occupancy_grid.binaries, trained.occupancy_grid.binaries)
    assert torch.equal(model.occupancy_grid.occs, trained.occupancy_grid.occs)


def test_proposal_checkpoint_renders_with_proposal_sampler_under_occupancy_config(occupancy_available):
    trained = make_model(sampler="proposal")
    trained.eval()
    model = make_model(sampler="auto")
    model.eval()
    assert model.sampler_kind == "occupancy"
    model.load_state_dict(roundtrip(trained.state_dict()))
    assert model.sampler_kind == "proposal" and not hasattr(model, "occupancy_sampler")
    with torch.no_grad():
        assert torch.allclose(model(make_rays(16))["rgb_head"], trained(make_rays(16))["rgb_head"])


def test_other_sampler_checkpoint_refused_for_training_or_without_cuda(monkeypatch):
    monkeypatch.setattr(aog, "occupancy_unavailable_reason", lambda: None)
    occupancy_state = make_model().state_dict()
    model = make_model()
    model.train()
    with pytest.raises(ValueError, match="resume with --pipeline.model.sampler proposal"):
        model.load_state_dict(make_model(sampler="proposal").state_dict())

    monkeypatch.setattr(aog, "occupancy_unavailable_reason", lambda: "no CUDA device")
    model = make_model(sampler="auto")
    model.eval()
    with pytest.raises(RuntimeError, match="needs CUDA"):
        model.load_state_dict(occupancy_state)


def test_occupancy_grid_attribute_is_none_with_proposal_sampler():
    # nerfstudio's viewer walks every attribute of the model: none may raise.
    model = make_model(sampler="proposal")
    assert model.occupancy_grid is None
    for name in dir(model):
        getattr(model, name)
