"""The compiled hot paths (``--pipeline.model.compile``) give the eager values: the hash-table lookups (forward, table
and position gradients), a whole training step of each method (same loss and gradients) and a rendered frame; and
where compiling fails, one warning and eager values."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from dtnerf_ns.core import compilation
from dtnerf_ns.core.compilation import set_compile_mode
from dtnerf_ns.core.field_components.hash_grid import HashGrid2D
from dtnerf_ns.core.field_components.lean_hash_encoding import LeanHashEncoding

ATOL, RTOL = 1e-5, 1e-5


def _encodings():
    torch.manual_seed(0)
    grid = HashGrid2D(num_levels=5, features_per_level=2, log2_hashmap_size=8, base_resolution=4, max_resolution=64,
                      implementation="torch")  # fmt: skip  (dense and hashed levels)
    encoding = LeanHashEncoding(num_levels=4, min_res=4, max_res=64, log2_hashmap_size=10, features_per_level=2,
                                implementation="torch")  # fmt: skip
    with torch.no_grad():
        grid.params.normal_()
        encoding.hash_table.normal_()
    return [(grid, grid.params, 2), (encoding, encoding.hash_table, 3)]


def _lookup(module, table, x, upstream, mode):
    set_compile_mode(module, mode)
    table.grad = None
    x = x.clone().requires_grad_(x.requires_grad)
    out = module(x)
    (out * upstream).sum().backward()
    return out.detach(), table.grad.clone(), None if x.grad is None else x.grad.clone()


@pytest.mark.parametrize("positions_need_grad", [False, True])
def test_compiled_lookups_give_the_eager_values_and_gradients(positions_need_grad):
    for module, table, dims in _encodings():
        x = torch.rand(3000, dims)
        x[:3] = torch.tensor([0.5, 0.25, 0.0, 1.0][:dims]).expand(3, dims)  # on grid vertices
        x.requires_grad_(positions_need_grad)
        upstream = torch.randn(3000, module.get_out_dim())
        eager, compiled = (_lookup(module, table, x, upstream, mode) for mode in ("off", "on"))
        for a, b in zip(eager, compiled):
            if a is None:
                assert b is None
            else:
                torch.testing.assert_close(b, a, atol=ATOL * max(1.0, float(a.abs().max())), rtol=RTOL)
        with torch.no_grad():  # the rendering kernel (no rows kept)
            torch.testing.assert_close(module(x.detach()), eager[0], atol=ATOL, rtol=RTOL)


def _step_losses_and_gradients(trainer, step: int):
    """Loss dict and parameter gradients of one training step, with every random draw seeded."""
    pipeline = trainer.pipeline
    pipeline.train()
    torch.manual_seed(123)
    _, loss_dict, _ = pipeline.get_train_loss_dict(step=step)
    loss = sum(loss_dict.values())
    params = [p for p in pipeline.model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {k: float(v) for k, v in loss_dict.items()}, [None if g is None else g.detach() for g in grads]


@pytest.mark.parametrize("method", ["dtnerf", "sahs-nerf"])
def test_a_compiled_training_step_gives_the_eager_loss(method, tiny_dtnerf_dataset: Path, tiny_train_config,
                                                      tiny_sahs_config, tmp_path: Path):  # fmt: skip
    if method == "dtnerf":
        config = tiny_train_config(tiny_dtnerf_dataset, tmp_path / "out", 10)
    else:
        config = tiny_sahs_config(tiny_dtnerf_dataset, tmp_path / "out", 10, "audio")
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    model = trainer.pipeline.model
    # The model's setting (the fixtures' "off") reached every hash grid, encoding and compiled block.
    modes = {type(m).__name__: m.compile_mode for m in model.modules() if hasattr(m, "compile_mode")}
    expected = {"HashGrid2D", "DTNeRFSubField"} if method == "dtnerf" else {"HyperSpaceDeformation", "SemanticTemplate"}
    assert expected | {"LeanHashEncoding"} <= modes.keys() and set(modes.values()) == {"off"}, modes
    results = {}
    for mode in ("off", "auto"):
        set_compile_mode(model, mode)
        results[mode] = _step_losses_and_gradients(trainer, step=1)
    (eager_losses, eager_grads), (compiled_losses, compiled_grads) = results["off"], results["auto"]
    assert eager_losses.keys() == compiled_losses.keys()
    for key, value in eager_losses.items():
        assert compiled_losses[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    for a, b in zip(eager_grads, compiled_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, atol=1e-5 * max(1.0, float(a.abs().max())), rtol=1e-4)

    # The rendered frame too (eval-mode kernels, chunked rays, the final composite).
    model.eval()
    camera = trainer.pipeline.datamanager.eval_dataset.cameras[0:1]
    frames = {}
    for mode in ("off", "auto"):
        set_compile_mode(model, mode)
        frames[mode] = model.get_outputs_for_camera(camera)["rgb"]
    torch.testing.assert_close(frames["auto"], frames["off"], atol=ATOL, rtol=RTOL)


def test_a_compiler_failure_warns_once_and_runs_eagerly(monkeypatch):
    def no_compiler(fn, **kwargs):
        def broken(*args):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found\nmore detail")

        return broken

    monkeypatch.setattr(compilation, "_compiled", {})
    monkeypatch.setattr(compilation, "_failed", None)
    monkeypatch.setattr(torch, "compile", no_compiler)
    module, table, dims = _encodings()[1]
    x = torch.rand(100, dims)
    set_compile_mode(module, "off")
    with torch.no_grad():
        expected = module(x)
    set_compile_mode(module, "on")
    with pytest.warns(RuntimeWarning, match="torch.compile is not available here .*InvalidCxxCompiler") as caught:
        with torch.no_grad():
            first = module(x)
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        with torch.no_grad():
            second = module(x)
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, expected)
    assert not compilation.compile_applies("on", x.device)
