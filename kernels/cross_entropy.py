"""Fused cross-entropy and linear (LM head) + cross-entropy.

The Triton kernels land with issue 3; until then every backend runs PyTorch's own ops.
"""
import torch
import torch.nn.functional as F

from kernels.backend import use_triton


def cross_entropy(logits, targets, ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0):
    if use_triton(logits):
        raise NotImplementedError("the Triton cross-entropy kernel is not written yet (issue 3)")
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
    if reduction == "mean":
        return (loss.sum() / (t != ignore_index).sum()).to(logits.dtype)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def linear_cross_entropy(x, weight, targets, bias=None, ignore_index=-100, reduction="mean"):
    if use_triton(x):
        raise NotImplementedError("the Triton linear cross-entropy is not written yet (issue 3)")
    logits = F.linear(x.reshape(-1, x.shape[-1]), weight, bias)
    loss = cross_entropy(logits, targets.reshape(-1), ignore_index=ignore_index, reduction=reduction)
    return loss.reshape(targets.shape) if reduction == "none" else loss
