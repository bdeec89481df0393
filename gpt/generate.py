"""Decoding helpers over GPT.generate (the KV-cached sampler in gpt/model.py).

`generate_ids` samples one continuation of one prompt and streams each token to a callback; the
command-line front ends (train/sample.py for plain text, text2sql/ask.py for SQL) are built on it.
"""
from __future__ import annotations

from typing import Callable, Collection

import torch

from gpt.model import GPT


@torch.no_grad()
def generate_ids(model: GPT, prompt_ids: list[int], max_new_tokens: int, temperature: float = 0.0,
                 top_k: int | None = None, top_p: float | None = None, stop_ids: Collection[int] = (),
                 seed: int = 0, on_token: Callable[[int], None] | None = None) -> list[int]:
    """The new ids of one sampled continuation (the stop token excluded); on_token(id) is called as each
    one arrives. Temperature 0 is greedy. On a GPU the forward passes run under bf16 autocast."""
    if not prompt_ids:
        raise ValueError("the prompt is empty")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    stop = set(stop_ids)
    out: list[int] = []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for tok in model.generate(idx, max_new_tokens, temperature, top_k, top_p, stop, generator):
            t = int(tok[0, 0])
            if t in stop:
                break
            out.append(t)
            if on_token is not None:
                on_token(t)
    return out
