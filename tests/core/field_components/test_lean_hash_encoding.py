"""LeanHashEncoding / LeanHashMLPDensityField: nerfstudio's values, gradients and state dicts, with less kept for
backward."""

import torch
from nerfstudio.cameras.rays import Frustums, RaySamples
from nerfstudio.field_components.encodings import HashEncoding
from nerfstudio.fields.density_fields import HashMLPDensityField

from dtnerf_ns.core.field_components.lean_hash_encoding import LeanHashEncoding, LeanHashMLPDensityField

ARGS = dict(num_levels=4, min_res=4, max_res=64, log2_hashmap_size=10, features_per_level=2, implementation="torch")


def _pair():
    torch.manual_seed(0)
    reference, lean = HashEncoding(**ARGS), LeanHashEncoding(**ARGS)
    with torch.no_grad():
        reference.hash_table.normal_()
    lean.load_state_dict(reference.state_dict())
    return reference, lean


def test_values_and_table_gradient_match_nerfstudio():
    reference, lean = _pair()
    x = torch.rand(3000, 3)
    x[:4] = torch.tensor([[0.5, 0.25, 0.0], [0.0, 0.0, 0.0], [0.125, 0.75, 0.5], [1.0, 1.0, 1.0]])  # on grid vertices
    upstream = torch.randn(3000, reference.get_out_dim())
    for encoding in (reference, lean):
        (encoding(x) * upstream).sum().backward()
    torch.testing.assert_close(lean(x), reference(x), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(lean.hash_table.grad, reference.hash_table.grad, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(lean(x[None]), reference(x[None]), atol=1e-6, rtol=1e-5)  # batch dims kept


def test_backward_keeps_int32_rows_only():
    reference, lean = _pair()
    x = torch.rand(1000, 3)

    def saved_bytes(encoding) -> int:
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
            encoding(x)
        return sum(saved)

    per_sample_level = (saved_bytes(lean) - x.numel() * 4) / (1000 * ARGS["num_levels"])
    assert per_sample_level == 8 * 4  # 8 corners' int32 rows
    assert saved_bytes(reference) > 3 * saved_bytes(lean)  # nerfstudio: 120 bytes per sample and level


def test_density_field_is_a_drop_in_for_nerfstudios():
    torch.manual_seed(0)
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    kwargs = dict(num_levels=4, max_res=64, log2_hashmap_size=10, hidden_dim=8, implementation="torch")
    reference, lean = HashMLPDensityField(aabb, **kwargs), LeanHashMLPDensityField(aabb, **kwargs)
    assert list(lean.state_dict()) == list(reference.state_dict())
    with torch.no_grad():
        reference.encoding.hash_table.normal_()
    lean.load_state_dict(reference.state_dict())
    assert lean.mlp_base[0] is lean.encoding  # one table, as in nerfstudio's
    origins = torch.rand(64, 1, 3) * 1.6 - 0.8
    frustums = Frustums(
        origins=origins.expand(64, 8, 3), directions=torch.nn.functional.normalize(torch.randn(64, 1, 3), dim=-1).expand(64, 8, 3),
        starts=torch.linspace(0.0, 0.2, 8)[None, :, None].expand(64, 8, 1), ends=torch.linspace(0.02, 0.22, 8)[None, :, None].expand(64, 8, 1),
        pixel_area=torch.ones(64, 8, 1),
    )
    samples = RaySamples(frustums=frustums)
    torch.testing.assert_close(lean.get_density(samples)[0], reference.get_density(samples)[0], atol=1e-5, rtol=1e-4)
