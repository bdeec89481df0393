"""Fused causal attention (FlashAttention-2 style).

The Triton kernel lands with issue 4; until then every backend runs PyTorch's SDPA.
"""
import torch
import torch.nn.functional as F

from kernels.backend import use_triton


def attention(q, k, v, causal=True, scale=None):
    """softmax(q k^T * scale + causal mask) v for (B, H, T, D) inputs; the mask aligns to the end."""
    if use_triton(q):
        raise NotImplementedError("the Triton attention kernel is not written yet (issue 4)")
    tq, tk = q.shape[-2], k.shape[-2]
    if not causal or tq == tk:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    i = torch.arange(tq, device=q.device)[:, None]
    j = torch.arange(tk, device=q.device)[None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=j <= i + (tk - tq), scale=scale)
