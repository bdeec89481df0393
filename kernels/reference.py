"""Naive PyTorch versions of every kernel: the ground truth for tests, the baseline for benchmarks.

Each function has the same signature as its public counterpart in `kernels` and is written the
obvious way (materialised intermediates, no fusion), so it is easy to believe. Tests run these in
float64 to get a reference that is far more exact than the op under test.
"""
import math

import torch


def layer_norm(x, weight, bias, eps=1e-5, residual=None):
    """y = (h - mean(h)) / sqrt(var(h) + eps) * weight + bias, with h = x + residual (or x).

    Returns y, or (y, h) when `residual` is given (h is the next residual stream)."""
    h = x if residual is None else x + residual
    hf = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h
    mean = hf.mean(dim=-1, keepdim=True)
    var = ((hf - mean) ** 2).mean(dim=-1, keepdim=True)
    y = (hf - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight.to(y.dtype)
    if bias is not None:
        y = y + bias.to(y.dtype)
    y = y.to(x.dtype)
    return y if residual is None else (y, h)


def cross_entropy(logits, targets, ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0):
    """Softmax cross-entropy over the last dim of (N, V) logits, written out term by term.

    loss_i = (1 - s) * (lse_i - x_i[t_i]) + s * (lse_i - mean_j x_ij) + z_loss * lse_i^2
    Rows whose target is `ignore_index` contribute 0; "mean" divides by the number of kept rows
    (0/0 gives NaN exactly as F.cross_entropy does)."""
    x = logits.reshape(-1, logits.shape[-1])
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    t = targets.reshape(-1)
    keep = t != ignore_index
    safe_t = torch.where(keep, t, torch.zeros_like(t))
    m = xf.max(dim=-1, keepdim=True).values
    lse = (m + torch.log(torch.exp(xf - m).sum(dim=-1, keepdim=True))).squeeze(-1)
    nll = lse - xf.gather(1, safe_t[:, None]).squeeze(1)
    loss = (1.0 - label_smoothing) * nll
    if label_smoothing > 0.0:
        loss = loss + label_smoothing * (lse - xf.mean(dim=-1))
    if z_loss > 0.0:
        loss = loss + z_loss * lse * lse
    loss = torch.where(keep, loss, torch.zeros_like(loss))
    if reduction == "none":
        return loss.reshape(targets.shape).to(logits.dtype)
    if reduction == "sum":
        return loss.sum().to(logits.dtype)
    if reduction == "mean":
        return (loss.sum() / keep.sum()).to(logits.dtype)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def linear_cross_entropy(x, weight, targets, bias=None, ignore_index=-100, reduction="mean"):
    """cross_entropy(x @ weight.T + bias, targets), materialising the full (tokens x vocab) logits."""
    logits = x.reshape(-1, x.shape[-1]) @ weight.t()
    if bias is not None:
        logits = logits + bias
    loss = cross_entropy(logits, targets.reshape(-1), ignore_index=ignore_index, reduction=reduction)
    return loss.reshape(targets.shape) if reduction == "none" else loss


def attention(q, k, v, causal=True, scale=None):
    """softmax(q k^T * scale + mask) v with the (Tq x Tk) scores materialised.

    q: (B, H, Tq, D), k and v: (B, H, Tk, D). The causal mask is aligned to the end: query i may
    see keys j <= i + (Tk - Tq), so a short query block (decoding with a KV cache) sees the past."""
    d = q.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    qf, kf, vf = (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in (q, k, v))
    scores = (qf @ kf.transpose(-2, -1)) * scale
    if causal:
        tq, tk = q.shape[-2], k.shape[-2]
        i = torch.arange(tq, device=q.device)[:, None]
        j = torch.arange(tk, device=q.device)[None, :]
        scores = scores.masked_fill(j > i + (tk - tq), float("-inf"))
    p = torch.softmax(scores, dim=-1)
    p = torch.nan_to_num(p)  # a query row with no visible key (tq > tk) gives zeros, not NaN
    return (p @ vf).to(q.dtype)
