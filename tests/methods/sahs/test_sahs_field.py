"""SAHS-NeRF's deformation, both template implementations, and the volume-rendered semantics."""

import pytest
import torch
from nerfstudio.cameras.rays import Frustums, RaySamples
from nerfstudio.field_components.field_heads import FieldHeadNames

from dtnerf_ns.core.compilation import set_compile_mode
from dtnerf_ns.methods.sahs.field_components.feature_grid import FeatureGrid3D
from dtnerf_ns.methods.sahs.field_components.hyper_space_deformation import HyperSpaceDeformation
from dtnerf_ns.methods.sahs.field_components.semantic_templates import SemanticTemplate
from dtnerf_ns.methods.sahs.sahs_field import SEMANTICS, SAHSField
from dtnerf_ns.methods.sahs.semantic_rendering import render_semantics, semantic_cross_entropy

N, DIM = 50, 7


def _deformation(**kwargs) -> HyperSpaceDeformation:
    torch.manual_seed(0)
    deformation = HyperSpaceDeformation(DIM, deform_layers=4, deform_width=16, ambient_layers=3, ambient_width=8,
                                        position_frequencies=4, **kwargs)  # fmt: skip
    set_compile_mode(deformation, "off")  # the compiled path has its own tests (tests/core/test_compilation.py)
    return deformation


def test_deformation_and_ambient_shapes_gradients_and_switches():
    x, pose, feature = torch.rand(N, 3) * 2 - 1, torch.randn(N, 6), torch.randn(N, DIM)
    module = _deformation(ambient_dim=2)
    x_canonical, w = module(x, pose, feature)
    assert x_canonical.shape == (N, 3) and w.shape == (N, 2)
    assert float((x_canonical - x).abs().max()) < 1e-2  # starts near the identity
    (x_canonical.sum() + w.sum()).backward()
    for mlp in (module.deform_mlp, module.ambient_mlp):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mlp.parameters())
    # gamma and p reach the outputs once trained away from the identity
    with torch.no_grad():
        module.deform_mlp.layers[-1].weight.normal_()
    moved = module(x, pose, feature + 1.0)[0]
    assert not torch.allclose(moved, module(x, pose, feature)[0])

    no_ambient = _deformation(use_ambient=False)
    assert no_ambient(x, pose, feature)[1].shape == (N, 0) and no_ambient.ambient_mlp is None
    nothing = _deformation(use_global=False, use_ambient=False)
    x_same, w_none = nothing(x, pose, feature)
    assert torch.equal(x_same, x) and w_none.shape == (N, 0) and not list(nothing.parameters())


def _samples(rays=6, samples=5) -> RaySamples:
    g = torch.Generator().manual_seed(1)
    origins = (torch.rand(rays, 1, 3, generator=g) * 1.6 - 0.8).expand(rays, samples, 3)
    directions = torch.nn.functional.normalize(torch.randn(rays, 1, 3, generator=g), dim=-1).expand(rays, samples, 3)
    starts = torch.linspace(0.0, 0.4, samples)[None, :, None].expand(rays, samples, 1)
    frustums = Frustums(origins=origins, directions=directions, starts=starts, ends=starts + 0.1, pixel_area=torch.ones(rays, samples, 1))
    return RaySamples(frustums=frustums, deltas=torch.full((rays, samples, 1), 0.1),
                      metadata={"pose": torch.randn(rays, 1, 6, generator=g), "feature": torch.randn(rays, 1, DIM, generator=g)})  # fmt: skip


@pytest.mark.parametrize("implementation", ["mlp", "hash"])
def test_both_templates_render_colour_density_and_semantics(implementation):
    deformation = _deformation(ambient_dim=2)
    template = SemanticTemplate(implementation, 2, 12, 4, mlp_layers=3, mlp_width=16, branch_layers=2, branch_width=8,
                                position_frequencies=4, hash_levels=4, hash_log2_size=10, hash_max_res=32,
                                hash_implementation="torch")  # fmt: skip
    set_compile_mode(template, "off")
    field = SAHSField(torch.tensor([[-2.0, -3.0, -1.5], [2.0, 1.5, 1.5]]), deformation, template, FeatureGrid3D(4, 4))
    samples = _samples()
    out = field(samples)
    assert out[FieldHeadNames.RGB].shape == (6, 5, 3) and out[FieldHeadNames.DENSITY].shape == (6, 5, 1)
    assert out[SEMANTICS].shape == (6, 5, 12)
    assert float(out[FieldHeadNames.RGB].min()) >= 0 and float(out[FieldHeadNames.RGB].max()) <= 1
    assert bool((out[FieldHeadNames.DENSITY] >= 0).all())
    loss = out[FieldHeadNames.RGB].sum() + out[FieldHeadNames.DENSITY].sum() + out[SEMANTICS].sum()
    loss.backward()
    for module in (template.trunk, template.colour_branch, template.semantic_branch, deformation.deform_mlp, field.feature_grid):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), module
    with pytest.raises(KeyError, match="pose"):
        samples.metadata = {"feature": samples.metadata["feature"]}
        field(samples)


def test_semantic_render_sums_to_one_and_cross_entropy_is_zero_when_right():
    torch.manual_seed(0)
    weights = torch.rand(10, 8, 1) / 8  # accumulation < 1: the rest is background
    logits = torch.randn(10, 8, 12)
    probabilities = render_semantics(weights, logits)
    torch.testing.assert_close(probabilities.sum(dim=-1), torch.ones(10))
    assert bool((probabilities >= 0).all())
    # An opaque surface whose samples are certain of class 7: probability 1 for 7, cross-entropy 0.
    opaque = torch.zeros(4, 8, 1)
    opaque[:, 3] = 1.0
    certain = torch.full((4, 8, 12), -30.0)
    certain[..., 7] = 30.0
    perfect = render_semantics(opaque, certain)
    torch.testing.assert_close(semantic_cross_entropy(perfect, torch.full((4,), 7)), torch.zeros(4), atol=1e-5, rtol=0)
    assert bool((semantic_cross_entropy(perfect, torch.zeros(4, dtype=torch.long)) > 10).all())
    # Nothing along the ray: all background (class 0).
    empty = render_semantics(torch.zeros(3, 8, 1), logits[:3])
    torch.testing.assert_close(semantic_cross_entropy(empty, torch.zeros(3, dtype=torch.long)), torch.zeros(3), atol=1e-6, rtol=0)
