"""Fused (residual add +) LayerNorm: Triton forward and backward, PyTorch fallback.

    h = x + residual                     (the next residual stream; h = x without a residual)
    y = (h - mean(h)) * rstd * w + b,    rstd = 1 / sqrt(var(h) + eps), statistics over the last dim

PyTorch's LayerNorm is already one kernel, so the speed has to come from fusing the residual add
(one read of x and r, one write of h and y, instead of a separate add kernel that writes h and a
LayerNorm that reads it back) and from a backward pass that does everything in one sweep.

Backward, with xhat = (h - mean) * rstd and g = w * dy:
    dh = rstd * (g - mean(g * xhat) * xhat - mean(g)) + dh_out      (dh_out: gradient of the h output)
    dx = dresidual = dh,   dw = sum over rows of dy * xhat,   db = sum over rows of dy
Each backward program owns a contiguous block of rows: it writes dh row by row and accumulates its
rows' dw/db in fp32 registers, then writes them to its own row of a (programs, N) fp32 partial buffer.
A final sum over that buffer gives dw/db. No atomics, so the result is bitwise deterministic.

Variants, chosen per call by environment variable (read on every call; the default is "rows" until
a GPU run shows "blocked" faster):
    KERNELS_LAYERNORM_FWD=rows|blocked   rows: one program per row; blocked: one program per 2D block
                                         of ROWS_PER_BLOCK >= 2 rows x BLOCK_N columns (rows up to
                                         2048 wide; wider ones take the row kernel)
    KERNELS_LAYERNORM_BWD=rows|blocked   rows: the kernels above; blocked: a persistent grid of a
                                         few programs per SM, each looping over 2D row blocks with
                                         dw/db accumulated in fp32 registers across all its blocks
                                         (one partial row per program), for widths up to
                                         BLOCKED_BWD_MAX_WIDTH, dw/db in the same pass as dh
"""
import functools
import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels.backend import use_triton

# Widest row the Triton path handles: a whole row lives in registers (one block of BLOCK_N columns).
MAX_FUSED_WIDTH = 16384


@triton.jit
def _layer_norm_fwd_kernel(
    X, R, W, B, Y, H, Mean, Rstd,
    stride_x, stride_r, stride_y, stride_h,
    N, eps,
    HAS_RESIDUAL: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    # One program normalises one row; the whole row is held in registers (BLOCK_N >= N).
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    h = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        h += tl.load(R + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
        # Round h to its storage type first: the backward recomputes xhat from the stored h, so
        # the forward must normalise exactly that value.
        h = h.to(H.dtype.element_ty)
        tl.store(H + row * stride_h + cols, h, mask=mask)
        h = h.to(tl.float32)
    # Two-pass statistics in fp32 (mean first, then the centred sum of squares): no cancellation.
    mean = tl.sum(h, axis=0) / N
    centred = tl.where(mask, h - mean, 0.0)
    var = tl.sum(centred * centred, axis=0) / N
    rstd = 1.0 / tl.sqrt(var + eps)
    y = centred * rstd
    if HAS_WEIGHT:
        y = y * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        y = y + tl.load(B + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(Mean + row, mean)
    tl.store(Rstd + row, rstd)


@triton.jit
def _layer_norm_bwd_kernel(
    DY, DH_OUT, H, W, Mean, Rstd, DH, DW_PARTIAL, DB_PARTIAL,
    stride_dy, stride_dh_out, stride_h, stride_dh,
    M, N, rows_per_program,
    HAS_DH_OUT: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    dw = tl.zeros([BLOCK_N], dtype=tl.float32)
    db = tl.zeros([BLOCK_N], dtype=tl.float32)
    row_start = pid.to(tl.int64) * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    for row in range(row_start, row_end):
        h = tl.load(H + row * stride_h + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(Mean + row)
        rstd = tl.load(Rstd + row)
        xhat = tl.where(mask, (h - mean) * rstd, 0.0)
        if HAS_WEIGHT:
            # Re-read w for every row (an L1/L2 hit) rather than pinning it in registers for the
            # whole loop: the registers go to the dw/db accumulators instead of spilling.
            g = dy * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        else:
            g = dy
        # dh = rstd * (g - xhat * mean(g * xhat) - mean(g)); masked columns are 0 in g and xhat.
        c1 = tl.sum(g * xhat, axis=0) / N
        c2 = tl.sum(g, axis=0) / N
        dh = (g - (xhat * c1 + c2)) * rstd
        if HAS_DH_OUT:
            dh += tl.load(DH_OUT + row * stride_dh_out + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(DH + row * stride_dh + cols, dh.to(DH.dtype.element_ty), mask=mask)
        if HAS_WEIGHT:
            dw += dy * xhat
        if HAS_BIAS:
            db += dy
    if HAS_WEIGHT:
        tl.store(DW_PARTIAL + pid.to(tl.int64) * N + cols, dw, mask=mask)
    if HAS_BIAS:
        tl.store(DB_PARTIAL + pid.to(tl.int64) * N + cols, db, mask=mask)


@triton.jit
def _layer_norm_bwd_dh_wide_kernel(
    DY, DH_OUT, H, W, Mean, Rstd, DH,
    stride_dy, stride_dh_out, stride_h, stride_dh,
    N,
    HAS_DH_OUT: tl.constexpr, HAS_WEIGHT: tl.constexpr, TILE_N: tl.constexpr,
):
    # Wide rows (N > FUSED_BWD_MAX_WIDTH): dh only, one row per program, in column tiles so the
    # register use does not grow with N. Pass 1 sums g * xhat and g over the tiles; pass 2
    # re-reads the row (now in L1/L2) and writes dh. dw/db come from _layer_norm_bwd_dwdb_kernel.
    row = tl.program_id(0).to(tl.int64)
    mean = tl.load(Mean + row)
    rstd = tl.load(Rstd + row)
    sum_gx = tl.zeros([TILE_N], dtype=tl.float32)
    sum_g = tl.zeros([TILE_N], dtype=tl.float32)
    for start in range(0, N, TILE_N):
        cols = start + tl.arange(0, TILE_N)
        mask = cols < N
        h = tl.load(H + row * stride_h + cols, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_WEIGHT:
            g = g * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        xhat = tl.where(mask, (h - mean) * rstd, 0.0)
        sum_gx += g * xhat
        sum_g += g
    c1 = tl.sum(sum_gx, axis=0) / N
    c2 = tl.sum(sum_g, axis=0) / N
    for start in range(0, N, TILE_N):
        cols = start + tl.arange(0, TILE_N)
        mask = cols < N
        h = tl.load(H + row * stride_h + cols, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_WEIGHT:
            g = g * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        xhat = (h - mean) * rstd
        dh = (g - (xhat * c1 + c2)) * rstd
        if HAS_DH_OUT:
            dh += tl.load(DH_OUT + row * stride_dh_out + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(DH + row * stride_dh + cols, dh.to(DH.dtype.element_ty), mask=mask)


@triton.jit
def _layer_norm_bwd_dwdb_kernel(
    DY, H, Mean, Rstd, DW_PARTIAL, DB_PARTIAL,
    stride_dy, stride_h,
    M, N, rows_per_program,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # Wide rows only (N > FUSED_BWD_MAX_WIDTH): dw/db for a whole row no longer fit in registers
    # next to the row itself, so they get their own column-parallel pass. Program (i, j) sums
    # dy * xhat and dy over its block of rows for columns [j*BLOCK_N, (j+1)*BLOCK_N) into row i of
    # the partial buffers. This re-reads h and dy once more; the price of no spills and no atomics.
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_mask = cols < N
    dw = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    db = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    row_start = pid_m.to(tl.int64) * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    for block_start in range(row_start, row_end, BLOCK_M):
        rows = block_start + tl.arange(0, BLOCK_M)
        row_mask = rows < row_end
        mask = row_mask[:, None] & col_mask[None, :]
        dy = tl.load(DY + rows[:, None] * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_WEIGHT:
            h = tl.load(H + rows[:, None] * stride_h + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            mean = tl.load(Mean + rows, mask=row_mask, other=0.0)
            rstd = tl.load(Rstd + rows, mask=row_mask, other=0.0)
            dw += dy * ((h - mean[:, None]) * rstd[:, None])
        if HAS_BIAS:
            db += dy
    if HAS_WEIGHT:
        tl.store(DW_PARTIAL + pid_m.to(tl.int64) * N + cols, tl.sum(dw, axis=0), mask=col_mask)
    if HAS_BIAS:
        tl.store(DB_PARTIAL + pid_m.to(tl.int64) * N + cols, tl.sum(db, axis=0), mask=col_mask)


@triton.jit
def _layer_norm_fwd_blocked_kernel(
    X, R, W, B, Y, H, Mean, Rstd,
    stride_x, stride_r, stride_y, stride_h,
    M, N, eps,
    HAS_RESIDUAL: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
    ROWS_PER_BLOCK: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # The "blocked" forward: one program normalises ROWS_PER_BLOCK rows at once, a 2D block in
    # registers, so a narrow row (768) still gives every thread a full vector of loads and the
    # grid has M / ROWS_PER_BLOCK programs instead of M tiny ones. Same math as the row kernel.
    rows = tl.program_id(0).to(tl.int64) * ROWS_PER_BLOCK + tl.arange(0, ROWS_PER_BLOCK)
    cols = tl.arange(0, BLOCK_N)
    row_mask = rows < M
    mask = row_mask[:, None] & (cols < N)[None, :]
    h = tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        h += tl.load(R + rows[:, None] * stride_r + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        h = h.to(H.dtype.element_ty)  # the backward re-reads the stored h: normalise exactly that
        tl.store(H + rows[:, None] * stride_h + cols[None, :], h, mask=mask)
        h = h.to(tl.float32)
    mean = tl.sum(h, axis=1) / N
    centred = tl.where(mask, h - mean[:, None], 0.0)
    var = tl.sum(centred * centred, axis=1) / N
    rstd = 1.0 / tl.sqrt(var + eps)
    y = centred * rstd[:, None]
    if HAS_WEIGHT:
        y = y * tl.load(W + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        y = y + tl.load(B + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    tl.store(Y + rows[:, None] * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)
    tl.store(Mean + rows, mean, mask=row_mask)
    tl.store(Rstd + rows, rstd, mask=row_mask)


@triton.jit
def _layer_norm_bwd_blocked_kernel(
    DY, DH_OUT, H, W, Mean, Rstd, DH, DW_PARTIAL, DB_PARTIAL,
    stride_dy, stride_dh_out, stride_h, stride_dh,
    M, N,
    HAS_DH_OUT: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
    ROWS_PER_BLOCK: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # The "blocked" backward: a persistent grid (a few programs per SM). Program p takes row
    # blocks p, p + P, p + 2P, ... (P programs), each ROWS_PER_BLOCK rows x BLOCK_N columns:
    #   dh = rstd * (g - xhat * mean(g * xhat) - mean(g)) (+ dh_out),  g = dy * w   (per row)
    #   dw += dy * xhat,  db += dy                                      (fp32, in registers)
    # and writes one partial row of dw/db at the end: P x N partials in all, summed afterwards.
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    cols = tl.arange(0, BLOCK_N)
    col_mask = cols < N
    dw = tl.zeros([ROWS_PER_BLOCK, BLOCK_N], dtype=tl.float32)
    db = tl.zeros([ROWS_PER_BLOCK, BLOCK_N], dtype=tl.float32)
    num_blocks = tl.cdiv(M, ROWS_PER_BLOCK)
    for block in range(pid, num_blocks, programs):
        # block * ROWS_PER_BLOCK <= M + ROWS_PER_BLOCK fits int32; the offsets below are int64.
        rows = (block * ROWS_PER_BLOCK + tl.arange(0, ROWS_PER_BLOCK)).to(tl.int64)
        row_mask = rows < M
        mask = row_mask[:, None] & col_mask[None, :]
        h = tl.load(H + rows[:, None] * stride_h + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + rows[:, None] * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(Mean + rows, mask=row_mask, other=0.0)
        rstd = tl.load(Rstd + rows, mask=row_mask, other=0.0)
        # Masked rows and columns: h = dy = rstd = 0, so xhat = g = 0 and they add nothing.
        xhat = tl.where(mask, (h - mean[:, None]) * rstd[:, None], 0.0)
        if HAS_WEIGHT:
            # w re-read per block (an L1 hit) instead of pinned in registers next to dw/db.
            g = dy * tl.load(W + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
        else:
            g = dy
        c1 = tl.sum(g * xhat, axis=1) / N
        c2 = tl.sum(g, axis=1) / N
        dh = (g - (xhat * c1[:, None] + c2[:, None])) * rstd[:, None]
        if HAS_DH_OUT:
            dh += tl.load(DH_OUT + rows[:, None] * stride_dh_out + cols[None, :], mask=mask,
                          other=0.0).to(tl.float32)
        tl.store(DH + rows[:, None] * stride_dh + cols[None, :], dh.to(DH.dtype.element_ty), mask=mask)
        if HAS_WEIGHT:
            dw += dy * xhat
        if HAS_BIAS:
            db += dy
    if HAS_WEIGHT:
        tl.store(DW_PARTIAL + pid.to(tl.int64) * N + cols, tl.sum(dw, axis=0), mask=col_mask)
    if HAS_BIAS:
        tl.store(DB_PARTIAL + pid.to(tl.int64) * N + cols, tl.sum(db, axis=0), mask=col_mask)


# Up to this width the backward is one kernel: the whole row plus fp32 dw/db accumulators sit in
# registers. Beyond it that spills on sm_90 (8192: 8-16 B, 16384: 200+ B per thread, measured with
# tests/compile_gate.py), so wide rows use two kernels: dh in column tiles, then dw/db by columns.
FUSED_BWD_MAX_WIDTH = 4096
WIDE_TILE_N, WIDE_NUM_WARPS = 2048, 8
DWDB_BLOCK_M, DWDB_BLOCK_N, DWDB_NUM_WARPS = 16, 256, 4


def launch_config(n: int) -> tuple[int, int]:
    """(BLOCK_N, num_warps) for rows of width n: the row in one block, at most 16 columns/thread."""
    block_n = triton.next_power_of_2(n)
    num_warps = min(max(block_n // 512, 1), 16)
    return block_n, num_warps


@functools.lru_cache(maxsize=None)
def _sm_count_of(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device, asked once per device: every backward call needs it,
    and a GPU step is short enough that host time per launch counts (bench/profile_gpu.py)."""
    return _sm_count_of(device.index if device.index is not None else torch.cuda.current_device())


def backward_programs(m: int, n: int, device: torch.device) -> int:
    """How many programs share the rows in the backward (each writes one row of dw/db partials).

    Enough programs for ~32 warps per SM (a memory-bound loop needs many loads in flight), while
    the final reduction over the (programs, N) fp32 partials stays small next to the rows."""
    if device.type == "cuda":
        sms = _sm_count(device)
        warps = launch_config(n)[1] if n <= FUSED_BWD_MAX_WIDTH else DWDB_NUM_WARPS
        return max(1, min(m, sms * max(2, 32 // warps)))
    return max(1, min(m, 4))  # Triton's CPU interpreter: few programs, long row loops


VARIANTS = ("rows", "blocked")
# The blocked kernels hold ROWS_PER_BLOCK x BLOCK_N elements per tensor: about TILE of them
# (at most BLOCKED_MAX_ROWS rows), PER_THREAD per thread (so num_warps = TILE / (32 PER_THREAD),
# 1..16). The backward keeps ~7 such tensors live (h, dy, xhat, g, dh_out, the dw/db
# accumulators), so it takes half the forward's per thread: 16 there spills on sm_90 (N=768, bf16).
BLOCKED_MAX_ROWS = 16
BLOCKED_TILE = {"FWD": (4096, 16), "BWD": (2048, 8)}  # kind -> (TILE, PER_THREAD)
# Widest row the blocked backward takes (dw/db in the same pass as dh, whole row in registers;
# wider rows fall back to the "rows" path). Set by the compile gate: no spills on sm_80/sm_90.
BLOCKED_BWD_MAX_WIDTH = 8192
# Persistent grid of the blocked backward: about this many warps per SM (programs = SMs x this /
# num_warps): as many as the ~70-125 registers per thread let stay resident at once.
BLOCKED_BWD_WARPS_PER_SM = 24
# Without CUDA (Triton's CPU interpreter) a fixed, small grid: long loops over the row blocks.
BLOCKED_BWD_PROGRAMS_NO_CUDA = 4


def variant(kind: str) -> str:
    """The variant of the forward ("FWD") or backward ("BWD") kernel that KERNELS_LAYERNORM_<kind>
    selects: "rows" (the default) or "blocked"."""
    name = f"KERNELS_LAYERNORM_{kind}"
    value = os.environ.get(name, "rows").strip().lower() or "rows"
    if value not in VARIANTS:
        raise ValueError(f"{name}={value!r} is not a LayerNorm variant; use one of {', '.join(VARIANTS)}")
    return value


def blocked_config(n: int, kind: str = "FWD") -> tuple[int, int, int]:
    """(BLOCK_N, ROWS_PER_BLOCK, num_warps) of the blocked forward (kind "FWD") or backward
    ("BWD") for rows of width n (see BLOCKED_TILE)."""
    tile, per_thread = BLOCKED_TILE[kind]
    block_n = triton.next_power_of_2(n)
    rows = min(max(tile // block_n, 1), BLOCKED_MAX_ROWS)
    num_warps = min(max(rows * block_n // (32 * per_thread), 1), 16)
    return block_n, rows, num_warps


def blocked_backward_programs(m: int, n: int, device: torch.device) -> int:
    """Programs of the blocked backward's persistent grid: a few per SM (each writes one row of
    dw/db partials), never more than there are row blocks."""
    _, rows, num_warps = blocked_config(n, "BWD")
    blocks = triton.cdiv(max(m, 1), rows)
    if device.type == "cuda":
        sms = _sm_count(device)
        programs = sms * max(1, BLOCKED_BWD_WARPS_PER_SM // num_warps)
    else:
        programs = BLOCKED_BWD_PROGRAMS_NO_CUDA
    return max(1, min(blocks, programs))


def _rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """View as (rows, n) with unit column stride (copying only when the layout needs it)."""
    t2 = t.reshape(-1, n)
    return t2 if t2.stride(-1) == 1 else t2.contiguous()


# ------------------------------------------------------------------------------------------------
# Registration as torch custom ops: one opaque node per kernel for torch.compile (no graph break,
# no tracing into Triton), with a fake (meta) implementation that gives the output shapes, and
# the backward its own op so a compiled backward graph also holds one node per kernel.
# Custom-op outputs may not alias inputs, so without a residual the forward returns an empty
# placeholder for h (h is then x itself, which setup_context saves from the inputs).
# ------------------------------------------------------------------------------------------------

@torch.library.custom_op("text2sql::layer_norm_forward", mutates_args=())
def layer_norm_forward(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor | None,
                       bias: torch.Tensor | None, eps: float
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, h, mean, rstd): y = LayerNorm(h) with h = x + residual (h: an empty placeholder when
    residual is None); mean and rstd are fp32 per row, shape x.shape[:-1]."""
    n = x.shape[-1]
    x2 = _rows(x, n)
    m = x2.shape[0]
    has_res = residual is not None
    r2 = _rows(residual, n) if has_res else x2
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    h = (torch.empty(x.shape, dtype=torch.promote_types(x.dtype, residual.dtype), device=x.device)
         if has_res else x.new_empty(0))
    h2 = h.view(m, n) if has_res else x2  # the kernel's H pointer is only written with a residual
    mean = torch.empty(x.shape[:-1], dtype=torch.float32, device=x.device)
    rstd = torch.empty(x.shape[:-1], dtype=torch.float32, device=x.device)
    block_n, num_warps = launch_config(n)
    w = weight if weight is not None else x2  # placeholder pointer, never read
    b = bias if bias is not None else x2
    y2 = y.view(m, n)
    if m > 0 and variant("FWD") == "blocked" and blocked_config(n)[1] > 1:
        # (A one-row block is the row kernel itself: it takes widths past TILE / 2.)
        block_n, rows, num_warps = blocked_config(n)
        _layer_norm_fwd_blocked_kernel[(triton.cdiv(m, rows),)](
            x2, r2, w, b, y2, h2, mean, rstd,
            x2.stride(0), r2.stride(0), y2.stride(0), h2.stride(0),
            m, n, eps,
            HAS_RESIDUAL=has_res, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None,
            ROWS_PER_BLOCK=rows, BLOCK_N=block_n, num_warps=num_warps,
        )
    elif m > 0:
        _layer_norm_fwd_kernel[(m,)](
            x2, r2, w, b, y2, h2, mean, rstd,
            x2.stride(0), r2.stride(0), y2.stride(0), h2.stride(0),
            n, eps,
            HAS_RESIDUAL=has_res, HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None,
            BLOCK_N=block_n, num_warps=num_warps,
        )
    return y, h, mean, rstd


@layer_norm_forward.register_fake
def _(x, residual, weight, bias, eps):
    h = (x.new_empty(x.shape, dtype=torch.promote_types(x.dtype, residual.dtype))
         if residual is not None else x.new_empty(0))
    stats = x.new_empty(x.shape[:-1], dtype=torch.float32)
    return x.new_empty(x.shape), h, stats, stats.new_empty(stats.shape)


@torch.library.custom_op("text2sql::layer_norm_backward", mutates_args=())
def layer_norm_backward(dy: torch.Tensor, dh_out: torch.Tensor | None, h: torch.Tensor,
                        weight: torch.Tensor | None, mean: torch.Tensor, rstd: torch.Tensor,
                        has_bias: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dh, dw, db) for the normalised input h: dh in h's dtype (dh_out, the gradient of the h
    output, already added), dw and db as fp32 sums over rows (empty when there is no weight/bias)."""
    n = h.shape[-1]
    h2 = _rows(h, n)
    m = h2.shape[0]
    dy2 = _rows(dy, n)
    has_dh_out = dh_out is not None
    dh_out2 = _rows(dh_out, n) if has_dh_out else dy2
    dh = torch.empty(h.shape, dtype=h.dtype, device=h.device)
    dh2 = dh.view(m, n)
    blocked = variant("BWD") == "blocked" and n <= BLOCKED_BWD_MAX_WIDTH
    programs = (blocked_backward_programs if blocked else backward_programs)(m, n, h.device)
    rows_per_program = triton.cdiv(max(m, 1), programs)
    has_w = weight is not None
    dw_partial = (torch.empty((programs, n), dtype=torch.float32, device=h.device) if has_w
                  else mean.new_empty((1, 0)))
    db_partial = (torch.empty((programs, n), dtype=torch.float32, device=h.device) if has_bias
                  else mean.new_empty((1, 0)))
    # Placeholder pointers for absent buffers, never touched (the HAS_* flags are constexpr).
    dw_ptr = dw_partial if has_w else mean
    db_ptr = db_partial if has_bias else mean
    if m > 0 and blocked:
        block_n, rows, num_warps = blocked_config(n, "BWD")
        _layer_norm_bwd_blocked_kernel[(programs,)](
            dy2, dh_out2, h2, weight if has_w else h2, mean, rstd, dh2, dw_ptr, db_ptr,
            dy2.stride(0), dh_out2.stride(0), h2.stride(0), dh2.stride(0),
            m, n,
            HAS_DH_OUT=has_dh_out, HAS_WEIGHT=has_w, HAS_BIAS=has_bias,
            ROWS_PER_BLOCK=rows, BLOCK_N=block_n, num_warps=num_warps,
        )
    elif m > 0 and n <= FUSED_BWD_MAX_WIDTH:
        block_n, num_warps = launch_config(n)
        _layer_norm_bwd_kernel[(programs,)](
            dy2, dh_out2, h2, weight if has_w else h2, mean, rstd, dh2, dw_ptr, db_ptr,
            dy2.stride(0), dh_out2.stride(0), h2.stride(0), dh2.stride(0),
            m, n, rows_per_program,
            HAS_DH_OUT=has_dh_out, HAS_WEIGHT=has_w, HAS_BIAS=has_bias,
            BLOCK_N=block_n, num_warps=num_warps,
        )
    elif m > 0:
        _layer_norm_bwd_dh_wide_kernel[(m,)](
            dy2, dh_out2, h2, weight if has_w else h2, mean, rstd, dh2,
            dy2.stride(0), dh_out2.stride(0), h2.stride(0), dh2.stride(0),
            n,
            HAS_DH_OUT=has_dh_out, HAS_WEIGHT=has_w, TILE_N=WIDE_TILE_N, num_warps=WIDE_NUM_WARPS,
        )
        if has_w or has_bias:
            _layer_norm_bwd_dwdb_kernel[(programs, triton.cdiv(n, DWDB_BLOCK_N))](
                dy2, h2, mean, rstd, dw_ptr, db_ptr,
                dy2.stride(0), h2.stride(0),
                m, n, rows_per_program,
                HAS_WEIGHT=has_w, HAS_BIAS=has_bias,
                BLOCK_M=DWDB_BLOCK_M, BLOCK_N=DWDB_BLOCK_N, num_warps=DWDB_NUM_WARPS,
            )
    else:  # no rows: the sums over rows are zero
        dw_partial.zero_()
        db_partial.zero_()
    return dh, dw_partial.sum(0), db_partial.sum(0)


@layer_norm_backward.register_fake
def _(dy, dh_out, h, weight, mean, rstd, has_bias):
    n = h.shape[-1]
    return (h.new_empty(h.shape), mean.new_empty(n if weight is not None else 0),
            mean.new_empty(n if has_bias else 0))


def _layer_norm_setup_context(ctx, inputs, output):
    x, residual, weight, bias, eps = inputs
    _, h, mean, rstd = output
    # Without a residual the normalised input is x itself.
    ctx.save_for_backward(h if residual is not None else x, weight, mean, rstd)
    ctx.has_residual, ctx.has_bias = residual is not None, bias is not None
    ctx.dtypes = (x.dtype, None if residual is None else residual.dtype,
                  None if weight is None else weight.dtype, None if bias is None else bias.dtype)
    ctx.mark_non_differentiable(mean, rstd)
    if residual is None:
        ctx.mark_non_differentiable(h)
    # An unused output's gradient arrives as None instead of a tensor of zeros, so the last
    # LayerNorm (whose h nobody reads) skips reading a zero dh_out.
    ctx.set_materialize_grads(False)


def _layer_norm_backward(ctx, dy, dh_out, _dmean, _drstd):
    h, weight, mean, rstd = ctx.saved_tensors
    x_dtype, r_dtype, w_dtype, b_dtype = ctx.dtypes
    if not ctx.has_residual:
        dh_out = None
    if dy is None:
        if dh_out is None:
            return None, None, None, None, None
        dy = torch.zeros_like(h)
    dh, dw, db = layer_norm_backward(dy, dh_out, h, weight, mean, rstd, ctx.has_bias)
    need = ctx.needs_input_grad
    dx = dh.to(x_dtype) if need[0] else None
    dr = dh.to(r_dtype) if ctx.has_residual and need[1] else None
    dw = dw.to(w_dtype) if weight is not None and need[2] else None
    db = db.to(b_dtype) if ctx.has_bias and need[3] else None
    return dx, dr, dw, db, None


layer_norm_forward.register_autograd(_layer_norm_backward, setup_context=_layer_norm_setup_context)


def layer_norm(x, weight, bias, eps=1e-5, residual=None):
    """y = LayerNorm(x + residual) over the last dim; returns y, or (y, x + residual).

    Triton path: CUDA tensors (or KERNELS_BACKEND=triton with TRITON_INTERPRET=1) with rows up to
    MAX_FUSED_WIDTH wide; wider rows run PyTorch."""
    if use_triton(x) and x.shape[-1] <= MAX_FUSED_WIDTH:
        if residual is not None and residual.shape != x.shape:
            raise ValueError(f"residual shape {tuple(residual.shape)} must equal x's {tuple(x.shape)}")
        y, h, _, _ = layer_norm_forward(x, residual, weight, bias, float(eps))
        return y if residual is None else (y, h)
    h = x if residual is None else x + residual
    y = F.layer_norm(h, (h.shape[-1],), weight, bias, eps)
    return y if residual is None else (y, h)
