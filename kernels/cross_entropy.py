"""Fused cross-entropy, and the language-model head + cross-entropy that never builds the logits.

Per row i with logits x (V entries), target t, label smoothing s and z-loss weight z:
    lse  = log(sum_j exp(x_j))
    loss = (1 - s) * (lse - x_t) + s * (lse - mean_j x_j) + z * lse^2
    dloss/dx_j = p_j * (1 + 2 z lse) - s / V - (1 - s) * [j == t],    p_j = exp(x_j - lse)
Rows whose target is `ignore_index` have loss 0 and gradient 0; "mean" divides by the kept rows.

The Triton kernel runs one program per row. Pass 1 streams the row in BLOCK_V blocks with an
online softmax: a running max m and a running sum S of exp(x - m), rescaled by exp(m_old - m_new)
whenever the max grows, so max and sum come from a single read. Pass 2 (only when a gradient is
wanted) reads the row again and writes the gradient: the gradient is made in the forward pass,
which saves the backward from reading the logits a third time. All math is fp32, and the
true-class term is formed before the single store: a bf16 read-modify-write of p_t loses every
bit of 1 - p_t once the model is confident (Liger PR 1329), and even p_t - 1 in fp32 is 0 once
1 - p_t < 6e-8, so pass 1 also sums the other classes' exponentials and 1 - p_t = S_other / S
keeps full precision (the loss too: -log p_t = -log(1 - q) by its series when q is small).
Row offsets are int64: 16384 rows x 50257 logits is past 2^31.

`cross_entropy` writes the gradient into a new buffer, never into `logits`: the logits may be
needed by another op's backward (writing into them in place silently corrupts that gradient).
`linear_cross_entropy` owns its chunk of logits, so there the gradient overwrites the chunk.
"""
import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels.backend import use_triton

REDUCTIONS = ("mean", "sum", "none")
MAX_BLOCK_V = 4096


@triton.jit
def _cross_entropy_kernel(
    LOGITS, GRAD, TARGETS, LOSS, GRAD_SCALE,
    stride_logits, stride_grad,
    V, ignore_index, label_smoothing, z_loss,
    HAS_GRAD: tl.constexpr, SCALE_PER_ROW: tl.constexpr,
    HAS_SMOOTHING: tl.constexpr, HAS_Z_LOSS: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    logits_row = LOGITS + row * stride_logits
    grad_row = GRAD + row * stride_grad
    target = tl.load(TARGETS + row).to(tl.int64)
    if target == ignore_index:
        tl.store(LOSS + row, 0.0)
        if HAS_GRAD:
            for start in range(0, V, BLOCK_V):
                cols = start + tl.arange(0, BLOCK_V)
                tl.store(grad_row + cols, tl.zeros([BLOCK_V], dtype=GRAD.dtype.element_ty), mask=cols < V)
        return

    # Pass 1: online softmax statistics relative to the running max m:
    #   S = sum_j exp(x_j - m),  S_other = sum_{j != t} exp(x_j - m)   (rescaled when m grows)
    # S_other gives q = 1 - p_t = S_other / S to full fp32 precision even when p_t rounds to 1.
    m = -float("inf")
    sum_exp = 0.0
    sum_other = 0.0
    sum_x = 0.0
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < V
        x = tl.load(logits_row + cols, mask=mask, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        rescale = tl.exp(m - m_new)
        e = tl.exp(x - m_new)
        sum_exp = sum_exp * rescale + tl.sum(e, axis=0)
        sum_other = sum_other * rescale + tl.sum(tl.where(cols == target, 0.0, e), axis=0)
        m = m_new
        if HAS_SMOOTHING:
            sum_x += tl.sum(tl.where(mask, x, 0.0), axis=0)
    log_s = tl.log(sum_exp)
    lse = m + log_s
    # A target outside [0, V) (a data bug) must not read out of bounds: it makes the loss NaN,
    # loudly, without the host sync a check on the targets would cost.
    valid = (target >= 0) & (target < V)
    x_target = tl.load(logits_row + target, mask=valid, other=float("nan")).to(tl.float32)
    q = sum_other / sum_exp                          # 1 - p_t
    p_target = tl.exp(x_target - m) / sum_exp
    # -log p_t: (m - x_t) + log S is exact for large |logits| (no lse rounding); when the model is
    # confident (q small) log S rounds to ~0, so use -log(1 - q) = q + q^2/2 + q^3/3 + ...
    nll = tl.where(q < 1e-3, q + q * q * (0.5 + q / 3.0), (m - x_target) + log_s)
    loss = nll
    if HAS_SMOOTHING:
        # s * (lse - mean_j x_j), the cross-entropy against the uniform distribution
        loss = (1.0 - label_smoothing) * nll + label_smoothing * ((m - sum_x / V) + log_s)
    if HAS_Z_LOSS:
        loss += z_loss * lse * lse
    tl.store(LOSS + row, loss)

    # Pass 2: the gradient, already multiplied by the reduction's scale (1/kept rows for "mean",
    # or the per-row upstream gradient when it is known). p_j = exp(x_j - m) / S (not
    # exp(x_j - lse): lse carries an absolute rounding error of ulp(lse), large for big logits).
    # True class: p_t - 1 = -q, from S_other, so it keeps its bits when p_t is near 1.
    if HAS_GRAD:
        if SCALE_PER_ROW:
            scale = tl.load(GRAD_SCALE + row).to(tl.float32)
        else:
            scale = tl.load(GRAD_SCALE).to(tl.float32)
        inv_s = 1.0 / sum_exp
        p_factor = 1.0
        if HAS_Z_LOSS:
            p_factor = 1.0 + 2.0 * z_loss * lse
        # dloss/dx_t = p_t (1 + 2 z lse) - s / V - (1 - s) = -(1 - s) q + s p_t - s / V + 2 z lse p_t
        g_target = -q
        if HAS_SMOOTHING:
            g_target = -(1.0 - label_smoothing) * q + label_smoothing * (p_target - 1.0 / V)
        if HAS_Z_LOSS:
            g_target += 2.0 * z_loss * lse * p_target
        for start in range(0, V, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            mask = cols < V
            x = tl.load(logits_row + cols, mask=mask, other=0.0).to(tl.float32)
            g = tl.exp(x - m) * inv_s * p_factor
            if HAS_SMOOTHING:
                g = g - label_smoothing / V
            g = tl.where(cols == target, g_target, g)
            tl.store(grad_row + cols, (g * scale).to(GRAD.dtype.element_ty), mask=mask)


def launch_config(v: int) -> tuple[int, int]:
    """(BLOCK_V, num_warps): blocks of up to 4096 logits, 8-16 per thread."""
    block_v = min(triton.next_power_of_2(v), MAX_BLOCK_V)
    return block_v, max(1, min(8, block_v // 256))


def _launch(logits2d, grad, targets, loss_rows, grad_scale, ignore_index, label_smoothing=0.0,
            z_loss=0.0, scale_per_row=False):
    """Run the kernel over the rows of `logits2d` (unit column stride). `grad` may be None (loss
    only) or `logits2d` itself (in-place, only for buffers this module owns)."""
    m, v = logits2d.shape
    if m == 0:
        return
    block_v, num_warps = launch_config(v)
    has_grad = grad is not None
    g = grad if has_grad else logits2d  # placeholder pointers, never touched without a gradient
    grad_scale = grad_scale if grad_scale is not None else loss_rows
    _cross_entropy_kernel[(m,)](
        logits2d, g, targets, loss_rows, grad_scale,
        logits2d.stride(0), g.stride(0),
        v, ignore_index, float(label_smoothing), float(z_loss),
        HAS_GRAD=has_grad, SCALE_PER_ROW=scale_per_row,
        HAS_SMOOTHING=label_smoothing > 0.0, HAS_Z_LOSS=z_loss > 0.0,
        BLOCK_V=block_v, num_warps=num_warps,
    )


def _rows(t: torch.Tensor, n: int) -> torch.Tensor:
    t2 = t.reshape(-1, n)
    return t2 if t2.stride(-1) == 1 else t2.contiguous()


def _reduce(loss_rows, kept, reduction, shape, dtype):
    if reduction == "none":
        return loss_rows.view(shape).to(dtype)
    if reduction == "sum":
        return loss_rows.sum().to(dtype)
    return (loss_rows.sum() / kept).to(dtype)  # all rows ignored: 0/0 = NaN, as F.cross_entropy


def _grad_scale(kept, reduction):
    """The factor the forward bakes into the gradient: 1/kept rows for "mean", else 1 (on device,
    so no host sync; all rows ignored: every gradient row is 0 anyway)."""
    if reduction == "mean":
        return (1.0 / kept.clamp_min(1)).reshape(1)
    return torch.ones(1, dtype=torch.float32, device=kept.device)


def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def _check_options(reduction, label_smoothing, z_loss):
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], not {label_smoothing}")
    if z_loss < 0.0:
        raise ValueError(f"z_loss must be >= 0, not {z_loss}")


# Registered as torch custom ops (see kernels/layernorm.py): one opaque node per op for
# torch.compile, a fake implementation for the shapes, autograd through register_autograd.
# The forward makes the gradient (scaled for an upstream gradient of 1) when asked; the backward
# only multiplies it by the upstream gradient, so it needs no kernel of its own.

@torch.library.custom_op("text2sql::cross_entropy_forward", mutates_args=())
def cross_entropy_forward(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int,
                          reduction: str, label_smoothing: float, z_loss: float,
                          compute_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, grad): the reduced loss in the logits' dtype and d(loss)/d(logits) (an empty
    placeholder unless compute_grad)."""
    v = logits.shape[-1]
    x2 = _rows(logits, v)
    t = targets.reshape(-1).contiguous()
    kept = (t != ignore_index).sum(dtype=torch.float32)
    loss_rows = torch.empty(x2.shape[0], dtype=torch.float32, device=x2.device)
    # A fresh buffer for the gradient: never written into `logits` (see the module docstring).
    grad = (torch.empty(logits.shape, dtype=logits.dtype, device=logits.device) if compute_grad
            else logits.new_empty(0))
    _launch(x2, grad.view(x2.shape) if compute_grad else None, t, loss_rows,
            _grad_scale(kept, reduction), ignore_index, label_smoothing, z_loss)
    return _reduce(loss_rows, kept, reduction, targets.shape, logits.dtype), grad


@cross_entropy_forward.register_fake
def _(logits, targets, ignore_index, reduction, label_smoothing, z_loss, compute_grad):
    loss = logits.new_empty(targets.shape if reduction == "none" else ())
    return loss, logits.new_empty(logits.shape if compute_grad else (0,))


def _cross_entropy_setup_context(ctx, inputs, output):
    _, _, _, reduction, _, _, compute_grad = inputs
    _, grad = output
    if not compute_grad:
        raise RuntimeError("cross_entropy_forward was called with compute_grad=False on inputs "
                           "that need a gradient; call kernels.cross_entropy instead")
    ctx.mark_non_differentiable(grad)
    ctx.save_for_backward(grad)
    ctx.reduction = reduction


def _cross_entropy_backward(ctx, grad_output, _dgrad):
    (grad,) = ctx.saved_tensors
    # "none": one factor per row (targets may be shaped unlike logits' leading dims).
    scale = grad_output.reshape(*grad.shape[:-1], 1) if ctx.reduction == "none" else grad_output
    if type(grad) is not torch.Tensor or torch.compiler.is_compiling():
        # Traced (AOTAutograd hands the backward functional/fake tensor subclasses; opcheck's
        # AOT check does so without Dynamo, where is_compiling() is False): out of place, since a
        # traced graph may not write into its saved inputs; the compiler plans the buffers itself.
        return grad * scale.to(grad.dtype), None, None, None, None, None, None
    # Eager: the buffer is ours and used only here, so scale it in place (no second logits-sized
    # allocation). A second backward through the same graph (retain_graph) is refused by
    # autograd's version check on the saved buffer rather than silently scaling it twice.
    return grad.mul_(scale.to(grad.dtype)), None, None, None, None, None, None


cross_entropy_forward.register_autograd(_cross_entropy_backward,
                                        setup_context=_cross_entropy_setup_context)


def cross_entropy(logits, targets, ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0):
    """Softmax cross-entropy over the last dim of `logits` (any leading shape, matching `targets`).

    Same meaning as F.cross_entropy(logits.view(-1, V), targets.view(-1), ...) plus an optional
    z-loss term z * logsumexp^2 per kept row; the loss has the logits' dtype."""
    _check_options(reduction, label_smoothing, z_loss)
    if use_triton(logits):
        rows = math.prod(logits.shape[:-1])
        if targets.numel() != rows:
            raise ValueError(f"targets hold {targets.numel()} entries for {rows} rows of logits")
        compute_grad = torch.is_grad_enabled() and logits.requires_grad
        return cross_entropy_forward(logits, targets, int(ignore_index), reduction,
                                     float(label_smoothing), float(z_loss), compute_grad)[0]
    x = logits.reshape(-1, logits.shape[-1])
    t = targets.reshape(-1)
    loss = F.cross_entropy(x.float(), t, ignore_index=ignore_index, reduction="none",
                           label_smoothing=label_smoothing)
    if z_loss > 0.0:
        keep = t != ignore_index
        lse = torch.logsumexp(x.float(), dim=-1)
        loss = loss + torch.where(keep, z_loss * lse * lse, torch.zeros_like(lse))
    if reduction == "none":
        return loss.reshape(targets.shape).to(logits.dtype)
    if reduction == "sum":
        return loss.sum().to(logits.dtype)
    return (loss.sum() / (t != ignore_index).sum()).to(logits.dtype)


# ------------------------------------------------------------------------------------------------
# Linear + cross-entropy (the LM head and its loss), chunked over tokens.
#
# For each chunk of rows: logits = x_c @ W^T (+ b) -> the Triton kernel turns the chunk into its
# loss and, in place, its gradient G -> dX_c = G @ W, dW += G^T @ x_c (fp32), db += sum_rows G.
# The matmuls stay in torch (cuBLAS): they are 95% of the FLOPs and cuBLAS runs them near the
# card's peak, which a hand-written Triton GEMM would at best match; the part worth fusing is the
# softmax/gradient, which never needs the full (tokens x vocab) logits in memory.
# ------------------------------------------------------------------------------------------------

def chunk_rows(m: int, d: int, v: int) -> int:
    """Rows per chunk: a chunk of logits about as large as x, and at least twice W's size.

    Each chunk pays one read-modify-write of the fp32 dW (2 x 4 x V x D bytes), so chunks much
    smaller than ~2D rows spend more time on that than on their logits."""
    target = max(m * d, 2 * v * d)
    return max(1, min(m, triton.next_power_of_2(triton.cdiv(target, v))))


_ADDMM_OUT_DTYPE_OK = True


def _accumulate_matmul_fp32(acc, a, b):
    """acc += a @ b with acc in fp32 and a, b possibly half precision."""
    global _ADDMM_OUT_DTYPE_OK
    if a.dtype == torch.float32:
        acc.addmm_(a, b)
        return
    if _ADDMM_OUT_DTYPE_OK and a.is_cuda:
        try:  # one cuBLAS call accumulating straight into the fp32 buffer (torch >= 2.8)
            torch.addmm(acc, a, b, out_dtype=torch.float32, out=acc)
            return
        except (TypeError, RuntimeError, NotImplementedError):
            _ADDMM_OUT_DTYPE_OK = False
    acc.add_(a @ b)  # the half-precision product of one chunk, summed across chunks in fp32


def _compute_dtype(x):
    if torch.is_autocast_enabled(x.device.type) and x.is_floating_point():
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _linear_ce_pass(x2, w, b, t, grad_scale, ignore_index, rows_per_chunk, loss_rows, want_dx,
                    want_dw, want_db, scale_per_row):
    """One sweep over the row chunks; returns (dx, dw fp32, db fp32), each None when not wanted."""
    m, d = x2.shape
    v = w.shape[0]
    want_grad = want_dx or want_dw or want_db
    dx = torch.empty((m, d), dtype=x2.dtype, device=x2.device) if want_dx else None
    dw = torch.zeros((v, d), dtype=torch.float32, device=x2.device) if want_dw else None
    db = torch.zeros(v, dtype=torch.float32, device=x2.device) if want_db else None
    for start in range(0, m, rows_per_chunk):
        end = min(start + rows_per_chunk, m)
        xc = x2[start:end]
        logits = torch.addmm(b, xc, w.t()) if b is not None else xc @ w.t()
        scale = grad_scale[start:end] if scale_per_row else grad_scale
        _launch(logits, logits if want_grad else None, t[start:end], loss_rows[start:end], scale,
                ignore_index, scale_per_row=scale_per_row)
        if want_dx:
            torch.mm(logits, w, out=dx[start:end])
        if want_dw:
            _accumulate_matmul_fp32(dw, logits.t(), xc)
        if want_db:
            db += logits.sum(0, dtype=torch.float32)
    return dx, dw, db


# Custom ops. The forward takes the caller's x, weight and bias (so their gradients come back in
# their own dtypes, dW summed in fp32) and the dtype to compute in (autocast's, decided by the
# caller: inside a custom op autocast does not apply).
# "mean"/"sum": the forward sweep also makes dX (compute dtype), dW and db (fp32) for an upstream
# gradient of 1; the backward scales them. "none": per-row upstream gradients are unknown until
# backward and dW mixes all rows, so the forward makes only the loss and the backward op sweeps
# again. Gradients not asked for come back as empty placeholders.

def _linear_ce_inputs(x, weight, bias, targets, compute_dtype):
    d = x.shape[-1]
    x2 = _rows(x, d).to(compute_dtype)
    w = weight.to(compute_dtype).contiguous()
    b = bias.to(compute_dtype) if bias is not None else None
    return x2, w, b, targets.reshape(-1).contiguous()


def _linear_ce_grads(x, weight, bias, dx, dw, db):
    """The pass's gradients in the ops' output layout (empty where not wanted)."""
    # Separate placeholders: custom-op outputs may not alias each other.
    return (dx.view(x.shape) if dx is not None else x.new_empty(0),
            dw if dw is not None else weight.new_empty(0, dtype=torch.float32),
            db if db is not None else weight.new_empty(0, dtype=torch.float32))


@torch.library.custom_op("text2sql::linear_cross_entropy_forward", mutates_args=())
def linear_cross_entropy_forward(
        x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None,
        ignore_index: int, reduction: str, rows_per_chunk: int, compute_dtype: torch.dtype,
        want_dx: bool, want_dw: bool, want_db: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, dx, dw, db); rows_per_chunk 0 picks chunk_rows()."""
    x2, w, b, t = _linear_ce_inputs(x, weight, bias, targets, compute_dtype)
    m, d = x2.shape
    rows_per_chunk = rows_per_chunk or chunk_rows(m, d, w.shape[0])
    kept = (t != ignore_index).sum(dtype=torch.float32)
    loss_rows = torch.empty(m, dtype=torch.float32, device=x.device)
    want_db = want_db and bias is not None
    if reduction == "none":
        want_dx = want_dw = want_db = False  # the backward op makes them
    with torch.autocast(x.device.type, enabled=False):
        dx, dw, db = _linear_ce_pass(x2, w, b, t, _grad_scale(kept, reduction), ignore_index,
                                     rows_per_chunk, loss_rows, want_dx, want_dw, want_db, False)
    loss = _reduce(loss_rows, kept, reduction, targets.shape, x.dtype)
    return (loss, *_linear_ce_grads(x, weight, bias, dx, dw, db))


def _linear_ce_fake_grads(x, weight, bias, compute_dtype, want_dx, want_dw, want_db):
    v, d = weight.shape
    f32 = torch.float32
    return (x.new_empty(x.shape if want_dx else (0,), dtype=compute_dtype if want_dx else x.dtype),
            weight.new_empty((v, d) if want_dw else (0,), dtype=f32),
            weight.new_empty((v,) if want_db and bias is not None else (0,), dtype=f32))


@linear_cross_entropy_forward.register_fake
def _(x, weight, targets, bias, ignore_index, reduction, rows_per_chunk, compute_dtype,
      want_dx, want_dw, want_db):
    loss = x.new_empty(targets.shape if reduction == "none" else ())
    if reduction == "none":
        want_dx = want_dw = want_db = False
    return (loss, *_linear_ce_fake_grads(x, weight, bias, compute_dtype, want_dx, want_dw, want_db))


@torch.library.custom_op("text2sql::linear_cross_entropy_backward", mutates_args=())
def linear_cross_entropy_backward(
        x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None,
        grad_output: torch.Tensor, ignore_index: int, rows_per_chunk: int,
        compute_dtype: torch.dtype, want_dx: bool, want_dw: bool, want_db: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dw, db) of sum(grad_output * loss) for reduction="none" (grad_output: targets' shape)."""
    x2, w, b, t = _linear_ce_inputs(x, weight, bias, targets, compute_dtype)
    m, d = x2.shape
    rows_per_chunk = rows_per_chunk or chunk_rows(m, d, w.shape[0])
    scale = grad_output.reshape(-1).float().contiguous()
    loss_rows = torch.empty(m, dtype=torch.float32, device=x.device)
    with torch.autocast(x.device.type, enabled=False):
        dx, dw, db = _linear_ce_pass(x2, w, b, t, scale, ignore_index, rows_per_chunk, loss_rows,
                                     want_dx, want_dw, want_db and bias is not None, True)
    return _linear_ce_grads(x, weight, bias, dx, dw, db)


@linear_cross_entropy_backward.register_fake
def _(x, weight, targets, bias, grad_output, ignore_index, rows_per_chunk, compute_dtype,
      want_dx, want_dw, want_db):
    return _linear_ce_fake_grads(x, weight, bias, compute_dtype, want_dx, want_dw, want_db)


def _linear_ce_setup_context(ctx, inputs, output):
    (x, weight, targets, bias, ignore_index, reduction, rows_per_chunk, compute_dtype,
     want_dx, want_dw, want_db) = inputs
    _, dx, dw, db = output
    ctx.mark_non_differentiable(dx, dw, db)
    ctx.reduction = reduction
    ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
    ctx.args = (ignore_index, rows_per_chunk, compute_dtype, want_dx, want_dw, want_db)
    if reduction == "none":
        ctx.save_for_backward(x, weight, targets, bias)
    else:
        ctx.save_for_backward(dx, dw, db)


def _linear_ce_backward(ctx, grad_output, _ddx, _ddw, _ddb):
    x_dtype, w_dtype, b_dtype = ctx.dtypes
    if ctx.reduction == "none":
        x, weight, targets, bias = ctx.saved_tensors
        ignore_index, rows_per_chunk, compute_dtype, want_dx, want_dw, want_db = ctx.args
        dx, dw, db = linear_cross_entropy_backward(x, weight, targets, bias, grad_output,
                                                   ignore_index, rows_per_chunk, compute_dtype,
                                                   want_dx, want_dw, want_db)
    else:
        # The forward already made the gradients for an upstream gradient of 1: scale them
        # (out of place: a second backward with retain_graph stays right).
        dx, dw, db = ctx.saved_tensors
        g = grad_output.float()
        dx, dw, db = dx * g.to(dx.dtype), dw * g, db * g
    need = ctx.needs_input_grad
    # Empty placeholders (a gradient the forward was told not to make) give None.
    dx = dx.to(x_dtype) if need[0] and dx.numel() else None
    dw = dw.to(w_dtype) if need[1] and dw.numel() else None
    db = db.to(b_dtype) if b_dtype is not None and need[3] and db.numel() else None
    return dx, dw, None, db, None, None, None, None, None, None, None


linear_cross_entropy_forward.register_autograd(_linear_ce_backward,
                                               setup_context=_linear_ce_setup_context)


def _triton_linear_cross_entropy(x, weight, targets, bias=None, ignore_index=-100, reduction="mean",
                                 rows_per_chunk=None):
    """The Triton path with an explicit chunk size (tests use small chunks to cover the loop)."""
    _check_reduction(reduction)
    rows = math.prod(x.shape[:-1])
    if targets.numel() != rows:
        raise ValueError(f"targets hold {targets.numel()} entries for {rows} rows of x")
    grad = torch.is_grad_enabled()
    loss, _, _, _ = linear_cross_entropy_forward(
        x, weight, targets, bias, int(ignore_index), reduction, int(rows_per_chunk or 0),
        _compute_dtype(x), grad and x.requires_grad, grad and weight.requires_grad,
        grad and bias is not None and bias.requires_grad)
    return loss


def linear_cross_entropy(x, weight, targets, bias=None, ignore_index=-100, reduction="mean"):
    """cross_entropy(x @ weight.T + bias, targets) without materialising the full logits.

    x: (..., D), weight: (V, D), targets: (...). The Triton path works through chunks of rows,
    so peak memory is a chunk of logits plus an fp32 dW instead of all (tokens x V) logits."""
    _check_reduction(reduction)
    if use_triton(x):
        return _triton_linear_cross_entropy(x, weight, targets, bias, ignore_index, reduction)
    logits = F.linear(x.reshape(-1, x.shape[-1]), weight, bias)
    loss = cross_entropy(logits, targets.reshape(-1), ignore_index=ignore_index, reduction=reduction)
    return loss.reshape(targets.shape) if reduction == "none" else loss
