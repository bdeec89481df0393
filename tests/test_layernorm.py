"""kernels.layer_norm (Triton, forced) against kernels.reference.layer_norm computed in float64.

CPU: Triton's interpreter (TRITON_INTERPRET=1); tests skip without it. GPU: the `cuda` tests.
Errors are measured relative to the largest reference value of each tensor (y and dx are O(1),
dw and db sums over rows), against a tolerance derived from the error model below.
"""
import dataclasses

import pytest
import torch

import kernels
import kernels.layernorm as ln
from kernels import reference
from tests import compile_gate
from tests.kernel_testing import (U32, UNIT_ROUNDOFF, force_triton_backend, gamma,  # noqa: F401 (autouse fixture)
                                  interpreting, rel_err)

# Error model (tests/kernel_testing.py), each error relative to the largest |reference| of its
# tensor. The kernel rounds to the dtype (unit roundoff u_t) where it stores: h = x + residual
# (re-read by the backward), y, dx, dw, db; each row statistic (mean, var, mean(g), mean(g xhat))
# is an N-term fp32 sum, gamma(N); dw and db are M-row fp32 sums, gamma(M); rstd, the products and
# the last adds cost a few u = 2^-24 each (8 u). LayerNorm moves each output, relative to its
# tensor's max, by at most COND times such a relative perturbation of its inputs: |h| rstd <=
# |xhat| + |mean|/std <= ~4.5 for these inputs (x ~ N(0.5, 2^2), tails at 4 sigma), times |w|
# (<= ~2.5) in dh, over the max of |y| ~ 4 |w|: COND = 8 bounds it. No BLAS is involved (the
# kernels use no tl.dot), so no summation order of any library changes the bound.
# Bugs planted to check the bounds stay tight (issue 9), each failing 11-17 tests: dw or db
# accumulated in bf16 (0.16 of the max in test_many_rows_bf16_dw_accumulates_in_fp32, where the
# bound is 0.03), mean(g) dropped from dh, the variance divided by N - 1.
COND = 8.0


def tol(dtype, n: int, m: int) -> float:
    """Relative error bound for rows of width n, m rows (see the model above)."""
    return COND * (UNIT_ROUNDOFF[dtype] + gamma(n) + gamma(m) + 8 * U32)


def make_inputs(shape, dtype, device="cpu", residual=True, weight=True, bias=True, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    n = shape[-1]

    def rnd(*s, scale=1.0, shift=0.0):
        return (torch.randn(*s, generator=g) * scale + shift).to(device=device, dtype=dtype).requires_grad_()

    x = rnd(*shape, scale=2.0, shift=0.5)  # a non-zero mean, so the centring matters
    r = rnd(*shape) if residual else None
    w = rnd(n, scale=0.5, shift=1.0) if weight else None
    b = rnd(n, scale=0.5) if bias else None
    return x, r, w, b


def check_against_reference(x, r, w, b, eps=1e-5, grad_h=True, dy_mean=0.0):
    """Forward and every gradient of kernels.layer_norm vs the float64 reference (upstream
    gradient dy ~ N(dy_mean, 1))."""
    dtype = x.dtype
    n = x.shape[-1]
    limit = tol(dtype, n, x.numel() // n)
    out = kernels.layer_norm(x, w, b, eps=eps, residual=r)
    leaves64 = [t.detach().double().requires_grad_() if t is not None else None for t in (x, r, w, b)]
    ref = reference.layer_norm(leaves64[0], leaves64[2], leaves64[3], eps=eps, residual=leaves64[1])
    y, y64 = (out[0], ref[0]) if r is not None else (out, ref)
    assert y.dtype == dtype and y.shape == x.shape
    assert rel_err(y, y64) < limit, f"y: {rel_err(y, y64)}"
    g = torch.Generator().manual_seed(1)
    dy = (torch.randn(x.shape, generator=g) + dy_mean).to(device=x.device, dtype=dtype)
    loss, loss64 = (y.float() * dy.float()).sum(), (y64 * dy.double()).sum()
    if r is not None:
        h, h64 = out[1], ref[1]
        assert rel_err(h, h64) < limit, f"h: {rel_err(h, h64)}"
        if grad_h:  # the next residual stream also gets a gradient (the dh_out path)
            dh = torch.randn(x.shape, generator=g).to(device=x.device, dtype=dtype)
            loss, loss64 = loss + (h.float() * dh.float()).sum(), loss64 + (h64 * dh.double()).sum()
    loss.backward()
    loss64.backward()
    for name, t, t64 in zip("x residual weight bias".split(), (x, r, w, b), leaves64):
        if t is None:
            continue
        assert t.grad is not None and t.grad.dtype == t.dtype, name
        assert rel_err(t.grad, t64.grad) < limit, f"d{name}: {rel_err(t.grad, t64.grad)}"


def check_dw_db_entries(x, r, w, b, dy_mean):
    """Per column, after check_against_reference (same dy): dw_j = sum_i dy_ij xhat_ij and db_j = sum_i dy_ij
    against float64, each within its own componentwise bound rather than the tensor's max: db's fp32 sum
    gamma(M) sum_i |dy_ij|; dw's also the error of xhat from h stored in the dtype and re-read,
    u_t |h_ij| rstd_i + 8 u (|xhat_ij| + 1), each weighted by |dy_ij|; both then stored in the dtype, u_t |.|."""
    dtype, n = x.dtype, x.shape[-1]
    ut = UNIT_ROUNDOFF[dtype]
    g = torch.Generator().manual_seed(1)
    dy = (torch.randn(x.shape, generator=g) + dy_mean).to(dtype).double().reshape(-1, n)
    h = (x.detach().double() + r.detach().double()).reshape(-1, n)
    mean, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
    rstd = (var + 1e-5).rsqrt()
    xhat = (h - mean) * rstd
    m = h.shape[0]
    for name, got, want, err_terms in (
            ("dw", w.grad, (dy * xhat).sum(0),
             (dy.abs() * (ut * h.abs() * rstd + 8 * U32 * (xhat.abs() + 1) + gamma(m) * xhat.abs())).sum(0)),
            ("db", b.grad, dy.sum(0), gamma(m) * dy.abs().sum(0))):
        bound = err_terms + ut * want.abs()
        err = (got.double() - want).abs()
        worst = int((err / bound).argmax())
        assert (err <= bound).all(), (f"{name}[{worst}]: error {err[worst].item():.3g} > bound "
                                      f"{bound[worst].item():.3g}; {int((err > bound).sum())} of {n} columns")


@interpreting
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 7, 1023, 1500])
def test_values_and_grads(dtype, n):
    x, r, w, b = make_inputs((2, 3, n), dtype, seed=n)
    check_against_reference(x, r, w, b)


@interpreting
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_wide_rows_use_tiled_backward(dtype):
    # 4099 > FUSED_BWD_MAX_WIDTH: dh in column tiles + the column-parallel dw/db kernel.
    assert 4099 > ln.FUSED_BWD_MAX_WIDTH
    x, r, w, b = make_inputs((3, 4099), dtype, seed=3)
    check_against_reference(x, r, w, b)


@interpreting
def test_many_rows_bf16_dw_accumulates_in_fp32():
    # 512 rows alike (a column pattern in x, dy with mean 1): dw and db grow linearly with the
    # rows, and each interpreter program sums 128 of them. In fp32 that costs gamma(512); a bf16
    # accumulator rounds every add to 2^-8 of a running sum ~128x the addend: errors ~1, far
    # past the bf16 bound (~3e-2 of the max).
    x, r, w, b = make_inputs((512, 48), torch.bfloat16, seed=12)
    with torch.no_grad():
        x += torch.linspace(-3.0, 3.0, 48).to(x.dtype)
    check_against_reference(x, r, w, b, dy_mean=1.0)
    check_dw_db_entries(x, r, w, b, dy_mean=1.0)


@interpreting
def test_wide_many_rows_bf16_dw_accumulates_in_fp32(monkeypatch):
    # The wide backward (N > FUSED_BWD_MAX_WIDTH) sums dw/db in its own column-parallel kernel, which
    # the 48-wide test above never reaches. One program over 128 rows: each of its [16, 256] fp32
    # accumulators takes 8 row blocks. A bf16 accumulator rounds each add to 2^-8 of a running sum up
    # to 8x the addend (dy with mean 1 and a column pattern in x make the addends alike): errors of
    # several u_bf16 of each column's sum, which the max-relative bound (~0.03) lets through and the
    # per-column bound (~2 u_bf16 of the column) does not.
    monkeypatch.setattr(ln, "backward_programs", lambda m, n, device: 1)
    n = ln.FUSED_BWD_MAX_WIDTH + 4
    x, r, w, b = make_inputs((128, n), torch.bfloat16, seed=13)
    with torch.no_grad():
        x += torch.linspace(-3.0, 3.0, n).to(x.dtype)
    check_against_reference(x, r, w, b, dy_mean=1.0)
    check_dw_db_entries(x, r, w, b, dy_mean=1.0)


@interpreting
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n", [4100, 8192, 8197, 16384])
def test_wide_widths_up_to_the_largest_fused(dtype, n):
    # 4100 .. MAX_FUSED_WIDTH (16384) through the wide kernels: dh in 2048-column tiles (a ragged last
    # tile at 4100 and 8197), dw/db by 256-column blocks. Two rows keep the interpreter fast.
    assert ln.FUSED_BWD_MAX_WIDTH < n <= ln.MAX_FUSED_WIDTH
    x, r, w, b = make_inputs((2, n), dtype, seed=n)
    check_against_reference(x, r, w, b)


@interpreting
@pytest.mark.parametrize("residual,weight,bias", [(False, True, True), (False, False, False),
                                                  (True, True, False), (True, False, True)])
def test_optional_inputs(residual, weight, bias):
    x, r, w, b = make_inputs((4, 37), torch.float32, residual=residual, weight=weight, bias=bias)
    check_against_reference(x, r, w, b)


@interpreting
def test_one_row_and_unused_h_and_eps():
    x, r, w, b = make_inputs((1, 64), torch.float32, seed=5)
    check_against_reference(x, r, w, b, eps=1e-2, grad_h=False)


@interpreting
def test_non_contiguous_input():
    base, r, w, b = make_inputs((8, 96), torch.float32, seed=6)
    x = base.detach()[:, ::2].requires_grad_()  # a leaf with row stride 96, column stride 2
    assert not x.is_contiguous()
    r2 = r.detach()[:, :48].clone().requires_grad_()
    check_against_reference(x, r2, w[:48].detach().clone().requires_grad_(),
                            b[:48].detach().clone().requires_grad_())


@interpreting
def test_backward_is_deterministic():
    x, r, w, b = make_inputs((37, 300), torch.float32, seed=7)
    grads = []
    for _ in range(2):
        for t in (x, r, w, b):
            t.grad = None
        y, h = kernels.layer_norm(x, w, b, residual=r)
        (y.square().sum() + h.sum()).backward()
        grads.append([t.grad.clone() for t in (x, r, w, b)])
    for a, c in zip(*grads):
        assert torch.equal(a, c)


@interpreting
def test_no_grad_inputs():
    x, r, w, b = (t.detach() for t in make_inputs((5, 33), torch.float16, seed=8))
    with torch.no_grad():
        y, h = kernels.layer_norm(x, w, b, residual=r)
    y64, h64 = reference.layer_norm(x.double(), w.double(), b.double(), residual=r.double())
    limit = tol(torch.float16, 33, 5)
    assert rel_err(y, y64) < limit and rel_err(h, h64) < limit


@interpreting
def test_wider_than_fused_limit_falls_back_to_pytorch():
    x, r, w, b = make_inputs((2, ln.MAX_FUSED_WIDTH + 3), torch.float32, seed=9)
    check_against_reference(x, r, w, b)


def test_torch_backend_matches_reference(monkeypatch):
    monkeypatch.setenv("KERNELS_BACKEND", "torch")
    x, r, w, b = make_inputs((3, 5, 40), torch.float32, seed=10)
    check_against_reference(x, r, w, b)


# ---- compile gate: every kernel at every configuration the launchers use, for sm_80 and sm_90 ----

def gate_specs():
    """The configurations the launcher uses: each BLOCK_N/num_warps pair of launch_config() up to
    the fused limits, all features on (the most registers), in bf16 and fp32."""
    specs = []
    fwd_widths = [2 ** k for k in range(9, 15)]  # 512 .. 16384 (narrower rows use fewer registers)
    for dt in ("bf16", "fp32"):
        p = "*" + dt
        for n in fwd_widths:
            block_n, warps = ln.launch_config(n)
            specs.append(compile_gate.CompileSpec(
                ln._layer_norm_fwd_kernel,
                dict(X=p, R=p, W=p, B=p, Y=p, H=p, Mean="*fp32", Rstd="*fp32", stride_x="i32",
                     stride_r="i32", stride_y="i32", stride_h="i32", N="i32", eps="fp32"),
                dict(HAS_RESIDUAL=True, HAS_WEIGHT=True, HAS_BIAS=True, BLOCK_N=block_n), warps, 1,
                divisible_by_16=("X", "R", "W", "B", "Y", "H", "stride_x", "stride_r", "stride_y",
                                 "stride_h")))
            if n <= ln.FUSED_BWD_MAX_WIDTH:
                specs.append(compile_gate.CompileSpec(
                    ln._layer_norm_bwd_kernel,
                    dict(DY=p, DH_OUT=p, H=p, W=p, Mean="*fp32", Rstd="*fp32", DH=p,
                         DW_PARTIAL="*fp32", DB_PARTIAL="*fp32", stride_dy="i32",
                         stride_dh_out="i32", stride_h="i32", stride_dh="i32", M="i32", N="i32",
                         rows_per_program="i32"),
                    dict(HAS_DH_OUT=True, HAS_WEIGHT=True, HAS_BIAS=True, BLOCK_N=block_n), warps, 1,
                    divisible_by_16=("DY", "DH_OUT", "H", "W", "DH", "stride_dy", "stride_dh_out",
                                     "stride_h", "stride_dh")))
        specs.append(compile_gate.CompileSpec(
            ln._layer_norm_bwd_dh_wide_kernel,
            dict(DY=p, DH_OUT=p, H=p, W=p, Mean="*fp32", Rstd="*fp32", DH=p, stride_dy="i32",
                 stride_dh_out="i32", stride_h="i32", stride_dh="i32", N="i32"),
            dict(HAS_DH_OUT=True, HAS_WEIGHT=True, TILE_N=ln.WIDE_TILE_N), ln.WIDE_NUM_WARPS, 1,
            divisible_by_16=("DY", "DH_OUT", "H", "W", "DH", "stride_dy", "stride_dh_out",
                             "stride_h", "stride_dh")))
        specs.append(compile_gate.CompileSpec(
            ln._layer_norm_bwd_dwdb_kernel,
            dict(DY=p, H=p, Mean="*fp32", Rstd="*fp32", DW_PARTIAL="*fp32", DB_PARTIAL="*fp32",
                 stride_dy="i32", stride_h="i32", M="i32", N="i32", rows_per_program="i32"),
            dict(HAS_WEIGHT=True, HAS_BIAS=True, BLOCK_M=ln.DWDB_BLOCK_M, BLOCK_N=ln.DWDB_BLOCK_N),
            ln.DWDB_NUM_WARPS, 1, divisible_by_16=("DY", "H", "stride_dy", "stride_h")))
    # Each also as launched with N % 16 == 0 (768, 50304, ...): Triton's JIT specialises on
    # that, and only then can the masked loads become 128-bit vector loads (other code, other
    # registers).
    return specs + [dataclasses.replace(s, divisible_by_16=s.divisible_by_16 + ("N",))
                    for s in specs]


@pytest.mark.skipif(not compile_gate.available()[0], reason=compile_gate.available()[1])
def test_compile_gate_sm80_sm90():
    """Judges the installed triton's code; it stands for the GPU machine's 3.6 on 3.6 and 3.9
    (tests/compile_gate.py: JUDGES_FOR_3_6, and KNOWN_SPILLS for 3.8)."""
    usages = compile_gate.check_all(gate_specs())
    assert len(usages) == 2 * len(gate_specs())
    assert all(u.registers > 0 for u in usages)


# ---- GPU: realistic shapes in bf16/fp16/fp32 ----

@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("n", [1, 7, 768, 1023, 1500, 4099, 8192, 16384])
def test_cuda_values_and_grads(dtype, n):
    x, r, w, b = make_inputs((4, 512, n) if n <= 4099 else (2, 256, n), dtype, device="cuda", seed=n)
    check_against_reference(x, r, w, b)


def assert_backward_is_deterministic(x, r, w, b):
    """Two backward passes of the same inputs give bit-identical gradients (no atomics in the reduction)."""
    grads = []
    for _ in range(2):
        for t in (x, r, w, b):
            t.grad = None
        y, h = kernels.layer_norm(x, w, b, residual=r)
        (y.float().square().sum() + h.float().sum()).backward()
        grads.append([t.grad.clone() for t in (x, r, w, b)])
    for a, c in zip(*grads):
        assert torch.equal(a, c)


@pytest.mark.cuda
def test_cuda_backward_is_deterministic():
    x, r, w, b = make_inputs((8192, 768), torch.bfloat16, device="cuda", seed=11)
    assert_backward_is_deterministic(x, r, w, b)
