"""Helpers shared by the kernel test files: the interpreter marker, the Triton-backend fixture,
rel_err, and the floating-point error model every kernel tolerance is derived from.

The error model (Higham, "Accuracy and Stability of Numerical Algorithms", ch. 3; Higham & Mary,
"A new approach to probabilistic rounding error analysis", SISC 2019):

- One IEEE operation rounds to nearest: fl(a op b) = (a op b)(1 + d), |d| <= u, with u the unit
  roundoff of the format (fp32 2^-24, fp16 2^-11, bf16 2^-8), plus an absolute error of at most
  half the smallest subnormal when the result is that small (fp16 2^-25).
- A sum of n products accumulated in fp32, IN ANY ORDER (a BLAS's blocking, SIMD width, FMA or
  not, tree or serial reduction): |fl(sum a_k b_k) - sum a_k b_k| <= gamma(n) * sum |a_k| |b_k|,
  with the worst case gamma(n) = n u. Higham & Mary prove that when the rounding errors are
  mean-independent (true for random data, whatever the order) the error exceeds
  lambda * sqrt(n) * u * sum |a_k||b_k| with probability at most 2n exp(-lambda^2 / 2); lambda = 8
  makes that < 1e-10 per sum even at n = 4096. So gamma(n) = min(n, 8 sqrt(n)) * u.
A bound built from these terms holds on any machine (OpenBLAS's Haswell, SkylakeX or SandyBridge
kernels, MKL, a GPU's tensor cores with fp32 accumulation), unlike a tolerance tuned to the error
one machine's rounding happened to give.
"""
import math

import pytest
import torch

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


# Unit roundoff u (half the spacing of the numbers just above 1) and half the smallest subnormal
# (the largest absolute rounding error of a result that underflows) of each storage format.
UNIT_ROUNDOFF = {torch.float32: 2.0 ** -24, torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}
UNDERFLOW = {torch.float32: 2.0 ** -150, torch.float16: 2.0 ** -25, torch.bfloat16: 2.0 ** -134}
U32 = UNIT_ROUNDOFF[torch.float32]
LAMBDA = 8.0  # Higham & Mary's confidence parameter: P(one sum exceeds the bound) < 2n e^-32


def gamma(n: int, u: float = U32) -> float:
    """Relative error bound of an n-term fp32 sum of products, in any order (see the module doc)."""
    n = max(int(n), 1)
    return min(n, LAMBDA * math.sqrt(n)) * u


def rounding(t: torch.Tensor, dtype) -> torch.Tensor:
    """Bound on the error of storing the float64 value(s) t in `dtype`: u|t| + underflow."""
    return UNIT_ROUNDOFF[dtype] * t.abs() + UNDERFLOW[dtype]
