"""kernels.cross_entropy / kernels.linear_cross_entropy (Triton, forced) against kernels.reference.

CPU: Triton's interpreter (TRITON_INTERPRET=1). The kernels use no tl.dot (the matmuls of the linear
version are torch's), so bf16 is tested on CPU too. GPU: the `cuda` tests at realistic shapes.
Errors are relative to the largest reference value of each tensor; the gradient of cross_entropy is
also checked entry by entry (grad_entry_bounds), so a wrong softmax tail cannot hide below the max.
"""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

import kernels
import importlib
from kernels import reference
from tests import compile_gate
from tests.kernel_testing import (U32, UNDERFLOW, UNIT_ROUNDOFF, force_triton_backend,  # noqa: F401 (autouse fixture)
                                  gamma, interpreting, rel_err)

# `kernels.cross_entropy` is also the name of the public function, so fetch the module itself.
ce = importlib.import_module("kernels.cross_entropy")

# Error model (tests/kernel_testing.py), each error relative to the largest |reference| of its
# tensor. With p_j = exp(x_j - lse), an absolute error e in the exponent moves p_j by p_j e, so the
# loss (lse - x_t, ...) and the gradient (p_j - [j == t], ...) move by at most ~2e, and max|grad|,
# max|loss| are ~1 or more. The exponent's errors: the fp32 arithmetic of x - lse, a few u times
# |x| + |lse| (4u mag below); lse's sum over V entries, gamma(V) (and its online-softmax rescales,
# inside the 4u); for linear_cross_entropy, the logits x W^T + b are a d-term sum, gamma(d) |x||W|
# <= gamma(d) mag, and are rounded to the dtype before the kernel, u_t mag. The outputs are stored
# in the dtype (u_t), the "mean"/"sum" reductions and dW = G^T X add M-row sums (gamma(M)), and
# dX = G W a V-term sum (gamma(V)) of the gradient rounded to the dtype (u_t). COND = 4 covers the
# ~2x of the exponent and the sum-to-max ratios of these products (|G||W| vs |G W|) for these
# inputs. The kernel uses no tl.dot; the linear version's matmuls are torch's, whose order the
# model does not depend on. Bugs planted to check the bounds stay tight (issue 9): the z-loss
# gradient's factor 2 dropped (8 tests fail), the online rescale of the sum dropped (4), the
# smoothing gradient s / (V + 1) instead of s / V (1: test_reductions_smoothing_z_loss, V = 77).
COND = 4.0


def tol(dtype, logits, rows: int, d: int = 0) -> float:
    """Relative error bound for `logits` (float64 values of the (.., V) logits the op sees) over
    `rows` rows, made by a d-term matmul in `dtype` when d > 0 (see the model above)."""
    x = logits.detach().double().reshape(-1, logits.shape[-1])
    ut = UNIT_ROUNDOFF[dtype]
    mag = (x.abs().max() + torch.logsumexp(x, dim=-1).abs().max()).item()
    rounded_logits = (ut + gamma(d)) * mag if d else 0.0
    return COND * (ut + 4 * U32 * mag + rounded_logits + gamma(x.shape[-1]) + gamma(rows))


def make_logits(shape, dtype, device="cpu", scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype).requires_grad_()


def make_targets(shape, v, device="cpu", ignore_every=0, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    t = torch.randint(0, v, shape, generator=g)
    if ignore_every:
        t.view(-1)[::ignore_every] = -100
    return t.to(device)


def upstream(loss, reduction, seed=2):
    """A random upstream gradient (not 1), so the backward's scaling is checked too."""
    g = torch.Generator().manual_seed(seed)
    if reduction == "none":
        return torch.randn(loss.shape, generator=g).to(loss.device)
    return torch.tensor(0.5 + torch.rand((), generator=g).item(), device=loss.device)


def grad_entry_bounds(x64, targets, reduction, up, dtype, label_smoothing=0.0, z_loss=0.0):
    """A bound on the error of EACH entry of d(loss)/d(logits), not relative to the tensor's max: at
    V = 50257 most entries are ~1e-6 of the max, so a max-relative check passes a wrong softmax tail.

    Entry j of a kept row is c (p_j (1 + 2 z lse) - s / V - (1 - s) [j == t]), with c the upstream
    gradient over the kept count (mean), or the upstream gradient (sum, none). In Higham's componentwise
    form its error is at most a few u times the sum of the magnitudes of those terms, T_j =
    p_j (1 + 2 z |lse|) + s / V + (1 - s) [j == t]: p_j = exp(x_j - lse) is off by p_j e_j, with e_j =
    4 u (|x_j| + |lse|) + gamma(V) the error of the exponent (lse's V-term sum; the fp32 subtraction and
    rescales), COND (= 4) times that as in tol(); the products and the subtraction add a few u (4 u here).
    The kernel stores the gradient in the dtype, the upstream gradient reaches the backward in the dtype
    (the loss's), and the backward scales the stored gradient there: 3 u_t |g_j|, plus the dtype's
    underflow of both stores, the first one's scaled by the upstream gradient; an ignored row's gradient
    is exactly 0."""
    v = x64.shape[-1]
    x = x64.detach().reshape(-1, v)
    t = targets.reshape(-1)
    kept = t != -100
    lse = torch.logsumexp(x, dim=-1, keepdim=True)
    p = torch.exp(x - lse)
    terms = p * (1 + 2 * z_loss * lse.abs()) + label_smoothing / v
    rows = torch.nonzero(kept).squeeze(1)
    terms[rows, t[rows]] += 1 - label_smoothing
    up = up.double().reshape(-1)
    if reduction == "mean":
        c = up.abs().expand(x.shape[0]) / kept.sum().clamp_min(1)
    elif reduction == "sum":
        c = up.abs().expand(x.shape[0])
    else:
        c = up.abs()
    e = 4 * U32 * (x.abs() + lse.abs()) + gamma(v)
    bound = (COND * e + 4 * U32) * terms * c[:, None] * kept[:, None]
    up_rows = up.abs().expand(x.shape[0]) if reduction != "none" else up.abs()
    return bound + UNDERFLOW[dtype] * (1 + up_rows[:, None]), kept


def check_grad_entries(grad, x64_grad, x64, targets, reduction, up, label_smoothing=0.0, z_loss=0.0):
    dtype = grad.dtype
    bound, kept = grad_entry_bounds(x64, targets, reduction, up, dtype, label_smoothing, z_loss)
    v = x64.shape[-1]
    got, want = grad.detach().double().reshape(-1, v), x64_grad.reshape(-1, v)
    err = (got - want).abs()
    limit = bound + 3 * UNIT_ROUNDOFF[dtype] * want.abs()
    limit[~kept] = 0.0  # an ignored row's gradient is exactly 0
    bad = err > limit
    if bad.any():
        r, j = (int(i) for i in torch.nonzero(bad)[0])
        raise AssertionError(f"grad[{r}, {j}]: {got[r, j].item():.4g}, want {want[r, j].item():.4g} "
                             f"(error {err[r, j].item():.3g} > bound {limit[r, j].item():.3g}); "
                             f"{int(bad.sum())} of {bad.numel()} entries out of bounds")


def check_ce(logits, targets, reduction="mean", label_smoothing=0.0, z_loss=0.0):
    limit = tol(logits.dtype, logits, logits.numel() // logits.shape[-1])
    loss = kernels.cross_entropy(logits, targets, reduction=reduction,
                                 label_smoothing=label_smoothing, z_loss=z_loss)
    x64 = logits.detach().double().requires_grad_()
    ref = reference.cross_entropy(x64, targets, reduction=reduction,
                                  label_smoothing=label_smoothing, z_loss=z_loss)
    assert loss.dtype == logits.dtype and loss.shape == ref.shape
    assert rel_err(loss, ref) < limit, f"loss: {rel_err(loss, ref)}"
    up = upstream(loss, reduction)
    (loss.float() * up).sum().backward()
    (ref * up.double()).sum().backward()
    assert logits.grad.dtype == logits.dtype and torch.isfinite(logits.grad).all()
    assert rel_err(logits.grad, x64.grad) < limit, f"grad: {rel_err(logits.grad, x64.grad)}"
    check_grad_entries(logits.grad, x64.grad, x64, targets, reduction, up, label_smoothing, z_loss)


@interpreting
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("v,rows", [(5, 16), (1000, 8), (1000, 1), (50257, 2)])
def test_values_and_grads(dtype, v, rows):
    logits = make_logits((rows, v), dtype, seed=v)
    check_ce(logits, make_targets((rows,), v, ignore_every=5 if rows > 1 else 0, seed=v))


@interpreting
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing,z_loss", [(0.0, 0.0), (0.1, 0.0), (0.0, 1e-3), (0.2, 1e-2)])
def test_reductions_smoothing_z_loss(reduction, label_smoothing, z_loss):
    logits = make_logits((3, 4, 77), torch.float32, seed=3)  # leading (3, 4) shape, odd vocab
    targets = make_targets((3, 4), 77, ignore_every=3, seed=3)
    check_ce(logits, targets, reduction, label_smoothing, z_loss)


@interpreting
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_extreme_logits_are_finite_and_right(dtype):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 300, generator=g)
    x[:, ::7] = 1e4
    x[:, 3::11] = -1e4
    logits = x.to(dtype).requires_grad_()
    targets = torch.tensor([0, 3, 1, 7, 14, -100])  # hits on +1e4, -1e4 and ordinary logits
    for reduction in ("mean", "none"):
        logits.grad = None
        check_ce(logits, targets, reduction, label_smoothing=0.1, z_loss=1e-4)


@interpreting
def test_all_rows_ignored_matches_pytorch():
    logits = make_logits((4, 50), torch.float32, seed=5)
    targets = torch.full((4,), -100)
    for reduction in ("mean", "sum", "none"):
        logits.grad = None
        ours = kernels.cross_entropy(logits, targets, reduction=reduction)
        theirs = F.cross_entropy(logits.detach(), targets, reduction=reduction)
        assert torch.equal(ours.isnan(), theirs.isnan())  # mean: 0/0 = NaN, exactly as PyTorch
        assert torch.equal(torch.nan_to_num(ours), torch.nan_to_num(theirs))
        ours.sum().backward()
        assert torch.equal(logits.grad, torch.zeros_like(logits))  # zero gradient, never NaN


@interpreting
def test_input_without_grad():
    logits = make_logits((5, 129), torch.float16, seed=6).detach()
    targets = make_targets((5,), 129, seed=6)
    ref = reference.cross_entropy(logits.double(), targets)
    limit = tol(torch.float16, logits, 5)
    assert rel_err(kernels.cross_entropy(logits, targets), ref) < limit
    with torch.no_grad():
        assert rel_err(kernels.cross_entropy(logits, targets), ref) < limit


@interpreting
def test_logits_used_by_another_op_keep_their_gradient():
    # An in-place gradient written into the logits would corrupt the other op's backward
    # (it reads the logits it saved). Liger's issue 272.
    a = make_logits((6, 40), torch.float32, seed=7)
    targets = make_targets((6,), 40, seed=7)
    logits = a * 1.5
    loss = kernels.cross_entropy(logits, targets) + (logits * logits).sum() * 0.01
    loss.backward()
    a64 = a.detach().double().requires_grad_()
    l64 = a64 * 1.5
    (reference.cross_entropy(l64, targets) + (l64 * l64).sum() * 0.01).backward()
    assert rel_err(a.grad, a64.grad) < tol(torch.float32, l64, 6)
    assert torch.equal(logits.detach(), a.detach() * 1.5)  # logits untouched


@interpreting
def test_confident_bf16_true_class_gradient_is_exact():
    # 1 - p_t = 7e-8. A bf16 read-modify-write of p_t gives exactly 0 (Liger PR 1329), and so does
    # p_t - 1 in fp32 (p_t rounds to 1). The kernel forms 1 - p_t from the sum of the other
    # classes' exponentials, so the gradient and the loss keep their bits.
    logits = torch.zeros(4, 256)
    targets = torch.tensor([1, 2, 3, 4])
    logits[torch.arange(4), targets] = 22.0
    logits = logits.to(torch.bfloat16).requires_grad_()
    loss = kernels.cross_entropy(logits, targets, reduction="none")
    loss.sum().backward()
    x64 = logits.detach().double().requires_grad_()
    ref = reference.cross_entropy(x64, targets, reduction="none")
    ref.sum().backward()
    got, want = logits.grad[torch.arange(4), targets], x64.grad[torch.arange(4), targets]
    assert (want < 0).all() and (want > -1e-6).all()
    assert ((got.double() - want).abs() / want.abs()).max() < 1e-2
    assert ((loss.double() - ref).abs() / ref).max() < 1e-2


@interpreting
def test_non_contiguous_logits():
    base = make_logits((40, 6), torch.float32, seed=8)
    logits = base.detach().t().requires_grad_()  # (6, 40) with column stride 6
    assert not logits.is_contiguous()
    check_ce(logits, make_targets((6,), 40, seed=8))


@interpreting
def test_second_backward_through_same_graph_is_refused():
    logits = make_logits((2, 10), torch.float32, seed=9)
    loss = kernels.cross_entropy(logits, make_targets((2,), 10, seed=9))
    loss.backward(retain_graph=True)
    # The saved gradient was scaled in place; autograd's version counter refuses to reuse it.
    with pytest.raises(RuntimeError, match="inplace"):
        loss.backward()


@interpreting
def test_target_out_of_range_gives_nan_not_a_bad_read():
    logits = make_logits((3, 20), torch.float32, seed=16)
    loss = kernels.cross_entropy(logits, torch.tensor([1, 20, 2]), reduction="none")
    assert torch.isfinite(loss[[0, 2]]).all() and loss[1].isnan()


def test_bad_options_are_value_errors():
    with pytest.raises(ValueError, match="label_smoothing"):
        kernels.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="z_loss"):
        kernels.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), z_loss=-1.0)


def test_bad_reduction_is_a_value_error():
    with pytest.raises(ValueError, match="reduction"):
        kernels.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        kernels.linear_cross_entropy(torch.randn(2, 3), torch.randn(5, 3), torch.tensor([0, 1]),
                                     reduction="avg")


def test_torch_backend_matches_reference(monkeypatch):
    monkeypatch.setenv("KERNELS_BACKEND", "torch")
    check_ce(make_logits((7, 33), torch.float32, seed=10),
             make_targets((7,), 33, ignore_every=3, seed=10),
             "mean", 0.1, 1e-3)


# ---- linear cross-entropy ----

def linear_tol(x, w, b, dtype):
    """tol() for linear_cross_entropy: the logits x W^T + b it computes in `dtype`."""
    logits = x.detach().double() @ w.detach().double().t()
    if b is not None:
        logits = logits + b.detach().double()
    return tol(dtype, logits, logits.numel() // logits.shape[-1], d=x.shape[-1])


def check_linear_ce(x, w, targets, b=None, reduction="mean", rows_per_chunk=None):
    limit = linear_tol(x, w, b, x.dtype)
    if rows_per_chunk is None:
        loss = kernels.linear_cross_entropy(x, w, targets, b, reduction=reduction)
    else:
        loss = ce._triton_linear_cross_entropy(x, w, targets, b, reduction=reduction,
                                               rows_per_chunk=rows_per_chunk)
    leaves = [t.detach().double().requires_grad_() if t is not None else None for t in (x, w, b)]
    ref = reference.linear_cross_entropy(leaves[0], leaves[1], targets, leaves[2], reduction=reduction)
    assert loss.dtype == x.dtype and loss.shape == ref.shape
    assert rel_err(loss, ref) < limit, f"loss: {rel_err(loss, ref)}"
    up = upstream(loss, reduction)
    (loss.float() * up).sum().backward()
    (ref * up.double()).sum().backward()
    for name, t, t64 in zip(("x", "weight", "bias"), (x, w, b), leaves):
        if t is not None:
            assert t.grad is not None and t.grad.dtype == t.dtype, name
            assert rel_err(t.grad, t64.grad) < limit, f"d{name}: {rel_err(t.grad, t64.grad)}"


def make_linear(m_shape, d, v, dtype, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*m_shape, d, generator=g).to(dtype).requires_grad_()
    w = (torch.randn(v, d, generator=g) / d ** 0.5).to(dtype).requires_grad_()
    b = (torch.randn(v, generator=g) * 0.1).to(dtype).requires_grad_() if bias else None
    return x, w, b


@interpreting
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_linear_values_and_grads(dtype, reduction):
    x, w, b = make_linear((3, 7), 24, 1000, dtype, seed=11)
    targets = make_targets((3, 7), 1000, ignore_every=4, seed=11)
    # 21 rows in chunks of 8: three chunks, the last one short; dW sums over all of them.
    check_linear_ce(x, w, targets, b, reduction, rows_per_chunk=8)


@interpreting
def test_linear_gpt2_vocab_no_bias_default_chunks():
    x, w, _ = make_linear((3,), 8, 50257, torch.float32, bias=False, seed=12)
    check_linear_ce(x, w, make_targets((3,), 50257, seed=12), None, "mean")


@interpreting
def test_linear_all_ignored_and_no_grad():
    x, w, b = make_linear((5,), 16, 40, torch.float32, seed=13)
    targets = torch.full((5,), -100)
    loss = ce._triton_linear_cross_entropy(x, w, targets, b, rows_per_chunk=2)
    assert loss.isnan()  # 0/0, as F.cross_entropy
    loss_sum = ce._triton_linear_cross_entropy(x, w, targets, b, reduction="sum", rows_per_chunk=2)
    loss_sum.backward()
    assert loss_sum.item() == 0.0
    assert all(torch.equal(t.grad, torch.zeros_like(t)) for t in (x, w, b))
    with torch.no_grad():
        t2 = make_targets((5,), 40, seed=13)
        ref = reference.linear_cross_entropy(x.double(), w.double(), t2, b.double())
        assert rel_err(kernels.linear_cross_entropy(x, w, t2, b), ref) < linear_tol(x, w, b, torch.float32)


@interpreting
def test_linear_under_bf16_autocast_keeps_fp32_weight_grads():
    x, w, b = make_linear((2, 5), 32, 300, torch.float32, seed=14)
    targets = make_targets((2, 5), 300, seed=14)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = kernels.linear_cross_entropy(x, w, targets, b)
    loss.backward()
    assert w.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, w, b))
    reference.linear_cross_entropy(x64, w64, targets, b64).backward()
    for t, t64 in ((x, x64), (w, w64), (b, b64)):
        assert rel_err(t.grad, t64.grad) < linear_tol(x, w, b, torch.bfloat16)


@interpreting
def test_linear_retain_graph_double_backward():
    x, w, b = make_linear((6,), 16, 50, torch.float32, seed=15)
    targets = make_targets((6,), 50, seed=15)
    loss = kernels.linear_cross_entropy(x, w, targets, b)
    loss.backward(retain_graph=True)
    first = w.grad.clone()
    loss.backward()
    assert torch.allclose(w.grad, 2 * first)


def test_chunk_rows_bounds_the_logits():
    # GPT-2 head: 16384 tokens x 768 -> 50304. A chunk of logits is a small fraction of the full
    # (16384 x 50304) logits and at least the size of x.
    c = ce.chunk_rows(16384, 768, 50304)
    assert 16384 * 768 <= c * 50304 <= 16384 * 50304 // 4
    assert ce.chunk_rows(3, 8, 50257) == 3 and ce.chunk_rows(1, 1, 1) == 1


# ---- compile gate ----

def gate_specs():
    specs = []
    for dt in ("bf16", "fp32", "fp16"):
        p = "*" + dt
        for v in (1000, 50257):
            block_v, warps = ce.launch_config(v)
            for per_row in (False, True):
                specs.append(compile_gate.CompileSpec(
                    ce._cross_entropy_kernel,
                    dict(LOGITS=p, GRAD=p, TARGETS="*i64", LOSS="*fp32", GRAD_SCALE="*fp32",
                         stride_logits="i64", stride_grad="i64", V="i32", ignore_index="i32",
                         label_smoothing="fp32", z_loss="fp32"),
                    dict(HAS_GRAD=True, SCALE_PER_ROW=per_row, HAS_SMOOTHING=True, HAS_Z_LOSS=True,
                         BLOCK_V=block_v), warps, 1,
                    divisible_by_16=("LOGITS", "GRAD", "TARGETS", "LOSS", "stride_logits",
                                     "stride_grad")))
    # Each also as launched with V % 16 == 0 (768, 50304, ...): Triton's JIT specialises on
    # that, and only then can the masked loads become 128-bit vector loads (other code, other
    # registers).
    return specs + [dataclasses.replace(s, divisible_by_16=s.divisible_by_16 + ("V",))
                    for s in specs]


@pytest.mark.skipif(not compile_gate.available()[0], reason=compile_gate.available()[1])
def test_compile_gate_sm80_sm90():
    """Judges the installed triton's code; it stands for the GPU machine's 3.6 on 3.6 and 3.9
    (tests/compile_gate.py: JUDGES_FOR_3_6, and KNOWN_SPILLS for 3.8)."""
    usages = compile_gate.check_all(gate_specs())
    assert len(usages) == 2 * len(gate_specs())


# ---- GPU ----

@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("v", [5, 50257])
def test_cuda_values_and_grads(dtype, reduction, v):
    logits = make_logits((2048, v), dtype, device="cuda", seed=20)
    targets = make_targets((2048,), v, device="cuda", ignore_every=7, seed=20)
    check_ce(logits, targets, reduction, label_smoothing=0.1, z_loss=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_cuda_linear_values_and_grads(dtype):
    x, w, b = (t.detach().cuda().requires_grad_() for t in make_linear((4, 1024), 768, 50304,
                                                                       dtype, seed=21))
    targets = make_targets((4, 1024), 50304, device="cuda", ignore_every=9, seed=21)
    check_linear_ce(x, w, targets, b, "mean")


@pytest.mark.cuda
def test_cuda_linear_peak_memory_is_a_fraction_of_pytorch():
    x, w, _ = (t.detach().cuda().requires_grad_() if t is not None else None
               for t in make_linear((16384,), 768, 50304, torch.bfloat16, bias=False, seed=22))
    targets = make_targets((16384,), 50304, device="cuda", seed=22)

    def peak(fn):
        x.grad = w.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(x, w, targets).backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    ours = peak(lambda a, c, t: kernels.linear_cross_entropy(a, c, t))
    theirs = peak(lambda a, c, t: F.cross_entropy(F.linear(a, c), t))
    assert ours <= 0.25 * theirs, f"ours {ours / 2**20:.0f} MiB vs PyTorch {theirs / 2**20:.0f} MiB"
