"""kernels.attention at head dim 16 (a native size: SUPPORTED_HEAD_DIMS, and the padding target of
D = 8) through Triton's interpreter, every element of out, dq, dk, dv within the error-model bounds of
tests/test_attention.py. The cases there use D = 32, 64, 128 (and D = 8, 40 padded)."""
import pytest
import torch

from kernels.attention import SUPPORTED_HEAD_DIMS
from tests.test_attention import check_against_reference, make_inputs, triton_backend  # noqa: F401 (fixture)

CASES = [  # (B, H, Tq, Tk, causal, dtype): a ragged tail, Tq < Tk, a decoding step, non-causal
    (2, 2, 33, 33, True, torch.float32),
    (1, 2, 17, 70, True, torch.float16),
    (1, 1, 1, 40, True, torch.float32),
    (1, 1, 48, 48, False, torch.float16),
]


@pytest.mark.parametrize("B,H,Tq,Tk,causal,dtype", CASES)
def test_head_dim_16_matches_reference(triton_backend, B, H, Tq, Tk, causal, dtype):  # noqa: F811
    assert 16 in SUPPORTED_HEAD_DIMS
    q, k, v, do = make_inputs(B, H, Tq, Tk, 16, dtype, seed=Tq * 100 + Tk)
    check_against_reference(q, k, v, do, causal=causal)
