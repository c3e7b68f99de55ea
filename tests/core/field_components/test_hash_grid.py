"""HashGrid2D: hand-computed lookups, an independent reference, backend switch and tcnn agreement."""


import pytest
import torch

from dtnerf_ns.core.field_components import hash_grid as hash_grid_module
from dtnerf_ns.core.field_components.hash_grid import HashGrid2D

PRIME = 2654435761


def _tiny_grid() -> HashGrid2D:
    # base 2, max 8, 2 levels -> per_level_scale 4.
    # level 0: scale 2*1-1 = 1, resolution 2, 4 vertices <= 8 rows -> dense, rows 0..7
    # level 1: scale 2*4-1 = 7, resolution 8, 64 vertices > 16 rows -> hashed, rows 8..23
    grid = HashGrid2D(
        num_levels=2, features_per_level=2, log2_hashmap_size=4, base_resolution=2, max_resolution=8,
        implementation="torch",
    )
    rows = torch.arange(grid.num_table_rows, dtype=torch.float32)
    table = torch.stack([(rows + 1) ** 2, -3.0 * rows + 1.0], dim=-1)  # non-linear in the row index
    with torch.no_grad():
        grid.params.copy_(table.flatten())
    return grid


def test_level_layout_matches_tcnn_rules():
    grid = _tiny_grid()
    assert grid.level_resolutions == [2, 8]
    assert grid.level_sizes == [8, 16]
    assert grid.num_table_rows == 24
    assert grid._hashed.tolist() == [False, True]
    assert grid.get_out_dim() == 4
    assert grid.params.numel() == 24 * 2


def test_bilinear_lookup_by_hand():
    grid = _tiny_grid()

    def row(r):
        return torch.tensor([(r + 1.0) ** 2, -3.0 * r + 1.0])

    out = grid(torch.tensor([[0.3, 0.6]]))[0]

    # Level 0 (dense, resolution 2): pos = 1 * (0.3, 0.6) + 0.5 = (0.8, 1.1) -> cell (0, 1), frac (0.8, 0.1).
    # Dense index ix + 2 * iy: (0,1)->2, (1,1)->3, (0,2)->4, (1,2)->5.
    lvl0 = 0.2 * 0.9 * row(2) + 0.8 * 0.9 * row(3) + 0.2 * 0.1 * row(4) + 0.8 * 0.1 * row(5)
    # Level 1 (hashed, 16 rows at offset 8): pos = 7 * (0.3, 0.6) + 0.5 = (2.6, 4.7) -> cell (2, 4), frac (0.6, 0.7).
    # (4 * PRIME) mod 2^32 = 2027808452 (low nibble 4); (5 * PRIME) mod 2^32 = 387276917 (low nibble 5).
    # (2,4): 4^2=6, (3,4): 4^3=7, (2,5): 5^2=7, (3,5): 5^3=6  (then + offset 8).
    assert ((4 * PRIME) % 2**32, (5 * PRIME) % 2**32) == (2027808452, 387276917)
    lvl1 = 0.4 * 0.3 * row(14) + 0.6 * 0.3 * row(15) + 0.4 * 0.7 * row(15) + 0.6 * 0.7 * row(14)
    expected = torch.cat([lvl0, lvl1])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-4)


def _reference(grid: HashGrid2D, point):
    """Independent scalar re-implementation of tcnn's HashGrid (python ints for the uint32 maths)."""
    table = grid.params.detach().view(-1, grid.features_per_level)
    feats = []
    offset = 0
    for level, (res, size) in enumerate(zip(grid.level_resolutions, grid.level_sizes)):
        scale = float(grid._scales[level])
        pos = [scale * point[0] + 0.5, scale * point[1] + 0.5]
        cell = [int(torch.floor(torch.tensor(p))) for p in pos]
        frac = [p - c for p, c in zip(pos, cell)]
        acc = torch.zeros(grid.features_per_level)
        for dx in (0, 1):
            for dy in (0, 1):
                ix, iy = cell[0] + dx, cell[1] + dy
                if res * res <= size:
                    index = (ix + iy * res) % size
                else:
                    index = ((ix ^ ((iy * PRIME) % 2**32)) % 2**32) % size
                w = (frac[0] if dx else 1 - frac[0]) * (frac[1] if dy else 1 - frac[1])
                acc += w * table[offset + index]
        feats.append(acc)
        offset += size
    return torch.cat(feats)


def test_matches_reference_on_random_points_and_edges():
    torch.manual_seed(0)
    grid = HashGrid2D(num_levels=4, features_per_level=2, log2_hashmap_size=6, base_resolution=3, max_resolution=40,
                      implementation="torch")
    assert grid._hashed.tolist()[0] is False and grid._hashed.tolist()[-1] is True
    with torch.no_grad():
        grid.params.uniform_(-1, 1)
    pts = torch.cat([torch.rand(20, 2), torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.5, 0.999]])])
    out = grid(pts)
    ref = torch.stack([_reference(grid, p.tolist()) for p in pts])
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_init_shape_grad_and_batch_dims():
    grid = HashGrid2D(num_levels=3, features_per_level=2, log2_hashmap_size=8, base_resolution=4, max_resolution=64,
                      implementation="torch")
    assert grid.params.abs().max() <= 1e-4
    x = torch.rand(5, 7, 2)
    out = grid(x)
    assert out.shape == (5, 7, 6)
    out.sum().backward()
    assert grid.params.grad is not None and grid.params.grad.abs().sum() > 0


def test_state_dict_roundtrip():
    a = _tiny_grid()
    b = HashGrid2D(num_levels=2, features_per_level=2, log2_hashmap_size=4, base_resolution=2, max_resolution=8,
                   implementation="torch")
    b.load_state_dict(a.state_dict())
    x = torch.rand(10, 2)
    torch.testing.assert_close(a(x), b(x))
    # A checkpoint written by the tcnn backend (key tcnn_encoding.params) loads into the torch backend.
    b.load_state_dict({"tcnn_encoding.params": a.params.detach() * 2})
    torch.testing.assert_close(b.params, a.params * 2)


def _tcnn_available() -> bool:
    return torch.cuda.is_available() and hash_grid_module._import_tcnn() is not None


def test_tcnn_request_falls_back_with_one_warning(monkeypatch):
    if hash_grid_module._import_tcnn() is not None:
        pytest.skip("tinycudann is importable: no fallback to test")
    monkeypatch.setattr(hash_grid_module, "_TCNN_FALLBACK_WARNED", False)
    with pytest.warns(RuntimeWarning, match="tinycudann"):
        grid = HashGrid2D(num_levels=2, log2_hashmap_size=6, base_resolution=2, max_resolution=8, implementation="tcnn")
    assert grid.implementation == "torch"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HashGrid2D(num_levels=2, log2_hashmap_size=6, base_resolution=2, max_resolution=8, implementation="tcnn")


@pytest.mark.skipif(not _tcnn_available(), reason="needs tinycudann and a CUDA device")
def test_tcnn_and_torch_agree():
    torch.manual_seed(0)
    kwargs = dict(num_levels=8, features_per_level=2, log2_hashmap_size=12, base_resolution=8, max_resolution=512)
    fast = HashGrid2D(implementation="tcnn", **kwargs).cuda()
    slow = HashGrid2D(implementation="torch", **kwargs).cuda()
    assert fast.implementation == "tcnn"
    with torch.no_grad():
        fast.tcnn_encoding.params.uniform_(-1, 1)
    slow.load_state_dict(fast.state_dict())
    x = torch.rand(4096, 2, device="cuda")
    # tcnn returns half precision by default: compare at half-precision tolerance.
    torch.testing.assert_close(fast(x), slow(x), rtol=1e-2, atol=5e-3)


def test_table_gradient_without_saved_corners_matches_autograd():
    """The memory-saving lookup (int32 rows kept for backward, weights recomputed) gives autograd's table gradient,
    also for hashed levels, and keeps 16 bytes per point and level (plus the points)."""
    torch.manual_seed(0)
    grid = HashGrid2D(num_levels=3, features_per_level=2, log2_hashmap_size=5, base_resolution=2, max_resolution=16,
                      implementation="torch")  # fmt: skip
    with torch.no_grad():
        grid.params.normal_()
    x = torch.rand(500, 2)
    upstream = torch.randn(500, grid.get_out_dim())
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
        out = grid(x)
    assert sum(saved) == 500 * 3 * 4 * 4 + x.numel() * 4  # int32 rows of 4 corners x 3 levels, and the points
    (out * upstream).sum().backward()
    fast = grid.params.grad.clone()
    grid.params.grad = None
    table = grid.params.view(-1, 2)
    reference = sum(weight[..., None] * table[rows] for rows, weight in grid.corners(x)).flatten(start_dim=-2)
    (reference * upstream).sum().backward()
    torch.testing.assert_close(fast, grid.params.grad)
    with torch.no_grad():
        torch.testing.assert_close(grid(x), reference)
