"""AdamW with weight decay on matrices only, and the warmup + cosine learning-rate schedule."""
from __future__ import annotations

import math

import torch


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, betas, device_type: str):
    """Decay the 2-D weights (linear layers, the token embedding that is also the LM head); leave biases,
    LayerNorm gains and the position table undecayed: shrinking them toward 0 only removes useful
    offsets and scales. The fused CUDA kernel updates all parameters in a few launches."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and not name.endswith("wpe.weight") else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device_type == "cuda")


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup from lr/warmup to lr over warmup_steps, then cosine from lr down to min_lr at
    decay_steps, then min_lr. `step` counts from 0."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
