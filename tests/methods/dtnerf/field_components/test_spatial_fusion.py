"""spatial_fusion maths."""

import torch

from dtnerf_ns.methods.dtnerf.field_components.spatial_fusion import spatial_fusion


def _rand(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, generator=g) * 5, torch.rand(n, 3, generator=g),
            torch.rand(n, 1, generator=g) * 5, torch.rand(n, 3, generator=g))


def test_zero_mouth_density_is_face_alone():
    df, cf, _, cm = _rand()
    df[:4] = 0.0  # also empty space
    df[4:8] = 1e-12
    dm = torch.zeros_like(df)
    cm[0] = float("nan")  # undefined mouth colour must not leak
    density, rgb = spatial_fusion(df, cf, dm, cm)
    assert torch.equal(density, df)
    assert torch.equal(rgb, cf)


def test_equal_densities_average_colour():
    df, cf, _, cm = _rand()
    density, rgb = spatial_fusion(df, cf, df.clone(), cm)
    torch.testing.assert_close(density, 2 * df)
    torch.testing.assert_close(rgb, (cf + cm) / 2)


def test_densities_add_and_colour_is_density_weighted():
    df, cf, dm, cm = _rand(seed=1)
    density, rgb = spatial_fusion(df, cf, dm, cm)
    torch.testing.assert_close(density, df + dm)
    torch.testing.assert_close(rgb, (df * cf + dm * cm) / (df + dm))


def test_gradients_flow_to_both():
    df, cf, dm, cm = (t.requires_grad_(True) for t in _rand(seed=2))
    density, rgb = spatial_fusion(df, cf, dm, cm)
    (density.sum() + rgb.sum()).backward()
    for t in (df, cf, dm, cm):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
