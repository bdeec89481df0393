"""Helpers shared by the kernel test files (test_layernorm.py, test_cross_entropy.py)."""
import pytest

from kernels.backend import triton_interpreting

# Triton kernels run on CPU tensors only in Triton's interpreter.
interpreting = pytest.mark.skipif(not triton_interpreting(), reason="Triton on CPU tensors needs TRITON_INTERPRET=1")


@pytest.fixture(autouse=True)
def force_triton_backend(monkeypatch):
    """Every test in a module that imports this fixture runs the public ops on the Triton path."""
    monkeypatch.setenv("KERNELS_BACKEND", "triton")


def rel_err(got, want) -> float:
    """max |got - want| / max |want|, in float64."""
    got, want = got.double(), want.double()
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()
