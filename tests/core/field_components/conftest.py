"""The hash-grid tests here check the eager kernels against references (hand-computed lookups, tcnn's rules,
nerfstudio's encoding); ``tests/core/test_compilation.py`` checks the compiled kernels against the eager ones."""

import pytest

from dtnerf_ns.core.field_components import hash_lookup


@pytest.fixture(autouse=True)
def eager_kernels(monkeypatch):
    monkeypatch.setattr(hash_lookup, "compile_applies", lambda mode, device: False)
