"""The switchable LayerNorm kernels (KERNELS_LAYERNORM_FWD / KERNELS_LAYERNORM_BWD = blocked) against
kernels.reference.layer_norm in float64, with the error model and checks of tests/test_layernorm.py.

CPU: Triton's interpreter (TRITON_INTERPRET=1); tests skip without it. GPU: the `cuda` tests.
Compile gate: every blocked launch configuration for sm_80 and sm_90, no spills.
"""
import dataclasses

import pytest
import torch

import kernels
import kernels.layernorm as ln
from tests import compile_gate
from tests.kernel_testing import force_triton_backend, interpreting  # noqa: F401 (autouse fixture)
from tests.test_layernorm import assert_backward_is_deterministic, check_against_reference, make_inputs


@pytest.fixture
def blocked(monkeypatch):
    """Both blocked variants on for the test."""
    monkeypatch.setenv("KERNELS_LAYERNORM_FWD", "blocked")
    monkeypatch.setenv("KERNELS_LAYERNORM_BWD", "blocked")


def test_variant_switch(monkeypatch):
    monkeypatch.delenv("KERNELS_LAYERNORM_FWD", raising=False)
    monkeypatch.delenv("KERNELS_LAYERNORM_BWD", raising=False)
    assert ln.variant("FWD") == "rows" and ln.variant("BWD") == "rows"  # the default
    monkeypatch.setenv("KERNELS_LAYERNORM_BWD", " Blocked ")
    assert ln.variant("BWD") == "blocked"
    monkeypatch.setenv("KERNELS_LAYERNORM_FWD", "tiles")
    with pytest.raises(ValueError, match="KERNELS_LAYERNORM_FWD='tiles'.*rows, blocked"):
        ln.variant("FWD")


def test_blocked_config_and_grid():
    for kind, per_thread in (("FWD", 16), ("BWD", 8)):
        for n in (1, 7, 768, 1500, 4099, 8192, 16384):
            block_n, rows, warps = ln.blocked_config(n, kind)
            assert block_n >= n and 1 <= rows <= ln.BLOCKED_MAX_ROWS and 1 <= warps <= 16
            assert rows * block_n <= 32 * warps * per_thread or warps == 16
    # Without CUDA: a small fixed grid, never more programs than row blocks.
    cpu = torch.device("cpu")
    assert ln.blocked_backward_programs(16384, 768, cpu) == ln.BLOCKED_BWD_PROGRAMS_NO_CUDA
    assert ln.blocked_backward_programs(1, 768, cpu) == 1
    assert ln.blocked_backward_programs(0, 768, cpu) == 1


# Rows 1, 7, 1000 x widths 1, 7, 768, 1500, 4099 (a width past FUSED_BWD_MAX_WIDTH, which the
# blocked backward takes in one pass), residual on and off. 1000 rows: the interpreter's 4-program
# grid loops over many row blocks, and the last block is partial for every ROWS_PER_BLOCK > 1.
SHAPES = [(m, n) for m in (1, 7, 1000) for n in (1, 7, 768, 1500, 4099)]


@interpreting
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("m,n", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_blocked_values_and_grads(blocked, dtype, m, n, residual):
    x, r, w, b = make_inputs((m, n), dtype, residual=residual, seed=m * 7 + n)
    check_against_reference(x, r, w, b)


@interpreting
@pytest.mark.parametrize("fwd,bwd", [("blocked", "rows"), ("rows", "blocked")])
def test_each_variant_alone(monkeypatch, fwd, bwd):
    monkeypatch.setenv("KERNELS_LAYERNORM_FWD", fwd)
    monkeypatch.setenv("KERNELS_LAYERNORM_BWD", bwd)
    x, r, w, b = make_inputs((3, 5, 300), torch.float16, seed=2)
    check_against_reference(x, r, w, b)


@interpreting
def test_blocked_many_rows_bf16_dw_accumulates_in_fp32(blocked):
    # As in test_layernorm: dw/db grow with the rows; a bf16 accumulator would fail by far.
    x, r, w, b = make_inputs((512, 48), torch.bfloat16, seed=12)
    with torch.no_grad():
        x += torch.linspace(-3.0, 3.0, 48).to(x.dtype)
    check_against_reference(x, r, w, b, dy_mean=1.0)


@interpreting
@pytest.mark.parametrize("residual,weight,bias", [(False, True, True), (False, False, False),
                                                  (True, True, False), (True, False, True)])
def test_blocked_optional_inputs(blocked, residual, weight, bias):
    x, r, w, b = make_inputs((40, 37), torch.float32, residual=residual, weight=weight, bias=bias)
    check_against_reference(x, r, w, b)


@interpreting
def test_blocked_unused_h_eps_and_non_contiguous(blocked):
    x, r, w, b = make_inputs((1, 64), torch.float32, seed=5)
    check_against_reference(x, r, w, b, eps=1e-2, grad_h=False)
    base, r, w, b = make_inputs((20, 96), torch.float32, seed=6)
    x = base.detach()[:, ::2].requires_grad_()
    r2 = r.detach()[:, :48].clone().requires_grad_()
    check_against_reference(x, r2, w[:48].detach().clone().requires_grad_(),
                            b[:48].detach().clone().requires_grad_())


@interpreting
def test_blocked_wider_than_blocked_limit_uses_rows_path(blocked):
    # Past BLOCKED_BWD_MAX_WIDTH the blocked switch falls back to the two-kernel wide backward.
    n = ln.BLOCKED_BWD_MAX_WIDTH + 5
    assert n <= ln.MAX_FUSED_WIDTH
    x, r, w, b = make_inputs((3, n), torch.float32, seed=9)
    check_against_reference(x, r, w, b)


@interpreting
def test_blocked_matches_rows_and_is_deterministic(monkeypatch):
    x, r, w, b = make_inputs((37, 300), torch.float32, seed=7)
    results = {}
    for v in ("rows", "blocked", "blocked"):
        monkeypatch.setenv("KERNELS_LAYERNORM_FWD", v)
        monkeypatch.setenv("KERNELS_LAYERNORM_BWD", v)
        for t in (x, r, w, b):
            t.grad = None
        y, h = kernels.layer_norm(x, w, b, residual=r)
        (y.square().sum() + h.sum()).backward()
        out = [y.detach().clone(), h.detach().clone()] + [t.grad.clone() for t in (x, r, w, b)]
        if v in results:
            for a, c in zip(results[v], out):
                assert torch.equal(a, c)  # bitwise deterministic
        results[v] = out
    for a, c in zip(results["rows"], results["blocked"]):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


# ---- compile gate: every blocked configuration the launchers use, for sm_80 and sm_90 ----

# Powers of two from 32 (narrower rows: ROWS_PER_BLOCK x BLOCK_N shrinks, fewer registers) up to
# each kernel's widest row: the forward's last with ROWS_PER_BLOCK > 1 (wider rows take the row
# kernel, gated in test_layernorm.py), the backward's BLOCKED_BWD_MAX_WIDTH.
GATE_WIDTHS = [2 ** k for k in range(5, 15)]


def _fwd_spec(n, dt):
    p = "*" + dt
    block_n, rows, warps = ln.blocked_config(n)
    return compile_gate.CompileSpec(
        ln._layer_norm_fwd_blocked_kernel,
        dict(X=p, R=p, W=p, B=p, Y=p, H=p, Mean="*fp32", Rstd="*fp32", stride_x="i32",
             stride_r="i32", stride_y="i32", stride_h="i32", M="i32", N="i32", eps="fp32"),
        dict(HAS_RESIDUAL=True, HAS_WEIGHT=True, HAS_BIAS=True, ROWS_PER_BLOCK=rows,
             BLOCK_N=block_n), warps, 1,
        divisible_by_16=("X", "R", "W", "B", "Y", "H", "stride_x", "stride_r", "stride_y", "stride_h"))


def _bwd_spec(n, dt):
    p = "*" + dt
    block_n, rows, warps = ln.blocked_config(n, "BWD")
    return compile_gate.CompileSpec(
        ln._layer_norm_bwd_blocked_kernel,
        dict(DY=p, DH_OUT=p, H=p, W=p, Mean="*fp32", Rstd="*fp32", DH=p, DW_PARTIAL="*fp32",
             DB_PARTIAL="*fp32", stride_dy="i32", stride_dh_out="i32", stride_h="i32",
             stride_dh="i32", M="i32", N="i32"),
        dict(HAS_DH_OUT=True, HAS_WEIGHT=True, HAS_BIAS=True, ROWS_PER_BLOCK=rows, BLOCK_N=block_n),
        warps, 1,
        divisible_by_16=("DY", "DH_OUT", "H", "W", "DH", "stride_dy", "stride_dh_out", "stride_h",
                         "stride_dh"))


def _with_n_divisible(specs):
    # Each also as launched with N % 16 == 0 (768, 4096, ...): vector loads, other registers.
    return specs + [dataclasses.replace(s, divisible_by_16=s.divisible_by_16 + ("N",)) for s in specs]


def gate_specs():
    """Every blocked configuration, all features on (the most registers), bf16 and fp32."""
    specs = []
    for dt in ("bf16", "fp32"):
        specs += [_fwd_spec(n, dt) for n in GATE_WIDTHS if ln.blocked_config(n)[1] > 1]
        specs += [_bwd_spec(n, dt) for n in GATE_WIDTHS if n <= ln.BLOCKED_BWD_MAX_WIDTH]
    return _with_n_divisible(specs)


def quick_gate_specs():
    """The benchmark widths' blocked configurations (768 -> BLOCK_N 1024, 4096, 8192) in bf16, as
    launched there (N % 16 == 0); the slow gate below covers the rest."""
    specs = [_fwd_spec(768, "bf16")] + [_bwd_spec(n, "bf16") for n in (768, 4096, 8192)]
    return [dataclasses.replace(s, divisible_by_16=s.divisible_by_16 + ("N",)) for s in specs]


@pytest.mark.skipif(not compile_gate.available()[0], reason=compile_gate.available()[1])
def test_compile_gate_blocked_quick():
    usages = compile_gate.check_all(quick_gate_specs())
    assert len(usages) == 2 * len(quick_gate_specs()) and all(u.registers > 0 for u in usages)


@pytest.mark.slow
@pytest.mark.skipif(not compile_gate.available()[0], reason=compile_gate.available()[1])
def test_compile_gate_blocked_sm80_sm90():
    """All blocked configurations (judged as in tests/compile_gate.py: JUDGES_FOR_3_6)."""
    usages = compile_gate.check_all(gate_specs())
    assert len(usages) == 2 * len(gate_specs()) and all(u.registers > 0 for u in usages)


# ---- GPU: realistic shapes in bf16/fp16/fp32, blocked forced ----

@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("n", [1, 7, 768, 1500, 4099, 8192, 16384])
def test_cuda_blocked_values_and_grads(blocked, dtype, n):
    x, r, w, b = make_inputs((4, 512, n) if n <= 4099 else (2, 256, n), dtype, device="cuda", seed=n)
    check_against_reference(x, r, w, b)


@pytest.mark.cuda
def test_cuda_blocked_backward_is_deterministic(blocked):
    x, r, w, b = make_inputs((8192, 768), torch.bfloat16, device="cuda", seed=11)
    assert_backward_is_deterministic(x, r, w, b)
