"""``torch.compile`` for the fields' hot paths, behind one switch (``--pipeline.model.compile``).

On a CPU a talking-head step is hundreds of small tensor operations (hash-table corners, gathers, gates, attention
over three tokens, MLP activations), each a separate loop over memory with Python in between. Inductor fuses a
block's element-wise work into generated C++ loops: the same values (to float rounding; the tests compare to 1e-5),
fewer passes over memory. Kernels are built on first use (seconds each, cached on disk by inductor for later runs)
with dynamic shapes, so new batch sizes do not rebuild them.

Where compiling fails (no C++ compiler, an unsupported platform or operator), one warning is printed and every block
runs eagerly from then on: nothing else changes.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Dict, Literal, Optional

import torch

CompileMode = Literal["auto", "on", "off"]
"""When blocks run compiled: "auto" on a CPU (where it was measured), "on" on any device (on CUDA through Triton;
untested), "off" never."""

_compiled: Dict[Callable[..., Any], Callable[..., Any]] = {}
_failed: Optional[str] = None


def compile_applies(mode: CompileMode, device: torch.device) -> bool:
    """Whether ``mode`` asks for compiled blocks on ``device`` (and compiling has not failed in this process)."""
    if _failed is not None or mode == "off":
        return False
    return mode == "on" or device.type == "cpu"


def _first_compile() -> None:
    from nerfstudio.utils.rich_utils import CONSOLE  # noqa: PLC0415

    CONSOLE.print(
        "Compiling the fields' kernels (torch.compile; the first steps and frames wait for it, later runs reuse "
        "inductor's cache; --pipeline.model.compile off skips it)."
    )
    # Each block is traced once per variant (face/mouth, training/rendering, dense/hashed grids): more than dynamo's
    # default of 8 per function, after which it would silently run the new variants eagerly.
    # Inductor imports torch's extension builder, which warns on machines without a CUDA runtime: not our concern.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), 64))


def run(fn: Callable[..., Any], compiled: bool, *args: Any) -> Any:
    """``fn(*args)``, as a compiled kernel when ``compiled`` (built on first use), else eagerly. ``fn`` must be a
    plain function of tensors and constants (no side effects: a failed compile re-runs it eagerly)."""
    global _failed  # pylint: disable=global-statement
    if compiled and _failed is None:
        kernel = _compiled.get(fn)
        if kernel is None:
            if not _compiled:
                _first_compile()
            kernel = _compiled[fn] = torch.compile(fn, dynamic=True)
        try:
            return kernel(*args)
        except Exception as err:  # noqa: BLE001 - any compiler failure means "run eagerly"
            text = str(err).strip()
            _failed = f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:300]
            warnings.warn(
                f"torch.compile is not available here ({_failed}); the fields run eagerly (same values, slower). "
                "--pipeline.model.compile off skips the attempt.",
                RuntimeWarning,
                stacklevel=2,
            )
    return fn(*args)


def set_compile_mode(module: torch.nn.Module, mode: CompileMode) -> None:
    """Sets ``compile_mode`` on every submodule that has one (hash grids, encodings, field blocks)."""
    for sub in module.modules():
        if hasattr(sub, "compile_mode"):
            sub.compile_mode = mode
