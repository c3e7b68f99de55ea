"""TriplaneHashEncoding: shapes and plane layout."""

import torch

from dtnerf_ns.methods.dtnerf.field_components.triplane_encoding import TriplaneHashEncoding, plane_coordinates

TINY = dict(num_levels=4, features_per_level=2, log2_hashmap_size=10, base_resolution=4, max_resolution=64,
            implementation="torch")


def test_shapes():
    enc = TriplaneHashEncoding(**TINY)
    assert enc.out_dim == 8 and enc.num_tokens == 3
    x = torch.rand(2, 5, 3) * 2 - 1
    assert enc(x).shape == (2, 5, 3, 8)


def test_plane_order_xy_yz_xz():
    torch.manual_seed(0)
    enc = TriplaneHashEncoding(**TINY)
    with torch.no_grad():
        for grid in enc.grids:
            grid.params.uniform_(-1, 1)
    x = torch.rand(16, 3) * 2 - 1
    moved = x.clone()
    moved[:, 2] = -moved[:, 2] * 0.5  # change z only
    a, b = enc(x), enc(moved)
    torch.testing.assert_close(a[:, 0], b[:, 0])  # xy plane ignores z
    assert not torch.allclose(a[:, 1], b[:, 1]) and not torch.allclose(a[:, 2], b[:, 2])
    # plane token t is grid t evaluated at the mapped 2D coordinate
    uv = (plane_coordinates(x) + 1) / 2
    torch.testing.assert_close(a[:, 2], enc.grids[2](uv[:, 2]))
    torch.testing.assert_close(uv[:, 2], (x[:, [0, 2]] + 1) / 2)


def test_out_of_range_points_are_clamped():
    enc = TriplaneHashEncoding(**TINY)
    x = torch.tensor([[1.5, -2.0, 0.3]])
    torch.testing.assert_close(enc(x), enc(torch.tensor([[1.0, -1.0, 0.3]])))
