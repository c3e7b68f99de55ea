"""DTNeRFField end to end on a tiny CPU configuration."""

import pytest
import torch
from nerfstudio.cameras.rays import Frustums, RaySamples
from nerfstudio.field_components.field_heads import FieldHeadNames

from dtnerf_ns.core.compilation import set_compile_mode
from dtnerf_ns.methods.dtnerf.dtnerf_field import DTNeRFField

R, S, A = 6, 8, 16
AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
MOUTH = torch.tensor([[-0.4, -0.6, -0.2], [0.4, 0.0, 0.5]])


def _tiny_field(**kwargs) -> DTNeRFField:
    torch.manual_seed(0)
    field = DTNeRFField(
        aabb=AABB, mouth_aabb=MOUTH, audio_dim=A, num_levels=4, features_per_level=2,
        face_log2_hashmap_size=10, mouth_log2_hashmap_size=10, face_base_res=4, face_max_res=64,
        mouth_base_res=4, mouth_max_res=32, hidden_dim=16, geo_feat_dim=8, hidden_dim_color=16,
        transformer_out_dim=8, transformer_dim=16, num_heads=4, implementation="torch", **kwargs,
    )
    set_compile_mode(field, "off")  # the compiled path has its own tests (tests/core/test_compilation.py)
    return field


def _ray_samples(audio=None, seed=0) -> RaySamples:
    g = torch.Generator().manual_seed(seed)
    # rays along +z through the box at random (x, y): some cross the mouth box, some do not
    xy = torch.rand(R, 1, 2, generator=g) * 1.6 - 0.8
    xy[:2] = torch.tensor([0.1, -0.3])  # two rays certainly through the mouth box
    z = torch.linspace(-1.2, 1.2, S).view(1, S, 1).expand(R, S, 1)  # first/last samples leave the scene box
    origins = torch.cat([xy.expand(R, S, 2), z], dim=-1)
    directions = torch.nn.functional.normalize(torch.randn(R, 1, 3, generator=g), dim=-1).expand(R, S, 3)
    zeros = torch.zeros(R, S, 1)
    if audio is None:
        audio = torch.randn(R, 1, A, generator=g)
    blink = torch.rand(R, 1, 1, generator=g)
    return RaySamples(
        frustums=Frustums(origins=origins, directions=directions, starts=zeros, ends=zeros,
                          pixel_area=torch.ones(R, S, 1)),
        metadata={"audio": audio, "blink": blink},
    )


def _in_mouth(positions):
    return ((positions >= MOUTH[0]) & (positions <= MOUTH[1])).all(-1)


def test_forward_shapes_finite_and_mouth_box():
    field = _tiny_field()
    rs = _ray_samples()
    out = field(rs)
    assert out[FieldHeadNames.RGB].shape == (R, S, 3)
    assert out[FieldHeadNames.DENSITY].shape == (R, S, 1)
    for key, dim in (("density_face", 1), ("density_mouth", 1), ("rgb_face", 3), ("rgb_mouth", 3)):
        assert out[key].shape == (R, S, dim), key
    for value in out.values():
        assert torch.isfinite(value).all()

    inside = _in_mouth(rs.frustums.get_positions())
    assert inside.any() and (~inside).any()
    dm = out["density_mouth"][..., 0]
    assert torch.equal(dm[~inside], torch.zeros_like(dm[~inside]))  # exactly 0 outside its box
    assert (dm[inside] > 0).all()
    torch.testing.assert_close(out[FieldHeadNames.DENSITY], out["density_face"] + out["density_mouth"])
    # outside the mouth box the fused colour is the face colour exactly
    assert torch.equal(out[FieldHeadNames.RGB][~inside], out["rgb_face"][~inside])
    # outside the scene box the face density is 0 (nerfacto convention)
    z = rs.frustums.get_positions()[..., 2]
    assert torch.equal(out["density_face"][z.abs() > 1], torch.zeros_like(out["density_face"][z.abs() > 1]))


def test_backward_reaches_both_subfields():
    field = _tiny_field()
    out = field(_ray_samples())
    (out[FieldHeadNames.RGB].sum() + out[FieldHeadNames.DENSITY].sum()).backward()
    for sub in (field.face, field.mouth):
        for module in (sub.encoding.grids[0], sub.encoding.grids[1], sub.encoding.grids[2]):
            assert module.params.grad is not None and module.params.grad.abs().sum() > 0
        for lin in (sub.transformer.q_proj, sub.transformer.k_proj, sub.transformer.v_proj):
            assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
        assert all(p.grad is not None for p in sub.mlp_density.parameters())
        assert all(p.grad is not None for p in sub.mlp_color.parameters())


def test_recomputing_the_transformer_gives_the_same_gradients_with_less_kept():
    grads, kept = {}, {}
    for mode in ("never", "always"):
        field = _tiny_field(transformer_recompute=mode)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
            out = field(_ray_samples())
        (out[FieldHeadNames.RGB].sum() + out[FieldHeadNames.DENSITY].sum()).backward()
        grads[mode] = {name: p.grad.clone() for name, p in field.named_parameters() if p.grad is not None}
        kept[mode] = sum(saved)
    assert grads["always"].keys() == grads["never"].keys() and any("transformer" in k for k in grads["always"])
    for name, grad in grads["never"].items():
        torch.testing.assert_close(grads["always"][name], grad, msg=name)
    assert kept["always"] < kept["never"]


def test_density_depends_on_audio_and_metadata_forms():
    field = _tiny_field()
    rs_a = _ray_samples(audio=torch.zeros(R, 1, A))
    rs_b = _ray_samples(audio=torch.ones(R, S, A))  # per-sample audio is accepted too
    da, _ = field.get_density(rs_a)
    db, _ = field.get_density(rs_b)
    assert da.shape == db.shape == (R, S, 1)
    assert not torch.allclose(da, db)
    # density_fn (occupancy-grid style queries) with an explicit code or the zero default
    pos = torch.rand(10, 3) * 2 - 1
    assert field.density_fn(pos, audio=torch.ones(A)).shape == (10, 1)
    assert field.density_fn(pos).shape == (10, 1)


def test_missing_metadata_errors_and_no_blink_mode():
    field = _tiny_field()
    rs = _ray_samples()
    with pytest.raises(KeyError, match="audio"):
        field.get_density(RaySamples(frustums=rs.frustums))
    with pytest.raises(KeyError, match="blink"):
        field(RaySamples(frustums=rs.frustums, metadata={"audio": rs.metadata["audio"]}))
    no_blink = _tiny_field(use_blink=False)
    out = no_blink(RaySamples(frustums=rs.frustums, metadata={"audio": rs.metadata["audio"]}))
    assert out[FieldHeadNames.RGB].shape == (R, S, 3)


def test_flat_sample_batch_without_mouth_samples():
    field = _tiny_field()
    n = 20
    origins = torch.rand(n, 3) * 0.3 + 0.6  # all outside the mouth box (x > 0.4)
    rs = RaySamples(
        frustums=Frustums(origins=origins, directions=torch.nn.functional.normalize(torch.randn(n, 3), dim=-1),
                          starts=torch.zeros(n, 1), ends=torch.zeros(n, 1), pixel_area=torch.ones(n, 1)),
        metadata={"audio": torch.randn(n, A), "blink": torch.rand(n, 1)},
    )
    out = field(rs)
    assert out[FieldHeadNames.RGB].shape == (n, 3)
    assert torch.equal(out["density_mouth"], torch.zeros(n, 1))
    assert torch.equal(out[FieldHeadNames.RGB], out["rgb_face"])


def _close_gate(mlp) -> None:
    """Drive a gate MLP's sigmoid to 0 everywhere (last layer: zero weights, very negative bias)."""
    last = mlp.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-1e4)


def test_a_closed_audio_gate_makes_the_face_ignore_audio():
    field = _tiny_field()
    rs_a, rs_b = _ray_samples(), _ray_samples(audio=torch.randn(R, 1, A))
    rs_b.metadata["blink"] = rs_a.metadata["blink"]
    outside = ~_in_mouth(rs_a.frustums.get_positions())
    assert not torch.allclose(field(rs_a)["density_face"], field(rs_b)["density_face"])
    gate = field(rs_a)["audio_gate"]
    assert gate.shape == (R, S, 1) and ((gate > 0) & (gate < 1)).all()
    _close_gate(field.face.audio_gate)
    a, b = field(rs_a), field(rs_b)
    torch.testing.assert_close(a["density_face"], b["density_face"])
    torch.testing.assert_close(a[FieldHeadNames.RGB][outside], b[FieldHeadNames.RGB][outside])
    assert torch.equal(a["audio_gate"], torch.zeros_like(a["audio_gate"]))
    # The mouth box is the speaking region: its field keeps the audio.
    assert not torch.allclose(a["density_mouth"], b["density_mouth"])


def test_blink_reaches_the_density_through_the_eye_gate():
    def with_blink(rs, value):
        rs.metadata = {**rs.metadata, "blink": torch.full((R, 1, 1), value)}
        return rs

    field = _tiny_field()
    open_, closed = field(with_blink(_ray_samples(), 0.0)), field(with_blink(_ray_samples(), 1.0))
    assert not torch.allclose(open_["density_face"], closed["density_face"])
    assert ((closed["eye_gate"] > 0) & (closed["eye_gate"] < 1)).all()
    _close_gate(field.face.eye_gate)
    torch.testing.assert_close(field(with_blink(_ray_samples(), 0.0))["density_face"],
                               field(with_blink(_ray_samples(), 1.0))["density_face"])
    plain = _tiny_field(use_eye_gate=False, use_audio_gate=False)
    out = plain(with_blink(_ray_samples(), 1.0))
    torch.testing.assert_close(out["density_face"], plain(with_blink(_ray_samples(), 0.0))["density_face"])
    assert torch.equal(out["eye_gate"], torch.zeros_like(out["eye_gate"]))
    # Density-only queries (occupancy grid) have no blink: eyes open.
    assert torch.isfinite(field.density_fn(torch.zeros(5, 3))).all()


def test_gate_losses_count_only_rays_outside_their_region():
    from dtnerf_ns.methods.dtnerf.dtnerf_losses import gate_losses

    outputs = {"audio_gate": torch.tensor([[0.2], [0.4], [1.0], [0.0]]), "eye_gate": torch.tensor([[1.0], [0.5], [0.0], [0.0]])}
    batch = {"face_mask": torch.tensor([1.0, 0.0, 0.0, 1.0]), "eyes_mask": torch.tensor([1.0, 1.0, 0.0, 0.0])}
    losses = gate_losses(outputs, batch, audio_mult=0.1, eye_mult=2.0)
    torch.testing.assert_close(losses["audio_gate_loss"], torch.tensor(0.1 * (0.4 + 1.0) / 4))
    torch.testing.assert_close(losses["eye_gate_loss"], torch.tensor(0.0))
    assert gate_losses(outputs, {}, 0.1, 2.0) == {} and gate_losses(outputs, batch, 0.0, 0.0) == {}
