"""The compile gate itself: it compiles for sm_80/sm_90 on a CPU machine and it can fail.

Every gate (here and in test_attention.py, test_layernorm.py, test_cross_entropy.py) judges the
code of the INSTALLED triton; that verdict stands for the GPU machine's triton 3.6 when the
installed one is 3.6 or 3.9 (compile_gate.JUDGES_FOR_3_6). On 3.8 the three spills that version
adds are accepted and nothing else (compile_gate.KNOWN_SPILLS)."""
import dataclasses

import pytest
import triton
import triton.language as tl

from tests import compile_gate
from tests.compile_gate import assert_fits, compile_for, fit_problems, parse_resource_usage

ok, why = compile_gate.available()
pytestmark = pytest.mark.skipif(not ok, reason=why)


@triton.jit
def _scale_kernel(x_ptr, y_ptr, n, scale, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=mask) * scale, mask=mask)


@triton.jit
def _row_sum_kernel(x_ptr, y_ptr, stride, ROWS: tl.constexpr, COLS: tl.constexpr):
    # Holds ROWS x COLS fp32 values live at once: with one warp and a large tile it must spill.
    r = tl.arange(0, ROWS)[:, None]
    c = tl.arange(0, COLS)[None, :]
    x = tl.load(x_ptr + r * stride + c)
    y = tl.cumsum(x, axis=1) * tl.sum(x, axis=1)[:, None]
    tl.store(y_ptr + r * stride + c, y)


def test_parse_resource_usage():
    text = """
Resource usage:
 Common:
  GLOBAL:0
 Function _k:
  REG:40 STACK:8 SHARED:1024 LOCAL:16 CONSTANT[0]:568 TEXTURE:0 SURFACE:0 SAMPLER:0
"""
    assert parse_resource_usage(text) == {"_k": (40, 8, 1024, 16)}


@pytest.mark.parametrize("cc", [80, 90])
def test_small_kernel_fits(cc):
    u = compile_for(_scale_kernel, {"x_ptr": "*fp32", "y_ptr": "*fp32", "n": "i32", "scale": "fp32"},
                    {"BLOCK": 1024}, num_warps=4, cc=cc, divisible_by_16=("x_ptr", "y_ptr"))
    assert u.cc == cc and u.kernel == "_scale_kernel"
    assert 0 < u.registers <= 255
    assert_fits(u, cc)


def test_gate_reports_spills_and_oversized_blocks():
    u = compile_for(_row_sum_kernel, {"x_ptr": "*fp32", "y_ptr": "*fp32", "stride": "i32"},
                    {"ROWS": 64, "COLS": 128}, num_warps=1, cc=90)
    assert u.spill_bytes > 0, str(u)
    with pytest.raises(AssertionError, match="spill"):
        assert_fits(u)
    big = compile_gate.ResourceUsage("k", 80, 16, 2, 255, 0, 0, 0, 200 * 1024)  # 512 threads x 255 regs
    assert any("shared memory" in p for p in fit_problems(big))
    assert any("cannot launch" in p for p in fit_problems(big))


def test_known_spills_count_on_their_version_only():
    """Triton 3.8's 40 B in the widest LayerNorm forward pass there, and only there."""
    u = compile_gate.ResourceUsage("_layer_norm_fwd_kernel", 90, 16, 1, 128, 0, 40, 1088, 0,
                                   "HAS_RESIDUAL=True,HAS_WEIGHT=True,HAS_BIAS=True,BLOCK_N=16384")
    assert fit_problems(u, (3, 8)) == []
    for version in compile_gate.JUDGES_FOR_3_6 + ((3, 7), (3, 10)):
        assert any("spill" in p for p in fit_problems(u, version)), version
    assert fit_problems(dataclasses.replace(u, stack_bytes=48), (3, 8))          # more bytes
    assert fit_problems(dataclasses.replace(u, cc=80), (3, 8))                   # another card
    assert fit_problems(dataclasses.replace(u, constexprs="BLOCK_N=8192"), (3, 8))  # another config


def test_installed_version_is_parsed():
    major, minor = compile_gate.triton_version()
    assert f"{major}.{minor}" == ".".join(triton.__version__.split(".")[:2])
