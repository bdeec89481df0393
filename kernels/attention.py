"""Fused causal attention, FlashAttention-2 style: Triton forward and backward kernels.

For one batch element and head (q: Tq x D, k and v: Tk x D, s = the softmax scale, 1/sqrt(D) by
default):

    S = s * Q K^T            P = softmax(S + mask) row by row            O = P V

The causal mask is aligned to the end: query i sees key j iff j <= i + (Tk - Tq), so a short query
block (decoding with a KV cache) sees the whole past. A query that sees no key (Tq > Tk) gets O = 0.

Forward (one program per BLOCK_M queries, looping over BLOCK_N keys at a time). S and P are never
stored: an online softmax keeps, per query row, the running max m, the running sum l and the
unnormalised output acc. It works in base 2 because exp2 is the GPU's native instruction: with
S2 = S * log2(e), exp(S - m) = exp2(S2 - m2), so log2(e) is folded into the scale once
(qk_scale = s / ln 2) and every score costs one multiply and one exp2. For each key tile j:

    m_new = max(m, rowmax(S2_j))     alpha = exp2(m - m_new)     P_j = exp2(S2_j - m_new)
    l = alpha * l + rowsum(P_j)      acc = alpha * acc + P_j V_j          m = m_new

and at the end O = acc / l and LSE2 = m + log2(l), the base-2 log-sum-exp of the row, saved for the
backward. With the causal mask, the key tiles left of the diagonal run without any mask, the tiles
that cross the diagonal (and a ragged last tile) are masked, and the tiles above it are skipped:
causal attention costs half the FLOPs of the full one.

Backward (dO given), recomputing P tile by tile from LSE2 instead of storing it:

    Delta_i = rowsum(dO_i * O_i)     (= rowsum(P_i * dP_i), a preprocess kernel)
    P = exp2(S2 - LSE2)    dV = P^T dO    dP = dO V^T    dS = P * (dP - Delta)
    dQ = s * dS K          dK = s * dS^T Q

dK and dV come from one program per key tile looping over the query tiles that see it; dQ from one
program per query tile looping over its key tiles (the forward's loop). Every gradient row is
written by exactly one program: no atomics, and the result is bit-for-bit reproducible. All sums
accumulate in fp32; the matmul operands stay in the input dtype (P and dS are cast to it, as in
FlashAttention-2).

kernels.attention(q, k, v) runs these kernels on CUDA tensors (or anywhere with KERNELS_BACKEND=
triton and TRITON_INTERPRET=1) and PyTorch's scaled_dot_product_attention otherwise.

Variants, each switchable, the default unchanged until a GPU run shows otherwise:
- launch order (SCHEDULES: natural, reverse, longest_first): which program runs which tile, so the
  heavy causal tiles can start first; same arithmetic, same bits (kernels named *_scheduled);
- deterministic=False: dQ accumulated with fp32 atomics inside the dK/dV kernel (one backward
  kernel with 5 matmuls per tile pair instead of two with 7); dQ's last bits then vary by run;
- the launch tables, overridden per card and head dim by kernels/tuned.json, the decisions file
  bench/gpu_suite.sh's sweep writes (see "Decisions measured on a GPU" below);
- the packed layout (KERNELS_ATTENTION_LAYOUT=packed, attention_qkv): a GPT block's (B, T, 3C)
  projection read in place and the output and d(qkv) written in place, the same kernels and bits
  with no transpose copies around them (off until a GPU run shows it compiled; attention_layout).
Not done yet: a tensor-descriptor (TMA) path for sm_90. Triton 3.6 and 3.9 both have
tl.make_tensor_descriptor (device-side descriptors need triton.set_allocator) and the host-side
triton.tools.tensor_descriptor.TensorDescriptor, but such a path is a second way to load every
tile, with its own out-of-bounds rules at ragged ends, and only a GPU can show it right and
faster; it was left out rather than risk the one GPU run on it.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels.backend import use_triton

SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
LOG2_E = 1.4426950408889634  # 1 / ln 2


# ----------------------------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------------------------

@triton.jit
def _causal_key_range(start_m, T_Q, T_K, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr):
    """Key range [0, hi) that the queries start_m .. start_m+BLOCK_M-1 see, split at full_end.

    Keys [0, full_end) are visible to every query of the tile and all < T_K: no mask needed.
    Keys [full_end, hi) cross the diagonal or the ragged end: masked. full_end is a multiple of
    BLOCK_N so both loops step over whole tiles; keys at or beyond hi are never loaded."""
    if CAUSAL:
        diag = T_K - T_Q
        # The first query of the tile sees keys <= start_m + diag; the last, <= start_m+BLOCK_M-1+diag.
        full_end = tl.minimum(start_m + diag + 1, T_K)
        hi = tl.minimum(start_m + BLOCK_M + diag, T_K)
    else:
        full_end = T_K
        hi = T_K
    full_end = tl.maximum(full_end, 0) // BLOCK_N * BLOCK_N
    return full_end, hi


# Launch order. A GPU starts programs roughly in the order of their linear index (x fastest), and
# with causal masking the query tile m does m + 1 key tiles of work: launched 0, 1, 2, .. (the
# natural order), the heaviest tiles start last and the last wave is a few long programs on an
# otherwise idle GPU. SCHEDULE (a tl.constexpr) picks the order:
#   0 natural        grid (tiles, B*H): tile = program_id(0) (the default: unchanged behaviour)
#   1 reverse        grid (tiles, B*H): each head's heaviest tile first (FlashAttention-2/3's order;
#                    the tiles of one head still run side by side and share K/V in L2)
#   2 longest_first  grid (B*H, tiles): the heaviest tile of EVERY head before any lighter one
#                    (longest-processing-time-first over the whole launch; less L2 sharing)
# HEAVY_LAST says which end of the tile range is heavy: the last query tiles in the forward and
# dQ kernels, the first key tiles in dK/dV (key 0 is seen by every query), whose natural order is
# therefore already heavy-first within a head.
SCHEDULES = {"natural": 0, "reverse": 1, "longest_first": 2}


@triton.jit
def _program_tile(SCHEDULE: tl.constexpr, HEAVY_LAST: tl.constexpr):
    """(tile index along the sequence, batch*head index) of this program under SCHEDULE."""
    if SCHEDULE == 2:
        tile = tl.program_id(1)
        bh = tl.program_id(0)
        n_tiles = tl.num_programs(1)
    else:
        tile = tl.program_id(0)
        bh = tl.program_id(1)
        n_tiles = tl.num_programs(0)
    if SCHEDULE != 0:
        if HEAVY_LAST:
            tile = n_tiles - 1 - tile
    return tile, bh


@triton.jit
def _attn_fwd_tiles(acc, l_i, m_i, q, K, V, stride_kt, stride_kd, stride_vt, stride_vd,
                    lo, hi, offs_m, offs_d, T_Q, T_K, qk_scale,
                    CAUSAL: tl.constexpr, MASKED: tl.constexpr, BLOCK_N: tl.constexpr,
                    DOT_PRECISION: tl.constexpr):
    """Online-softmax update of (acc, l_i, m_i) with the key tiles starting at lo, lo+BLOCK_N, .. < hi."""
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k_ptrs = K + cols[:, None] * stride_kt + offs_d[None, :] * stride_kd
        v_ptrs = V + cols[:, None] * stride_vt + offs_d[None, :] * stride_vd
        if MASKED:
            k = tl.load(k_ptrs, mask=cols[:, None] < T_K, other=0.0)
            v = tl.load(v_ptrs, mask=cols[:, None] < T_K, other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # base-2 scores
        if MASKED:
            keep = cols[None, :] < T_K
            if CAUSAL:
                keep = keep & (cols[None, :] <= offs_m[:, None] + (T_K - T_Q))
            s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        if MASKED and CAUSAL:
            # A row that has seen no key yet (only when Tq > Tk) has m_new = -inf; subtracting 0
            # instead keeps alpha and P at exact zeros rather than NaN = exp2(-inf - -inf).
            m_sub = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            m_sub = m_new
        alpha = tl.math.exp2(m_i - m_sub)
        p = tl.math.exp2(s - m_sub[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attn_fwd(Q, K, V, O, LSE,
              stride_qb, stride_qh, stride_qt, stride_qd,
              stride_kb, stride_kh, stride_kt, stride_kd,
              stride_vb, stride_vh, stride_vt, stride_vd,
              stride_ob, stride_oh, stride_ot, stride_od,
              H, T_Q, T_K, qk_scale,
              CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
              BLOCK_N: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """O and LSE2 for queries [start_m, start_m + BLOCK_M) of one (batch, head); grid (Tq tiles, B*H)."""
    _attn_fwd_body(Q, K, V, O, LSE,
                   stride_qb, stride_qh, stride_qt, stride_qd,
                   stride_kb, stride_kh, stride_kt, stride_kd,
                   stride_vb, stride_vh, stride_vt, stride_vd,
                   stride_ob, stride_oh, stride_ot, stride_od,
                   H, T_Q, T_K, qk_scale,
                   tl.program_id(0), tl.program_id(1),
                   CAUSAL, HEAD_DIM, BLOCK_M, BLOCK_N, DOT_PRECISION)


@triton.jit
def _attn_fwd_scheduled(Q, K, V, O, LSE,
                        stride_qb, stride_qh, stride_qt, stride_qd,
                        stride_kb, stride_kh, stride_kt, stride_kd,
                        stride_vb, stride_vh, stride_vt, stride_vd,
                        stride_ob, stride_oh, stride_ot, stride_od,
                        H, T_Q, T_K, qk_scale,
                        CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                        BLOCK_N: tl.constexpr, DOT_PRECISION: tl.constexpr,
                        SCHEDULE: tl.constexpr):
    """_attn_fwd with the query tiles launched in the order SCHEDULE says (see _program_tile)."""
    tile, bh = _program_tile(SCHEDULE, True)
    _attn_fwd_body(Q, K, V, O, LSE,
                   stride_qb, stride_qh, stride_qt, stride_qd,
                   stride_kb, stride_kh, stride_kt, stride_kd,
                   stride_vb, stride_vh, stride_vt, stride_vd,
                   stride_ob, stride_oh, stride_ot, stride_od,
                   H, T_Q, T_K, qk_scale,
                   tile, bh, CAUSAL, HEAD_DIM, BLOCK_M, BLOCK_N, DOT_PRECISION)


@triton.jit
def _attn_fwd_body(Q, K, V, O, LSE,
                   stride_qb, stride_qh, stride_qt, stride_qd,
                   stride_kb, stride_kh, stride_kt, stride_kd,
                   stride_vb, stride_vh, stride_vt, stride_vd,
                   stride_ob, stride_oh, stride_ot, stride_od,
                   H, T_Q, T_K, qk_scale,
                   tile, bh,
                   CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, DOT_PRECISION: tl.constexpr):
    start_m = tile * BLOCK_M
    b = (bh // H).to(tl.int64)  # int64: B*H*T*D may exceed 2^31 elements
    h = (bh % H).to(tl.int64)
    Q += b * stride_qb + h * stride_qh
    K += b * stride_kb + h * stride_kh
    V += b * stride_vb + h * stride_vh
    O += b * stride_ob + h * stride_oh

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < T_Q
    q = tl.load(Q + offs_m[:, None] * stride_qt + offs_d[None, :] * stride_qd,
                mask=row_ok[:, None], other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    full_end, hi = _causal_key_range(start_m, T_Q, T_K, CAUSAL, BLOCK_M, BLOCK_N)
    acc, l_i, m_i = _attn_fwd_tiles(acc, l_i, m_i, q, K, V, stride_kt, stride_kd, stride_vt,
                                    stride_vd, 0, full_end, offs_m, offs_d, T_Q, T_K, qk_scale,
                                    CAUSAL, False, BLOCK_N, DOT_PRECISION)
    acc, l_i, m_i = _attn_fwd_tiles(acc, l_i, m_i, q, K, V, stride_kt, stride_kd, stride_vt,
                                    stride_vd, full_end, hi, offs_m, offs_d, T_Q, T_K, qk_scale,
                                    CAUSAL, True, BLOCK_N, DOT_PRECISION)

    # A row with no visible key has l = 0: its output is 0 and its LSE2 is +inf, which makes the
    # backward's P = exp2(S2 - LSE2) exactly 0 for it.
    seen = l_i > 0.0
    out = acc / tl.where(seen, l_i, 1.0)[:, None]
    lse2 = tl.where(seen, m_i + tl.math.log2(tl.where(seen, l_i, 1.0)), float("inf"))
    tl.store(O + offs_m[:, None] * stride_ot + offs_d[None, :] * stride_od,
             out.to(O.dtype.element_ty), mask=row_ok[:, None])
    tl.store(LSE + bh.to(tl.int64) * T_Q + offs_m, lse2, mask=row_ok)


# ----------------------------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------------------------

@triton.jit
def _attn_bwd_preprocess(O, DO, DELTA,
                         stride_ob, stride_oh, stride_ot, stride_od,
                         stride_dob, stride_doh, stride_dot, stride_dod,
                         H, T_Q,
                         HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr):
    """Delta = rowsum(dO * O) in fp32 for BLOCK_M query rows of one (batch, head)."""
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m[:, None] < T_Q
    o = tl.load(O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_ot
                + offs_d[None, :] * stride_od, mask=row_ok, other=0.0)
    do = tl.load(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dot
                 + offs_d[None, :] * stride_dod, mask=row_ok, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + bh.to(tl.int64) * T_Q + offs_m, delta, mask=offs_m < T_Q)


@triton.jit
def _attn_bwd_dkdv_tiles(dk, dv, k, v, Q, DO, LSE, DELTA,
                         stride_qt, stride_qd, stride_dot, stride_dod,
                         lo, hi, offs_n, offs_d, T_Q, T_K, qk_scale,
                         MASKED: tl.constexpr, BLOCK_M: tl.constexpr,
                         DOT_PRECISION: tl.constexpr,
                         DQ, stride_dqt, stride_dqd, sm_scale, ATOMIC_DQ: tl.constexpr):
    """Add to dK, dV of one key tile the query tiles starting at lo, lo+BLOCK_M, .. < hi.

    Works on transposed tiles (keys x queries) so that P^T and dS^T come out directly:
    S2^T = K Q^T, dV += P^T dO, dP^T = V dO^T, dK += dS^T Q (scaled by s once at the end).
    ATOMIC_DQ: also dQ_rows += s * (dS^T)^T K, added atomically to the fp32 buffer DQ (other key
    tiles add to the same rows). Keys past T_K load as k = 0 and so add nothing to dQ."""
    for start_m in range(lo, hi, BLOCK_M):
        rows = start_m + tl.arange(0, BLOCK_M)
        row_ok = rows < T_Q
        # Rows past T_Q load as q = dO = 0, Delta = 0, LSE2 = +inf: they add exactly nothing.
        q = tl.load(Q + rows[:, None] * stride_qt + offs_d[None, :] * stride_qd,
                    mask=row_ok[:, None], other=0.0)
        do = tl.load(DO + rows[:, None] * stride_dot + offs_d[None, :] * stride_dod,
                     mask=row_ok[:, None], other=0.0)
        lse2 = tl.load(LSE + rows, mask=row_ok, other=float("inf"))
        delta = tl.load(DELTA + rows, mask=row_ok, other=0.0)
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale
        p_t = tl.math.exp2(s_t - lse2[None, :])
        if MASKED:  # causal: key j is visible to query i iff j <= i + (Tk - Tq)
            p_t = tl.where(offs_n[:, None] <= rows[None, :] + (T_K - T_Q), p_t, 0.0)
        dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=DOT_PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=DOT_PRECISION)
        if ATOMIC_DQ:
            dq = tl.dot(tl.trans(ds_t.to(k.dtype)), k, input_precision=DOT_PRECISION) * sm_scale
            tl.atomic_add(DQ + rows[:, None] * stride_dqt + offs_d[None, :] * stride_dqd, dq,
                          mask=row_ok[:, None], sem="relaxed")
    return dk, dv


@triton.jit
def _attn_bwd_dkdv(Q, K, V, DO, DK, DV, LSE, DELTA,
                   stride_qb, stride_qh, stride_qt, stride_qd,
                   stride_kb, stride_kh, stride_kt, stride_kd,
                   stride_vb, stride_vh, stride_vt, stride_vd,
                   stride_dob, stride_doh, stride_dot, stride_dod,
                   stride_dkb, stride_dkh, stride_dkt, stride_dkd,
                   stride_dvb, stride_dvh, stride_dvt, stride_dvd,
                   H, T_Q, T_K, sm_scale, qk_scale,
                   CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """dK, dV for keys [start_n, start_n + BLOCK_N) of one (batch, head); grid (Tk tiles, B*H)."""
    _attn_bwd_dkdv_body(Q, K, V, DO, DK, DV, LSE, DELTA,
                        stride_qb, stride_qh, stride_qt, stride_qd,
                        stride_kb, stride_kh, stride_kt, stride_kd,
                        stride_vb, stride_vh, stride_vt, stride_vd,
                        stride_dob, stride_doh, stride_dot, stride_dod,
                        stride_dkb, stride_dkh, stride_dkt, stride_dkd,
                        stride_dvb, stride_dvh, stride_dvt, stride_dvd,
                        H, T_Q, T_K, sm_scale, qk_scale,
                        Q, 0, 0, 0, 0,  # no dQ here: the separate dQ kernel computes it
                        tl.program_id(0), tl.program_id(1),
                        CAUSAL, HEAD_DIM, BLOCK_M, BLOCK_N, DOT_PRECISION, False)


@triton.jit
def _attn_bwd_dkdv_scheduled(Q, K, V, DO, DK, DV, LSE, DELTA,
                             stride_qb, stride_qh, stride_qt, stride_qd,
                             stride_kb, stride_kh, stride_kt, stride_kd,
                             stride_vb, stride_vh, stride_vt, stride_vd,
                             stride_dob, stride_doh, stride_dot, stride_dod,
                             stride_dkb, stride_dkh, stride_dkt, stride_dkd,
                             stride_dvb, stride_dvh, stride_dvt, stride_dvd,
                             H, T_Q, T_K, sm_scale, qk_scale,
                             CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr,
                             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                             DOT_PRECISION: tl.constexpr, SCHEDULE: tl.constexpr):
    """_attn_bwd_dkdv with the key tiles launched in the order SCHEDULE says. Causal: the FIRST
    key tile is the heaviest (every query sees key 0), so heavy-first is the natural order."""
    tile, bh = _program_tile(SCHEDULE, False)
    _attn_bwd_dkdv_body(Q, K, V, DO, DK, DV, LSE, DELTA,
                        stride_qb, stride_qh, stride_qt, stride_qd,
                        stride_kb, stride_kh, stride_kt, stride_kd,
                        stride_vb, stride_vh, stride_vt, stride_vd,
                        stride_dob, stride_doh, stride_dot, stride_dod,
                        stride_dkb, stride_dkh, stride_dkt, stride_dkd,
                        stride_dvb, stride_dvh, stride_dvt, stride_dvd,
                        H, T_Q, T_K, sm_scale, qk_scale,
                        Q, 0, 0, 0, 0,
                        tile, bh, CAUSAL, HEAD_DIM, BLOCK_M, BLOCK_N, DOT_PRECISION, False)


@triton.jit
def _attn_bwd_dkdv_atomic_dq(Q, K, V, DO, DK, DV, LSE, DELTA,
                             stride_qb, stride_qh, stride_qt, stride_qd,
                             stride_kb, stride_kh, stride_kt, stride_kd,
                             stride_vb, stride_vh, stride_vt, stride_vd,
                             stride_dob, stride_doh, stride_dot, stride_dod,
                             stride_dkb, stride_dkh, stride_dkt, stride_dkd,
                             stride_dvb, stride_dvh, stride_dvt, stride_dvd,
                             H, T_Q, T_K, sm_scale, qk_scale,
                             DQ, stride_dqb, stride_dqh, stride_dqt, stride_dqd,
                             CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr,
                             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                             DOT_PRECISION: tl.constexpr, SCHEDULE: tl.constexpr):
    """dK, dV as _attn_bwd_dkdv, and dQ in the same pass: each key tile adds its share s * dS K to
    the fp32 buffer DQ with atomics (5 matmuls per tile pair instead of the 7 of the two-kernel
    backward, which recomputes S and dP for dQ). The order of those adds varies from run to run,
    so dQ is not bit-reproducible: only with attention(..., deterministic=False)."""
    tile, bh = _program_tile(SCHEDULE, False)
    _attn_bwd_dkdv_body(Q, K, V, DO, DK, DV, LSE, DELTA,
                        stride_qb, stride_qh, stride_qt, stride_qd,
                        stride_kb, stride_kh, stride_kt, stride_kd,
                        stride_vb, stride_vh, stride_vt, stride_vd,
                        stride_dob, stride_doh, stride_dot, stride_dod,
                        stride_dkb, stride_dkh, stride_dkt, stride_dkd,
                        stride_dvb, stride_dvh, stride_dvt, stride_dvd,
                        H, T_Q, T_K, sm_scale, qk_scale,
                        DQ, stride_dqb, stride_dqh, stride_dqt, stride_dqd,
                        tile, bh, CAUSAL, HEAD_DIM, BLOCK_M, BLOCK_N, DOT_PRECISION, True)


@triton.jit
def _attn_bwd_dkdv_body(Q, K, V, DO, DK, DV, LSE, DELTA,
                        stride_qb, stride_qh, stride_qt, stride_qd,
                        stride_kb, stride_kh, stride_kt, stride_kd,
                        stride_vb, stride_vh, stride_vt, stride_vd,
                        stride_dob, stride_doh, stride_dot, stride_dod,
                        stride_dkb, stride_dkh, stride_dkt, stride_dkd,
                        stride_dvb, stride_dvh, stride_dvt, stride_dvd,
                        H, T_Q, T_K, sm_scale, qk_scale,
                        DQ, stride_dqb, stride_dqh, stride_dqt, stride_dqd,
                        tile, bh,
                        CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                        BLOCK_N: tl.constexpr, DOT_PRECISION: tl.constexpr,
                        ATOMIC_DQ: tl.constexpr):
    start_n = tile * BLOCK_N
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    Q += b * stride_qb + h * stride_qh
    K += b * stride_kb + h * stride_kh
    V += b * stride_vb + h * stride_vh
    DO += b * stride_dob + h * stride_doh
    LSE += bh.to(tl.int64) * T_Q
    DELTA += bh.to(tl.int64) * T_Q
    if ATOMIC_DQ:
        DQ += b * stride_dqb + h * stride_dqh

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    key_ok = offs_n[:, None] < T_K
    # Keys past T_K load as 0; their dK, dV rows are computed but never stored, and a key row
    # only ever feeds its own dK, dV row.
    k = tl.load(K + offs_n[:, None] * stride_kt + offs_d[None, :] * stride_kd, mask=key_ok, other=0.0)
    v = tl.load(V + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd, mask=key_ok, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)

    if CAUSAL:
        diag = T_K - T_Q
        # Query i sees key j iff i >= j - diag. The first query to see key start_n is start_n - diag;
        # from start_n + BLOCK_N - 1 - diag on, a query sees the whole tile (no mask).
        lo = tl.maximum(start_n - diag, 0) // BLOCK_M * BLOCK_M
        full_start = tl.cdiv(tl.maximum(start_n + BLOCK_N - 1 - diag, 0), BLOCK_M) * BLOCK_M
        dk, dv = _attn_bwd_dkdv_tiles(dk, dv, k, v, Q, DO, LSE, DELTA, stride_qt, stride_qd,
                                      stride_dot, stride_dod, lo, tl.minimum(full_start, T_Q),
                                      offs_n, offs_d, T_Q, T_K, qk_scale, True, BLOCK_M,
                                      DOT_PRECISION, DQ, stride_dqt, stride_dqd, sm_scale, ATOMIC_DQ)
    else:
        full_start = 0
    dk, dv = _attn_bwd_dkdv_tiles(dk, dv, k, v, Q, DO, LSE, DELTA, stride_qt, stride_qd,
                                  stride_dot, stride_dod, full_start, T_Q, offs_n, offs_d, T_Q,
                                  T_K, qk_scale, False, BLOCK_M, DOT_PRECISION,
                                  DQ, stride_dqt, stride_dqd, sm_scale, ATOMIC_DQ)

    dk = dk * sm_scale
    dk_ptrs = (DK + b * stride_dkb + h * stride_dkh
               + offs_n[:, None] * stride_dkt + offs_d[None, :] * stride_dkd)
    dv_ptrs = (DV + b * stride_dvb + h * stride_dvh
               + offs_n[:, None] * stride_dvt + offs_d[None, :] * stride_dvd)
    tl.store(dk_ptrs, dk.to(DK.dtype.element_ty), mask=key_ok)
    tl.store(dv_ptrs, dv.to(DV.dtype.element_ty), mask=key_ok)


@triton.jit
def _attn_bwd_dq_tiles(dq, q, do, lse2, delta, K, V, stride_kt, stride_kd, stride_vt, stride_vd,
                       lo, hi, offs_m, offs_d, T_Q, T_K, qk_scale,
                       CAUSAL: tl.constexpr, MASKED: tl.constexpr, BLOCK_N: tl.constexpr,
                       DOT_PRECISION: tl.constexpr):
    """Add to dQ of one query tile the key tiles starting at lo, lo+BLOCK_N, .. < hi (dQ += dS K)."""
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k_ptrs = K + cols[:, None] * stride_kt + offs_d[None, :] * stride_kd
        v_ptrs = V + cols[:, None] * stride_vt + offs_d[None, :] * stride_vd
        if MASKED:
            k = tl.load(k_ptrs, mask=cols[:, None] < T_K, other=0.0)
            v = tl.load(v_ptrs, mask=cols[:, None] < T_K, other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
        p = tl.math.exp2(s - lse2[:, None])
        if MASKED:
            keep = cols[None, :] < T_K
            if CAUSAL:
                keep = keep & (cols[None, :] <= offs_m[:, None] + (T_K - T_Q))
            p = tl.where(keep, p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PRECISION)
    return dq


@triton.jit
def _attn_bwd_dq(Q, K, V, DO, DQ, LSE, DELTA,
                 stride_qb, stride_qh, stride_qt, stride_qd,
                 stride_kb, stride_kh, stride_kt, stride_kd,
                 stride_vb, stride_vh, stride_vt, stride_vd,
                 stride_dob, stride_doh, stride_dot, stride_dod,
                 stride_dqb, stride_dqh, stride_dqt, stride_dqd,
                 H, T_Q, T_K, sm_scale, qk_scale,
                 CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_N: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """dQ for queries [start_m, start_m + BLOCK_M) of one (batch, head); grid (Tq tiles, B*H)."""
    _attn_bwd_dq_body(Q, K, V, DO, DQ, LSE, DELTA,
                      stride_qb, stride_qh, stride_qt, stride_qd,
                      stride_kb, stride_kh, stride_kt, stride_kd,
                      stride_vb, stride_vh, stride_vt, stride_vd,
                      stride_dob, stride_doh, stride_dot, stride_dod,
                      stride_dqb, stride_dqh, stride_dqt, stride_dqd,
                      H, T_Q, T_K, sm_scale, qk_scale,
                      tl.program_id(0), tl.program_id(1),
                      CAUSAL, HEAD_DIM, BLOCK_M, BLOCK_N, DOT_PRECISION)


@triton.jit
def _attn_bwd_dq_scheduled(Q, K, V, DO, DQ, LSE, DELTA,
                           stride_qb, stride_qh, stride_qt, stride_qd,
                           stride_kb, stride_kh, stride_kt, stride_kd,
                           stride_vb, stride_vh, stride_vt, stride_vd,
                           stride_dob, stride_doh, stride_dot, stride_dod,
                           stride_dqb, stride_dqh, stride_dqt, stride_dqd,
                           H, T_Q, T_K, sm_scale, qk_scale,
                           CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                           BLOCK_N: tl.constexpr, DOT_PRECISION: tl.constexpr,
                           SCHEDULE: tl.constexpr):
    """_attn_bwd_dq with the query tiles launched in the order SCHEDULE says (see _program_tile)."""
    tile, bh = _program_tile(SCHEDULE, True)
    _attn_bwd_dq_body(Q, K, V, DO, DQ, LSE, DELTA,
                      stride_qb, stride_qh, stride_qt, stride_qd,
                      stride_kb, stride_kh, stride_kt, stride_kd,
                      stride_vb, stride_vh, stride_vt, stride_vd,
                      stride_dob, stride_doh, stride_dot, stride_dod,
                      stride_dqb, stride_dqh, stride_dqt, stride_dqd,
                      H, T_Q, T_K, sm_scale, qk_scale,
                      tile, bh, CAUSAL, HEAD_DIM, BLOCK_M, BLOCK_N, DOT_PRECISION)


@triton.jit
def _attn_bwd_dq_body(Q, K, V, DO, DQ, LSE, DELTA,
                      stride_qb, stride_qh, stride_qt, stride_qd,
                      stride_kb, stride_kh, stride_kt, stride_kd,
                      stride_vb, stride_vh, stride_vt, stride_vd,
                      stride_dob, stride_doh, stride_dot, stride_dod,
                      stride_dqb, stride_dqh, stride_dqt, stride_dqd,
                      H, T_Q, T_K, sm_scale, qk_scale,
                      tile, bh,
                      CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr, DOT_PRECISION: tl.constexpr):
    start_m = tile * BLOCK_M
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    K += b * stride_kb + h * stride_kh
    V += b * stride_vb + h * stride_vh

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < T_Q
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qt
                + offs_d[None, :] * stride_qd, mask=row_ok[:, None], other=0.0)
    do = tl.load(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dot
                 + offs_d[None, :] * stride_dod, mask=row_ok[:, None], other=0.0)
    lse2 = tl.load(LSE + bh.to(tl.int64) * T_Q + offs_m, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + bh.to(tl.int64) * T_Q + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    full_end, hi = _causal_key_range(start_m, T_Q, T_K, CAUSAL, BLOCK_M, BLOCK_N)
    dq = _attn_bwd_dq_tiles(dq, q, do, lse2, delta, K, V, stride_kt, stride_kd, stride_vt,
                            stride_vd, 0, full_end, offs_m, offs_d, T_Q, T_K, qk_scale,
                            CAUSAL, False, BLOCK_N, DOT_PRECISION)
    dq = _attn_bwd_dq_tiles(dq, q, do, lse2, delta, K, V, stride_kt, stride_kd, stride_vt,
                            stride_vd, full_end, hi, offs_m, offs_d, T_Q, T_K, qk_scale,
                            CAUSAL, True, BLOCK_N, DOT_PRECISION)
    dq = dq * sm_scale
    tl.store(DQ + b * stride_dqb + h * stride_dqh + offs_m[:, None] * stride_dqt
             + offs_d[None, :] * stride_dqd, dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])


# ----------------------------------------------------------------------------------------------
# Launch configurations
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TileConfig:
    block_m: int      # query rows per tile
    block_n: int      # key rows per tile
    num_warps: int
    num_stages: int   # software-pipelining depth of the tile loop (cp.async / TMA prefetch)


@dataclasses.dataclass(frozen=True)
class AttentionConfigs:
    forward: TileConfig
    dkdv: TileConfig   # one program per block_n keys, looping over block_m queries
    dq: TileConfig     # one program per block_m queries, looping over block_n keys
    preprocess_block_m: int = 64
    schedule: str = "natural"  # launch order of the tiles: a key of SCHEDULES
    # dK/dV kernel that also adds dQ with atomics (deterministic=False); None: the dkdv tile
    dkdv_atomic: TileConfig | None = None


# The launch tables. Why these numbers (sm_80 = A100: 108 SMs, 164 KB shared memory per SM, 64K
# registers; sm_90 = H100/H200: 132 SMs, 228 KB shared, 64K registers). Register counts are what
# the compile gate measured (triton 3.9's compiler, causal, bf16):
# - Forward: 128 query rows per program amortise each K/V tile over many rows (FlashAttention-2's
#   choice). The fp32 accumulator (128 x D) and the score tile (128 x BLOCK_N) live in registers,
#   so D = 128 steps over 64 keys (sm_90 181 regs, sm_80 207), while D <= 64 affords 128 keys on
#   sm_90 (220 regs; wgmma reads its operands from shared memory). sm_80's mma.sync holds more in
#   registers: 64 keys with 8 warps (155 regs; 4 warps hit the 255 cap). 3 stages prefetch the
#   next K/V tiles while the tensor cores work (shared memory <= 132 KB on sm_90, 98 KB on sm_80).
# - dK/dV: the program holds K, V and two fp32 accumulators (BLOCK_N x D each) for its whole
#   life, so its key tile is the large side and the query tile streaming past is small (FA2 and
#   the Triton tutorial: 128 keys x 32-64 queries). sm_90: 64 x 128 for D <= 64 (215 regs),
#   64 x 64 for D = 128 (226); sm_80: 32 x 128 (179) and 32 x 64 (190). With 4 warps all of these
#   spill, hence 8. sm_80 D = 64 uses 2 stages: with 3, triton 3.6's compiler spills 8 bytes in
#   the ragged-length variant (255 regs), where 3.9 needs 179.
# - dQ: the mirror image: 128 queries (held with dO and the fp32 dQ accumulator) over 64 keys for
#   D <= 64 (136 / 184 regs), 32 keys for D = 128 (145 / 194).
# - fp32 inputs use exact fp32 dots (input_precision="ieee", no TF32: the same precision as
#   PyTorch's default fp32 matmul), which run on the CUDA cores; only small tiles avoid spills.
# Every entry is proven by tests/test_attention.py's compile gate (sm_80 and sm_90, aligned and
# ragged lengths: no spills, shared memory within the card), run with triton 3.9 and 3.6. Other GPUs take the sm_80 table
# (every entry needs <= 98 KB of shared memory, so sm_86/89/120 fit; not gated). Not autotuned:
# the tile shape sets the order of the sums, so a timing-based pick would make results differ
# between runs and machines; a fixed table keeps the kernels deterministic. Tuning them needs a
# GPU: `python -m bench.attention_cases --sweep` times the candidates.
_TABLE_SM90_16BIT = {
    # head dim: (forward, dkdv, dq)
    16: (TileConfig(128, 128, 8, 3), TileConfig(64, 128, 8, 3), TileConfig(128, 64, 8, 3)),
    32: (TileConfig(128, 128, 8, 3), TileConfig(64, 128, 8, 3), TileConfig(128, 64, 8, 3)),
    64: (TileConfig(128, 128, 8, 3), TileConfig(64, 128, 8, 3), TileConfig(128, 64, 8, 3)),
    128: (TileConfig(128, 64, 8, 3), TileConfig(64, 64, 8, 3), TileConfig(128, 32, 8, 3)),
}
_TABLE_SM80_16BIT = {
    16: (TileConfig(128, 64, 8, 3), TileConfig(32, 128, 8, 3), TileConfig(128, 64, 8, 3)),
    32: (TileConfig(128, 64, 8, 3), TileConfig(32, 128, 8, 3), TileConfig(128, 64, 8, 3)),
    64: (TileConfig(128, 64, 8, 3), TileConfig(32, 128, 8, 2), TileConfig(128, 64, 8, 3)),
    128: (TileConfig(128, 64, 8, 3), TileConfig(32, 64, 8, 3), TileConfig(128, 32, 8, 3)),
}
# deterministic=False: the dK/dV kernel that also adds dQ (one more matmul and a BLOCK_M x D fp32
# product live per step) needs a smaller query tile than dkdv to stay clear of spills; the compile
# gate (tests/test_attention_compile_gate.py, triton 3.9 and 3.6) measured on sm_90 / sm_80:
# D = 128 32 x 64 with 8 warps, 2 stages (214 / 234 regs); D <= 64 32 x 128, 8 warps, 3 stages
# (185 / 250). 64 x 64 (D = 128, sm_90) and 4-warp tiles at D = 128 spill.
_ATOMIC_SM90_16BIT = {16: TileConfig(32, 128, 8, 3), 32: TileConfig(32, 128, 8, 3),
                      64: TileConfig(32, 128, 8, 3), 128: TileConfig(32, 64, 8, 2)}
_ATOMIC_SM80_16BIT = {16: TileConfig(32, 128, 8, 3), 32: TileConfig(32, 128, 8, 3),
                      64: TileConfig(32, 128, 8, 3), 128: TileConfig(32, 64, 8, 2)}
# fp32 (FMA dots keep whole operand tiles in registers; TF32x3 spilled worse): the exact path,
# not the fast one.
_FP32 = (TileConfig(32, 16, 8, 2), TileConfig(16, 32, 8, 2), TileConfig(32, 16, 8, 2))
# Under TRITON_INTERPRET=1 each program runs in Python, so cost is per tile visited; small tiles
# (with BLOCK_M != BLOCK_N so the diagonal straddles tiles) still exercise every code path of the
# GPU configs (unmasked, diagonal, skipped and ragged tiles) on the short sequences tests use.
_INTERPRETER = AttentionConfigs(TileConfig(32, 16, 4, 1), TileConfig(16, 32, 4, 1),
                                TileConfig(32, 16, 4, 1), preprocess_block_m=32)


# ----------------------------------------------------------------------------------------------
# Decisions measured on a GPU: kernels/tuned.json
# ----------------------------------------------------------------------------------------------
# bench/gpu_suite.sh's sweep (python -m bench.attention_cases --sweep --write-tuned F) times the
# candidate tiles and launch orders on the card and writes the winners; committing that file as
# kernels/tuned.json applies them. Without the file every choice is the table above. Format:
#   {"attention": {"sm_90": {"128": {"forward": [128, 64, 8, 3], "dkdv": [64, 64, 8, 3],
#                                    "dq": [128, 32, 8, 3], "schedule": "reverse"}, ...}},
#    "measured": {... the card, versions and timings the decision came from ...}}
# Each entry overrides only the 16-bit (bf16/fp16) launches of that exact capability and head dim;
# any key may be left out. KERNELS_TUNED=<path> reads another file, KERNELS_TUNED=off none.
# KERNELS_ATTENTION_SCHEDULE=natural|reverse|longest_first overrides the launch order everywhere
# (also under the interpreter), for A/B runs and tests. A decision file keeps the kernels
# deterministic: it is a fixed table per card, not a timing-based choice at run time.
TUNED_PATH = Path(__file__).with_name("tuned.json")


@functools.lru_cache(maxsize=8)
def _load_tuned(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        warnings.warn(f"kernels: ignoring the decisions file {path}: {e}")
        return {}
    return data if isinstance(data, dict) else {}


def _tile(value, default: TileConfig) -> TileConfig:
    """A [block_m, block_n, num_warps, num_stages] list from the decisions file, checked."""
    try:
        bm, bn, warps, stages = (int(x) for x in value)
    except (TypeError, ValueError):
        return default
    pow2 = all(x >= 16 and x & (x - 1) == 0 for x in (bm, bn)) and warps in (1, 2, 4, 8, 16)
    return TileConfig(bm, bn, warps, stages) if pow2 and 1 <= stages <= 8 else default


def tuned_entry(capability: tuple[int, int], head_dim: int) -> dict:
    """The decisions file's entry for this capability and head dim ({} when none)."""
    path = os.environ.get("KERNELS_TUNED", "")
    if path.lower() in ("off", "0", "none"):
        return {}
    entry = _load_tuned(path or str(TUNED_PATH))
    for key in ("attention", f"sm_{capability[0]}{capability[1]}", str(head_dim)):
        entry = entry.get(key, {}) if isinstance(entry, dict) else {}
    return entry if isinstance(entry, dict) else {}


def _schedule_override(cfgs: AttentionConfigs) -> AttentionConfigs:
    forced = os.environ.get("KERNELS_ATTENTION_SCHEDULE", "")
    if not forced:
        return cfgs
    if forced not in SCHEDULES:
        raise ValueError(f"KERNELS_ATTENTION_SCHEDULE={forced!r}: use one of {', '.join(SCHEDULES)}")
    return dataclasses.replace(cfgs, schedule=forced)


def pick_configs(capability: tuple[int, int] | None, head_dim: int,
                 dtype: torch.dtype) -> AttentionConfigs:
    """The launch configuration for a GPU of `capability` (None: Triton's CPU interpreter)."""
    if capability is None:
        return _schedule_override(_INTERPRETER)
    if dtype == torch.float32:
        return _schedule_override(AttentionConfigs(*_FP32))
    if capability[0] in (9, 10):  # H100/H200, B200: 228 KB of shared memory per SM
        table, atomic = _TABLE_SM90_16BIT, _ATOMIC_SM90_16BIT
    else:
        table, atomic = _TABLE_SM80_16BIT, _ATOMIC_SM80_16BIT
    forward, dkdv, dq = table[head_dim]
    entry = tuned_entry(capability, head_dim)
    schedule = entry.get("schedule", "natural")
    cfgs = AttentionConfigs(_tile(entry.get("forward"), forward), _tile(entry.get("dkdv"), dkdv),
                            _tile(entry.get("dq"), dq),
                            schedule=schedule if schedule in SCHEDULES else "natural",
                            dkdv_atomic=_tile(entry.get("dkdv_atomic"), atomic[head_dim]))
    return _schedule_override(cfgs)


def _configs_for(q: torch.Tensor) -> AttentionConfigs:
    capability = torch.cuda.get_device_capability(q.device) if q.is_cuda else None
    return pick_configs(capability, q.shape[-1], q.dtype)


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32: exact fp32 products (TF32 would lose 13 mantissa bits); fp16/bf16 ignore the setting.
    return "ieee" if dtype == torch.float32 else "tf32"


# ----------------------------------------------------------------------------------------------
# Launchers and autograd
# ----------------------------------------------------------------------------------------------

def _flash_forward_impl(q, k, v, causal: bool, scale: float, o: torch.Tensor | None = None):
    """o: where to write the output, any (B, H, T_Q, D) view with unit stride along D (default: a
    new contiguous tensor); the kernel addresses it through its strides."""
    B, H, T_Q, D = q.shape
    T_K = k.shape[2]
    if o is None:
        o = torch.empty((B, H, T_Q, D), dtype=q.dtype, device=q.device)
    lse2 = torch.empty((B, H, T_Q), dtype=torch.float32, device=q.device)
    if o.numel() == 0:
        return o, lse2
    cfgs = _configs_for(q)
    cfg = cfgs.forward
    _launch(_attn_fwd, _attn_fwd_scheduled, cfgs.schedule, triton.cdiv(T_Q, cfg.block_m), B * H,
            (q, k, v, o, lse2, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
             H, T_Q, T_K, scale * LOG2_E),
            dict(CAUSAL=causal, HEAD_DIM=D, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
                 DOT_PRECISION=_dot_precision(q.dtype),
                 num_warps=cfg.num_warps, num_stages=cfg.num_stages))
    return o, lse2


def _launch(natural_kernel, scheduled_kernel, schedule: str, n_tiles: int, n_heads: int, args,
            kwargs) -> None:
    """Launch over (n_tiles, B*H) in the natural order (the original kernel, unchanged) or over the
    grid SCHEDULES[schedule] needs (the _scheduled twin, same body, other program-id mapping).
    natural_kernel=None: the scheduled kernel serves the natural order too (SCHEDULE=0)."""
    code = SCHEDULES[schedule]
    if code == 2 and n_tiles > 65535:  # grid dimension 1 holds at most 65535 programs
        code = 1
    if code == 0 and natural_kernel is not None:
        natural_kernel[(n_tiles, n_heads)](*args, **kwargs)
    else:
        grid = (n_heads, n_tiles) if code == 2 else (n_tiles, n_heads)
        scheduled_kernel[grid](*args, **kwargs, SCHEDULE=code)


def _flash_backward_impl(do, q, k, v, o, lse2, causal: bool, scale: float, deterministic: bool = True,
                         grads: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
    """grads: (dq, dk, dv) views to write into, as `o` in the forward (default: new contiguous ones)."""
    B, H, T_Q, D = q.shape
    T_K = k.shape[2]
    if grads is None:
        dq = torch.empty_like(q, memory_format=torch.contiguous_format)
        dk = torch.empty_like(k, memory_format=torch.contiguous_format)
        dv = torch.empty_like(v, memory_format=torch.contiguous_format)
    else:
        dq, dk, dv = grads
    if T_Q == 0 or T_K == 0 or B * H == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    cfgs = _configs_for(q)
    precision = _dot_precision(q.dtype)
    delta = torch.empty((B, H, T_Q), dtype=torch.float32, device=q.device)
    _attn_bwd_preprocess[(triton.cdiv(T_Q, cfgs.preprocess_block_m), B * H)](
        o, do, delta, *o.stride(), *do.stride(), H, T_Q,
        HEAD_DIM=D, BLOCK_M=cfgs.preprocess_block_m, num_warps=4, num_stages=1)
    if not deterministic:
        # One kernel for dK, dV and dQ; dQ accumulates in fp32 with atomics (see the kernel).
        c = cfgs.dkdv_atomic or cfgs.dkdv
        dq_acc = torch.zeros((B, H, T_Q, D), dtype=torch.float32, device=q.device)
        _launch(None, _attn_bwd_dkdv_atomic_dq, cfgs.schedule, triton.cdiv(T_K, c.block_n), B * H,
                (q, k, v, do, dk, dv, lse2, delta,
                 *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride(), *dv.stride(),
                 H, T_Q, T_K, scale, scale * LOG2_E, dq_acc, *dq_acc.stride()),
                dict(CAUSAL=causal, HEAD_DIM=D, BLOCK_M=c.block_m, BLOCK_N=c.block_n,
                     DOT_PRECISION=precision, num_warps=c.num_warps, num_stages=c.num_stages))
        if grads is not None:
            dq.copy_(dq_acc)
            return dq, dk, dv
        return dq_acc if q.dtype == torch.float32 else dq_acc.to(q.dtype), dk, dv
    c = cfgs.dkdv
    _launch(_attn_bwd_dkdv, _attn_bwd_dkdv_scheduled, cfgs.schedule, triton.cdiv(T_K, c.block_n),
            B * H,
            (q, k, v, do, dk, dv, lse2, delta,
             *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride(), *dv.stride(),
             H, T_Q, T_K, scale, scale * LOG2_E),
            dict(CAUSAL=causal, HEAD_DIM=D, BLOCK_M=c.block_m, BLOCK_N=c.block_n,
                 DOT_PRECISION=precision, num_warps=c.num_warps, num_stages=c.num_stages))
    c = cfgs.dq
    _launch(_attn_bwd_dq, _attn_bwd_dq_scheduled, cfgs.schedule, triton.cdiv(T_Q, c.block_m), B * H,
            (q, k, v, do, dq, lse2, delta,
             *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dq.stride(),
             H, T_Q, T_K, scale, scale * LOG2_E),
            dict(CAUSAL=causal, HEAD_DIM=D, BLOCK_M=c.block_m, BLOCK_N=c.block_n,
                 DOT_PRECISION=precision, num_warps=c.num_warps, num_stages=c.num_stages))
    return dq, dk, dv


# Registered as torch custom ops so torch.compile treats each kernel launch as one opaque node
# (no graph break, no tracing into Triton) and autograd pairs the forward with its backward.
@torch.library.custom_op("text2sql::flash_attention_forward", mutates_args=())
def flash_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                            scale: float, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(O, LSE2): the attention output and the base-2 log-sum-exp of each query row's scores.
    `deterministic` only selects the backward (see attention())."""
    return _flash_forward_impl(q, k, v, causal, scale)


@flash_attention_forward.register_fake
def _(q, k, v, causal, scale, deterministic):
    B, H, T_Q, D = q.shape
    return q.new_empty((B, H, T_Q, D)), q.new_empty((B, H, T_Q), dtype=torch.float32)


@torch.library.custom_op("text2sql::flash_attention_backward", mutates_args=())
def flash_attention_backward(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             o: torch.Tensor, lse2: torch.Tensor, causal: bool,
                             scale: float, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dQ, dK, dV) given dO and the forward's inputs, output and LSE2."""
    return _flash_backward_impl(do, q, k, v, o, lse2, causal, scale, deterministic)


@flash_attention_backward.register_fake
def _(do, q, k, v, o, lse2, causal, scale, deterministic):
    return (torch.empty_like(q, memory_format=torch.contiguous_format),
            torch.empty_like(k, memory_format=torch.contiguous_format),
            torch.empty_like(v, memory_format=torch.contiguous_format))


def _setup_context(ctx, inputs, output):
    q, k, v, causal, scale, deterministic = inputs
    o, lse2 = output
    ctx.save_for_backward(q, k, v, o, lse2)
    ctx.causal, ctx.scale, ctx.deterministic = causal, scale, deterministic
    ctx.mark_non_differentiable(lse2)


def _backward(ctx, do, _dlse2):
    q, k, v, o, lse2 = ctx.saved_tensors
    dq, dk, dv = flash_attention_backward(do, q, k, v, o, lse2, ctx.causal, ctx.scale,
                                          ctx.deterministic)
    return dq, dk, dv, None, None, None


flash_attention_forward.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------------------------
# The packed layout a GPT block has: qkv (B, T, 3C) straight from the projection, output (B, T, C)
# straight into the next one. The kernels address q, k, v, o and the gradients through strides, so
# q = qkv[..., :C] seen as (B, H, T, D) needs no copy, the output is written in (B, T, H, D) order,
# and the backward writes dq, dk, dv into one (B, T, 3C) gradient. With the (B, H, T, D) op the model
# paid for a transpose copy of the output in the forward and for a transpose + concatenation of dq,
# dk, dv in the backward: 12 of those took 2.1 ms of a 35 ms GPT-2 124M step on an H200
# (bench/profile_gpu.py, bench/results/gpu-H200-20261128).
# ----------------------------------------------------------------------------------------------

def _scale_and_determinism(head_dim: int, scale, deterministic) -> tuple[float, bool]:
    """The softmax scale (1/sqrt(D) by default) and whether the backward stays deterministic
    (KERNELS_ATTENTION_DQ=atomic forces the atomic dQ), as attention() and attention_qkv() take them."""
    scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    return scale, bool(deterministic) and os.environ.get("KERNELS_ATTENTION_DQ", "") != "atomic"


def _qkv_views(qkv: torch.Tensor, n_head: int):
    """q, k, v as (B, H, T, D) views of the packed (B, T, 3C) tensor (no copy)."""
    B, T, C3 = qkv.shape
    t = qkv.view(B, T, 3, n_head, C3 // (3 * n_head))
    return tuple(t[:, :, i].transpose(1, 2) for i in range(3))


def _bthd_view(t: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, C) seen as (B, H, T, D)."""
    B, T, C = t.shape
    return t.view(B, T, n_head, C // n_head).transpose(1, 2)


@torch.library.custom_op("text2sql::flash_attention_qkv_forward", mutates_args=())
def flash_attention_qkv_forward(qkv: torch.Tensor, n_head: int, causal: bool, scale: float,
                                deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(O, LSE2) for the packed qkv (B, T, 3C): O is (B, T, C), heads side by side; LSE2 (B, H, T)."""
    B, T, C3 = qkv.shape
    o = torch.empty((B, T, C3 // 3), dtype=qkv.dtype, device=qkv.device)
    q, k, v = _qkv_views(qkv, n_head)
    _, lse2 = _flash_forward_impl(q, k, v, causal, scale, o=_bthd_view(o, n_head))
    return o, lse2


@flash_attention_qkv_forward.register_fake
def _(qkv, n_head, causal, scale, deterministic):
    B, T, C3 = qkv.shape
    return qkv.new_empty((B, T, C3 // 3)), qkv.new_empty((B, n_head, T), dtype=torch.float32)


@torch.library.custom_op("text2sql::flash_attention_qkv_backward", mutates_args=())
def flash_attention_qkv_backward(do: torch.Tensor, qkv: torch.Tensor, o: torch.Tensor, lse2: torch.Tensor,
                                 n_head: int, causal: bool, scale: float, deterministic: bool) -> torch.Tensor:
    """d(qkv) (B, T, 3C), written in place of the three gradients' concatenation."""
    dqkv = torch.empty(qkv.shape, dtype=qkv.dtype, device=qkv.device)
    q, k, v = _qkv_views(qkv, n_head)
    _flash_backward_impl(_bthd_view(do.contiguous(), n_head), q, k, v, _bthd_view(o, n_head), lse2,
                         causal, scale, deterministic, grads=_qkv_views(dqkv, n_head))
    return dqkv


@flash_attention_qkv_backward.register_fake
def _(do, qkv, o, lse2, n_head, causal, scale, deterministic):
    return qkv.new_empty(qkv.shape)


def _qkv_setup_context(ctx, inputs, output):
    qkv, n_head, causal, scale, deterministic = inputs
    o, lse2 = output
    ctx.save_for_backward(qkv, o, lse2)
    ctx.args = (n_head, causal, scale, deterministic)
    ctx.mark_non_differentiable(lse2)


def _qkv_backward(ctx, do, _dlse2):
    qkv, o, lse2 = ctx.saved_tensors
    return flash_attention_qkv_backward(do, qkv, o, lse2, *ctx.args), None, None, None, None


flash_attention_qkv_forward.register_autograd(_qkv_backward, setup_context=_qkv_setup_context)


LAYOUTS = ("split", "packed")


def attention_layout() -> str:
    """How a GPT block hands its attention q, k, v (KERNELS_ATTENTION_LAYOUT, read on every call):
    "split" (the default) cuts them into (B, H, T, D) views for attention() and copies the output
    back to (B, T, C); "packed" passes the projection's (B, T, 3C) output to attention_qkv().

    Packed stays off until a GPU run shows it whole: on one H200 (2026-11-28) it took 2.1 ms off the
    34-36 ms of GPU time of an eager GPT-2 124M step, but the suite's compiled GPT-2 124M warm-up with
    it did not finish in 175 s (75 s before) and left no log to say why."""
    value = os.environ.get("KERNELS_ATTENTION_LAYOUT", "split").strip().lower() or "split"
    if value not in LAYOUTS:
        raise ValueError(f"KERNELS_ATTENTION_LAYOUT={value!r} is not a layout; use one of {', '.join(LAYOUTS)}")
    return value


def attention_qkv(qkv, n_head: int, causal=True, scale=None, deterministic=True):
    """Attention over the packed projection output: qkv (B, T, 3C) holds q, k, v side by side, each
    n_head heads of C / n_head; returns (B, T, C), the heads side by side, ready for the output
    projection. The same function as attention() on q, k, v split and transposed to (B, H, T, D),
    with the output transposed back, but the Triton path makes none of those copies."""
    if qkv.dim() != 3 or qkv.shape[-1] % (3 * n_head):
        raise ValueError(f"attention_qkv expects (B, T, 3 * n_head * D); got {tuple(qkv.shape)} "
                         f"with n_head={n_head}")
    B, T, C3 = qkv.shape
    d = C3 // (3 * n_head)
    if use_triton(qkv) and qkv.dtype in SUPPORTED_DTYPES and d in SUPPORTED_HEAD_DIMS:
        scale, deterministic = _scale_and_determinism(d, scale, deterministic)
        return flash_attention_qkv_forward(qkv.contiguous(), n_head, bool(causal), scale, deterministic)[0]
    # PyTorch, or head dims the kernels take only zero-padded: split, attend, join
    q, k, v = (t.view(B, T, n_head, d).transpose(1, 2) for t in qkv.split(C3 // 3, dim=2))
    y = attention(q, k, v, causal=causal, scale=scale, deterministic=deterministic)
    return y.transpose(1, 2).contiguous().view(B, T, C3 // 3)


def _check_inputs(q, k, v) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"attention expects (B, H, T, D) tensors; got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"attention: k and v must share q's (B, H) and D and each other's shape; "
                         f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"attention: q, k, v must share one dtype; got {q.dtype}, {k.dtype}, {v.dtype}")


def attention(q, k, v, causal=True, scale=None, deterministic=True):
    """softmax(q k^T * scale + causal mask) v for (B, H, T, D) inputs; the mask aligns to the end.

    q: (B, H, Tq, D); k, v: (B, H, Tk, D). With causal=True query i sees keys j <= i + (Tk - Tq).
    scale defaults to 1/sqrt(D). Any strides; fp16, bf16 or fp32. The Triton kernels take D up to
    128 (16, 32, 64, 128 natively; other sizes are zero-padded to the next one).
    deterministic=False lets the Triton backward add dQ with fp32 atomics inside the dK/dV kernel
    (one kernel instead of two, 5 matmuls instead of 7): faster where the GPU suite says so, but
    dQ then differs in its last bits from run to run. KERNELS_ATTENTION_DQ=atomic forces it (for
    benchmarks of a model that does not pass the argument)."""
    _check_inputs(q, k, v)
    scale, deterministic = _scale_and_determinism(q.shape[-1], scale, deterministic)
    if use_triton(q):
        d = q.shape[-1]
        if q.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"the Triton attention kernel supports fp16, bf16 and fp32, not {q.dtype}")
        if d > SUPPORTED_HEAD_DIMS[-1]:
            raise ValueError(f"the Triton attention kernel supports head dims up to "
                             f"{SUPPORTED_HEAD_DIMS[-1]}, not {d}; use KERNELS_BACKEND=torch")
        if d not in SUPPORTED_HEAD_DIMS:
            # Zero-pad the head dim to the next kernel size: zero columns add nothing to q k^T,
            # the output's extra columns (P @ 0) are cut off, and autograd slices the gradients.
            padded = next(n for n in SUPPORTED_HEAD_DIMS if n >= d)
            q, k, v = (F.pad(t, (0, padded - d)) for t in (q, k, v))
            return flash_attention_forward(q, k, v, bool(causal), scale, deterministic)[0][..., :d]
        return flash_attention_forward(q, k, v, bool(causal), scale, deterministic)[0]
    out_dtype = q.dtype
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        # CPUs without bf16 arithmetic (the 2-core AVX2 machines the main job is timed on) run PyTorch's CPU
        # attention faster in fp32 than in bf16: the main job's training shape (B=8, T=256), forward and
        # backward, 8 heads of 16: 12.3 ms against 16.1 (compiled; 4 heads of 32: 8.5 against 8.8). fp32 is
        # also the more exact of the two; the output returns to bf16. Autocast must be off around the call:
        # CPU autocast lists SDPA as a bf16 op and would cast the fp32 inputs straight back (training runs
        # under autocast, so until 2026-11-28 it trained with bf16 attention after all).
        with torch.autocast("cpu", enabled=False):
            return _torch_attention(q.float(), k.float(), v.float(), causal, scale).to(out_dtype)
    return _torch_attention(q, k, v, causal, scale).to(out_dtype)


def _torch_attention(q, k, v, causal, scale):
    """PyTorch's SDPA with the mask aligned to the end (its is_causal aligns to the start)."""
    tq, tk = q.shape[-2], k.shape[-2]
    if not causal or tq == tk:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    i = torch.arange(tq, device=q.device)[:, None]
    j = torch.arange(tk, device=q.device)[None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=j <= i + (tk - tq), scale=scale)


__all__ = ["attention", "attention_qkv", "attention_layout", "flash_attention_forward", "flash_attention_qkv_forward", "flash_attention_backward", "pick_configs",
           "AttentionConfigs", "TileConfig", "SUPPORTED_HEAD_DIMS", "SCHEDULES", "tuned_entry"]
