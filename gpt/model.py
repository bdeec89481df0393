"""GPT-2, written out top to bottom (nanoGPT style), with every hot op taken from `kernels`.

    tokens -> token embedding + learned position embedding
           -> n_layer x [ h += attn(LN1(h));  h += mlp(LN2(h)) ]      (pre-LN residual blocks)
           -> LN_f -> logits = h @ wte^T                              (LM head tied to the embedding)

Which ops go through kernels/ (and so switch with KERNELS_BACKEND, no change here):
  * kernels.attention: causal softmax(q k^T / sqrt(d)) v on (B, H, T, D);
  * kernels.layer_norm with `residual=`: every LayerNorm after the first also does the residual add
    that precedes it, h = h + sublayer_out, y = LN(h), in one pass over memory;
  * kernels.linear_cross_entropy: the tied LM head and the loss together, so training never has to
    keep a (B*T, vocab) logits tensor; targets equal to -100 (prompt tokens) are ignored.
Attention has no dropout (the kernels have none); `dropout` applies to the embeddings and to each
sublayer's output.

Initialisation (GPT-2): weights N(0, 0.02), biases 0, LayerNorm gain 1; the two projections that write
into the residual stream (attn.proj, mlp.proj) use std 0.02 / sqrt(2 * n_layer), because every block
adds two such terms to h and the variance of h would otherwise grow with depth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import kernels


@dataclass
class GPTConfig:
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 1024      # context length: the number of learned positions
    vocab_size: int = 50304     # GPT-2's 50257 rounded up to a multiple of 128 (faster matmuls)
    dropout: float = 0.0
    bias: bool = True           # biases in Linear layers and LayerNorms, as GPT-2

    def __post_init__(self):
        for name in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd ({self.n_embd}) must be a multiple of model.n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")


# Presets: tiny for tests, small trains on 2 CPU cores in minutes, gpt2-124m is GPT-2 small.
PRESETS = {
    "tiny": dict(n_layer=2, n_head=2, n_embd=32, block_size=64),
    "small": dict(n_layer=4, n_head=4, n_embd=256, block_size=256),
    "gpt2-124m": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),
}


class LayerNorm(nn.Module):
    """Holds the LayerNorm parameters; the math is kernels.layer_norm (fused with the residual add)."""

    def __init__(self, dim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x, residual=None):
        return kernels.layer_norm(x, self.weight, self.bias, eps=1e-5, residual=residual)


def fill_holes(n: int, dead) -> tuple[list[tuple[int, int]], list[int]]:
    """Compacting n rows without the `dead` ones, in place: the last kept rows move into the holes below
    the new count, in order. Returns the (hole, mover) moves and, for each new row, the old row it holds
    (KVCache.drop per row, BeamKVCache.drop per prompt)."""
    dead = set(dead)
    n_new = n - len(dead)
    holes = [i for i in sorted(dead) if i < n_new]
    movers = [i for i in range(n_new, n) if i not in dead]
    moves = list(zip(holes, movers))
    order = list(range(n_new))
    for hole, mover in moves:
        order[hole] = mover
    return moves, order


class KVCache:
    """Keys and values of the tokens seen so far, preallocated for `max_len` positions, per layer.

    The buffers take the dtype of the first keys stored (bf16 under autocast, else the weights'), so the
    cached and the new keys always match in dtype.

    pad: (batch_size,) left padding per row, for prompts of different lengths decoded together: row r's
    first pad[r] cache slots hold padding, its tokens start at slot pad[r]. Every row then gets the
    positions and the attention it would get alone (GPT.hidden_states, attention_mask). None: no padding,
    every slot is a token (the path training and equal-length decoding take)."""

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device, pad: torch.Tensor | None = None):
        head_dim = config.n_embd // config.n_head
        self.shape = (config.n_layer, batch_size, config.n_head, max_len, head_dim)
        self.device = device
        self.k = self.v = None
        self.length = 0  # positions filled
        if pad is not None:
            pad = torch.as_tensor(pad, dtype=torch.long, device=device)
            if pad.shape != (batch_size,) or bool((pad < 0).any()):
                raise ValueError(f"pad must hold one non-negative count per row ({batch_size}), got {tuple(pad.shape)}")
        self.pad = pad

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, H, t, D) after the cached ones; return all keys and values so far."""
        if self.k is None:
            self.k = torch.zeros(self.shape, device=self.device, dtype=k.dtype)
            self.v = torch.zeros(self.shape, device=self.device, dtype=v.dtype)
        start, end = self.length, self.length + k.shape[2]
        if end > self.shape[3]:
            raise ValueError(f"KV cache holds {self.shape[3]} positions, {end} requested")
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def attention_mask(self, t: int) -> torch.Tensor:
        """(B, 1, t, length + t) bool, True where query i (slot length + i) may see key slot j: the causal
        rule (j <= length + i) and not padding (j >= pad[row]). A padding query also sees itself: a row
        with every key masked would make the softmax 0/0 = NaN; its output is never used."""
        i = torch.arange(self.length, self.length + t, device=self.device)[:, None]
        j = torch.arange(self.length + t, device=self.device)[None, :]
        visible = (j <= i) & (j >= self.pad[:, None, None])
        return (visible | (j == i))[:, None]

    def reorder(self, index: torch.Tensor):
        """Keep row index[i] of the cache as row i (beam search: beams that survive a step take the keys and
        values of the beam they extend; a row may be copied several times or dropped)."""
        self.shape = (self.shape[0], int(index.numel())) + self.shape[2:]
        if self.k is not None:
            # only the filled slots are copied: slots from `length` on are written before they are read
            # (append), so the new buffers need no zeros there (beam search's first reorder would otherwise
            # copy max_new_tokens empty slots per row)
            n = self.length
            k = torch.empty(self.shape, dtype=self.k.dtype, device=self.k.device)
            v = torch.empty_like(k)
            k[:, :, :, :n] = self.k[:, :, :, :n].index_select(1, index)
            v[:, :, :, :n] = self.v[:, :, :, :n].index_select(1, index)
            self.k, self.v = k, v
        if self.pad is not None:
            self.pad = self.pad.index_select(0, index.to(self.pad.device))

    def drop(self, rows) -> list[int]:
        """Remove the given rows; the last kept rows move into the holes below the new row count, in order.
        Returns, for each new row, the old row it holds. Only the moved rows' filled slots are copied, in
        place: a reorder copies the whole cache into a fresh buffer (on 2 CPU cores, 32 rows of 4 layers x
        256 x 548 slots: ~60 ms, as long as 7 decoding steps), so decoding that drops finished rows one at
        a time uses this. Dropping whole groups of consecutive rows (beam search: a prompt's beams), with a
        new count that is a multiple of the group size, moves whole groups and keeps each one's order."""
        moves, order = fill_holes(self.shape[1], rows)
        n_new = len(order)
        for hole, mover in moves:
            if self.k is not None:
                self.k[:, hole, :, :self.length] = self.k[:, mover, :, :self.length]
                self.v[:, hole, :, :self.length] = self.v[:, mover, :, :self.length]
        self.shape = (self.shape[0], n_new) + self.shape[2:]
        if self.k is not None:
            self.k, self.v = self.k[:, :n_new], self.v[:, :n_new]  # views of the same buffers
        if self.pad is not None:
            self.pad = self.pad[torch.tensor(order, dtype=torch.long, device=self.pad.device)]
        return order


class BeamKVCache:
    """The KV cache of beam search: `width` beams per prompt share the prompt's keys and values.

    prefix: the KVCache of the prompts' forward pass (B rows, filled to its length T); every beam of prompt
    b reads prefix row b, and only the generated positions are kept per beam (B * width rows). So starting
    the beams copies nothing, a reorder copies only generated positions, and a decoding step reads each
    prompt's keys once for all of its beams instead of once per beam.

    Attention of one new token per row (decoding steps only), for beam row r = b * width + j:
        s = [q_r K_prefix[b]^T, q_r K_gen[r]^T] * scale,   prefix keys j < pad[b] masked (left padding),
        y_r = softmax(s) [V_prefix[b]; V_gen[r]]
    The prefix part runs as one matmul per (prompt, head) with the prompt's `width` queries stacked, the
    generated part per row; one softmax over both (the same math as attending to the concatenation, which
    is what KVCache with copied prompt rows computes)."""

    def __init__(self, prefix: KVCache, width: int, max_new: int):
        if prefix.k is None:
            raise ValueError("BeamKVCache needs the prompts' keys: run the prompts through the prefix cache first")
        self.width = width
        L, B, H, _, D = prefix.shape
        self.prefix_k = prefix.k[:, :, :, :prefix.length]
        self.prefix_v = prefix.v[:, :, :, :prefix.length]
        self.prefix_len = prefix.length
        self.prompt_pad = prefix.pad  # (B,) or None
        self._pad_bias = self._bias(prefix.pad)
        self.k = torch.empty((L, B * width, H, max(max_new, 1), D), dtype=prefix.k.dtype, device=prefix.k.device)
        self.v = torch.empty_like(self.k)
        self.generated = 0  # generated positions filled
        self.pad = None if prefix.pad is None else prefix.pad.repeat_interleave(width)  # (positions: GPT.hidden_states)

    def _bias(self, pad):
        """(B, 1, 1, T): -inf on each prompt's padding keys, 0 elsewhere (None without padding). Added to
        the scores, it masks as masked_fill would, at a fraction of the cost of building the mask per layer."""
        if pad is None:
            return None
        j = torch.arange(self.prefix_len, device=pad.device)
        bias = torch.zeros((pad.shape[0], 1, 1, self.prefix_len), dtype=self.prefix_k.dtype, device=pad.device)
        return bias.masked_fill_((j[None, :] < pad[:, None])[:, None, None, :], float("-inf"))

    @property
    def length(self) -> int:
        return self.prefix_len + self.generated

    @length.setter
    def length(self, value: int):
        self.generated = value - self.prefix_len

    def attention_mask(self, t: int):
        return None  # attend() masks the prompts' padding itself

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store k, v (rows, H, 1, D) at the next generated position and attend q (rows, H, 1, D) to the
        prompt's keys and this row's generated ones; returns (rows, H, 1, D)."""
        R, H, t, D = q.shape
        if t != 1:
            raise ValueError(f"BeamKVCache attends one new token per row, got {t}")
        n = self.generated
        if n >= self.k.shape[3]:
            raise ValueError(f"BeamKVCache holds {self.k.shape[3]} generated positions, {n + 1} requested")
        self.k[layer, :, :, n:n + 1] = k
        self.v[layer, :, :, n:n + 1] = v
        B, w = R // self.width, self.width
        q = q * (1.0 / math.sqrt(D))  # (scaled once here, not the scores: D numbers a row, not T)
        qp = q.view(B, w, H, D).transpose(1, 2).contiguous()                            # (B, H, w, D)
        kp, vp = self.prefix_k[layer], self.prefix_v[layer]                             # (B, H, T, D)
        sp = torch.matmul(qp, kp.transpose(-1, -2))                                     # (B, H, w, T)
        if self._pad_bias is not None:
            sp = sp + self._pad_bias.to(sp.dtype)
        kg, vg = self.k[layer, :, :, :n + 1], self.v[layer, :, :, :n + 1]               # (R, H, n+1, D)
        sg = torch.matmul(q, kg.transpose(-1, -2))                                      # (R, H, 1, n+1)
        sg = sg.view(B, w, H, n + 1).transpose(1, 2)                                    # (B, H, w, n+1)
        s = torch.cat([sp, sg], dim=-1)
        p = torch.softmax(s, dim=-1, dtype=torch.promote_types(s.dtype, torch.float32)).to(q.dtype)
        pp, pg = p.split([self.prefix_len, n + 1], dim=-1)
        y = torch.matmul(pp, vp).transpose(1, 2)                                        # (B, w, H, D)
        # the generated part: one query against n+1 keys per row and head, as a broadcast product summed
        # over the keys (a batch of R * H matrix products of one row each costs twice as much on the CPU)
        yg = (pg.transpose(1, 2).reshape(R, H, n + 1, 1) * vg).sum(dim=2, keepdim=True)  # (R, H, 1, D)
        return y.reshape(R, H, 1, D) + yg

    def reorder_generated(self, rows: list[int], sources: list[int]):
        """Row rows[i] takes the generated positions of row sources[i] (a beam of the same prompt); the
        other rows keep theirs. The right side is gathered before it is written."""
        n = self.generated
        if n == 0 or not rows:
            return
        dst = torch.tensor(rows, dtype=torch.long, device=self.k.device)
        src = torch.tensor(sources, dtype=torch.long, device=self.k.device)
        self.k[:, dst, :, :n] = self.k[:, src, :, :n]
        self.v[:, dst, :, :n] = self.v[:, src, :, :n]

    def drop(self, rows) -> list[int]:
        """KVCache.drop for whole prompts: `rows` holds every beam row of the prompts that leave (groups of
        `width`); the last prompts move into the holes, in order. Returns, per new row, the old row."""
        w = self.width
        dead = {r // w for r in rows}
        if len(dead) * w != len(set(rows)):
            raise ValueError("BeamKVCache drops whole prompts (all of their beam rows)")
        moves, prompt_order = fill_holes(self.k.shape[1] // w, dead)
        b_new = len(prompt_order)
        n = self.generated
        for hole, mover in moves:
            self.prefix_k[:, hole] = self.prefix_k[:, mover]
            self.prefix_v[:, hole] = self.prefix_v[:, mover]
            self.k[:, hole * w:(hole + 1) * w, :, :n] = self.k[:, mover * w:(mover + 1) * w, :, :n]
            self.v[:, hole * w:(hole + 1) * w, :, :n] = self.v[:, mover * w:(mover + 1) * w, :, :n]
        self.prefix_k, self.prefix_v = self.prefix_k[:, :b_new], self.prefix_v[:, :b_new]
        self.k, self.v = self.k[:, :b_new * w], self.v[:, :b_new * w]
        if self.prompt_pad is not None:
            self.prompt_pad = self.prompt_pad[torch.tensor(prompt_order, dtype=torch.long, device=self.prompt_pad.device)]
            self.pad = self.prompt_pad.repeat_interleave(w)
            self._pad_bias = self._bias(self.prompt_pad)
        return [b * w + j for b in prompt_order for j in range(w)]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, cache: KVCache | None = None, layer: int = 0, attn_mask: torch.Tensor | None = None):
        """attn_mask: (B, 1, T, keys) bool from KVCache.attention_mask, given only when the cache rows are
        left-padded; otherwise the causal kernel runs (training, and decoding prompts of one length)."""
        B, T, C = x.shape
        qkv = self.qkv(x)
        if cache is None and attn_mask is None and kernels.attention_layout() == "packed":
            # KERNELS_ATTENTION_LAYOUT=packed, outside decoding: the packed op reads q, k, v where the
            # projection wrote them and writes the heads side by side (no transpose copies)
            return self.dropout(self.proj(kernels.attention_qkv(qkv, self.n_head, causal=True)))
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if isinstance(cache, BeamKVCache):  # beam search: the beams of a prompt share its keys
            y = cache.attend(layer, q, k, v)
            return self.dropout(self.proj(y.transpose(1, 2).contiguous().view(B, T, C)))
        if cache is not None:  # decoding: attend to everything cached (the mask aligns to the end)
            k, v = cache.append(layer, k, v)
        if attn_mask is None:
            y = kernels.attention(q, k, v, causal=True)
        else:  # padded rows: the causal kernel has no per-row mask, so PyTorch's attention takes one
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.proj(F.gelu(self.fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LN block. Its LayerNorms take the residual add of the sublayer before them (see GPT.forward)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, config.bias)
        self.mlp = MLP(config)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.n_embd, config.bias)
        self.apply(self._init_weights)
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def hidden_states(self, idx, cache: KVCache | None = None):
        """The final LayerNorm's output (B, T, n_embd) for token ids idx (B, T)."""
        B, T = idx.shape
        block_size = self.config.block_size
        start = cache.length if cache is not None else 0
        pad = cache.pad if cache is not None else None
        pos = torch.arange(start, start + T, device=idx.device)
        mask = None
        if pad is None:
            if start + T > block_size:
                raise ValueError(f"sequence of {start + T} tokens is longer than block_size {block_size}")
        else:
            # Left-padded rows: row r's tokens start at slot pad[r], so its positions are the slots minus
            # pad[r], exactly those it would have alone. Padding slots would get negative positions: they
            # take 0 (the mask hides them anyway).
            if start + T - int(pad.min()) > block_size:
                raise ValueError(f"a padded row reaches position {start + T - int(pad.min())}, past block_size "
                                 f"{block_size}")
            pos = (pos[None, :] - pad[:, None]).clamp(min=0)
            mask = cache.attention_mask(T)
        h = self.drop(self.wte(idx) + self.wpe(pos))
        y = self.blocks[0].ln_1(h)
        for i, block in enumerate(self.blocks):
            # h is the residual stream, y the normalised input of the next sublayer.
            y, h = block.ln_2(block.attn(y, cache, i, mask), residual=h)      # h += attn; y = LN2(h)
            next_ln = self.blocks[i + 1].ln_1 if i + 1 < len(self.blocks) else self.ln_f
            y, h = next_ln(block.mlp(y), residual=h)                          # h += mlp; y = next LN(h)
        if cache is not None:
            cache.length += T
        return y

    def forward(self, idx, targets=None, cache: KVCache | None = None):
        """With targets: the mean cross-entropy over targets != -100. Without: logits of the last position
        (B, 1, vocab), which is all that generation needs."""
        y = self.hidden_states(idx, cache)
        if targets is not None:
            # Sum over the learned tokens divided by their count (at least 1): the mean, except that a
            # batch whose targets are all masked (a window of prompt only, when fine-tuning) gives 0
            # instead of 0/0 = NaN, which would stop training.
            loss_sum = kernels.linear_cross_entropy(y, self.wte.weight, targets, ignore_index=-100, reduction="sum")
            return loss_sum / (targets != -100).sum().clamp(min=1)
        return F.linear(y[:, -1:, :], self.wte.weight)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; the position embedding is left out by default (it does no FLOPs worth counting),
        the token embedding stays in because it is also the LM head."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward): 6N for the matmuls with N parameters, plus
        12 * n_layer * n_embd * T for attention's q k^T and p v (the PaLM paper's estimate)."""
        T = seq_len or self.config.block_size
        return 6 * self.num_params() + 12 * self.config.n_layer * self.config.n_embd * T

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, stop_ids=(), generator=None, n_vocab: int | None = None,
                 constraint=None):
        """Sample up to max_new_tokens continuations of idx (B, T) with a KV cache; yields each new
        (B, 1) token as it is drawn. A row that has produced one of stop_ids keeps repeating it; the
        generator returns when every row has stopped.

        n_vocab: ids >= n_vocab (the padding of the embedding past the tokenizer's vocabulary) are never
        drawn. constraint: an object with allowed_ids(row, generated) -> ids or None (gpt/generate.py's
        Constraint); only those ids may follow. A row the constraint leaves no id stops (with stop_ids[0])."""
        B = idx.shape[0]
        block = self.config.block_size
        idx = idx[:, -block:]
        cache = KVCache(self.config, B, block, idx.device)
        logits = self(idx, cache=cache)
        stop_list = sorted(set(stop_ids))
        stop = torch.tensor(stop_list, dtype=torch.long, device=idx.device)
        done = torch.zeros(B, dtype=torch.bool, device=idx.device)
        stopped_with = torch.zeros(B, 1, dtype=torch.long, device=idx.device)
        generated: list[list[int]] = [[] for _ in range(B)]
        history = idx
        for _ in range(max_new_tokens):
            step_logits = mask_logits(logits[:, -1, :], n_vocab, constraint, generated,
                                      stop_list[0] if stop_list else None, done.tolist(),
                                      need=1 if temperature <= 0 else None)
            nxt = sample_next(step_logits, temperature, top_k, top_p, generator)
            if stop.numel():
                nxt = torch.where(done[:, None], stopped_with, nxt)
                newly = ~done & torch.isin(nxt[:, 0], stop)
                stopped_with = torch.where(newly[:, None], nxt, stopped_with)
                done |= newly
            if constraint is not None:
                for r, t in enumerate(nxt[:, 0].tolist()):
                    generated[r].append(t)
            yield nxt
            if stop.numel() and bool(done.all()):
                return
            history = torch.cat([history, nxt], dim=1)
            if cache.length == block:  # context full: restart the cache on the last half of the window
                cache = KVCache(self.config, B, block, idx.device)
                logits = self(history[:, -(block // 2):], cache=cache)
            else:
                logits = self(nxt, cache=cache)


def mask_logits(logits, n_vocab=None, constraint=None, generated=None, dead_id=None, skip=None, need=None):
    """(B, vocab) logits with every id that may not come next set to -inf: ids >= n_vocab, and (with a
    constraint) ids the constraint does not allow after generated[row]. A row with no allowed id gets only
    dead_id (a stop id) when one is given. Rows where skip[row] is true are left as they are.

    need: when only the `need` best allowed ids matter (1 for greedy, 2 x width for beam search) and the
    constraint has allows(row, generated, id), ids are tried best first and only those kept (what PICARD
    does): a trained model's favourite is usually allowed, so this costs a few checks instead of the full
    allowed set. The result's argmax / top `need` are the same as with the full mask."""
    vocab = logits.shape[-1]
    if (n_vocab is None or n_vocab >= vocab) and constraint is None:
        return logits
    logits = logits.float().clone()
    if n_vocab is not None and n_vocab < vocab:
        logits[:, n_vocab:] = float("-inf")
    if constraint is None:
        return logits
    limit = n_vocab or vocab
    lazy = need is not None and hasattr(constraint, "allows")
    if lazy:
        tries = min(limit, max(4 * need, 16))
        top = logits.topk(tries, dim=-1).indices.tolist()
    neg = torch.full((vocab,), float("-inf"), device=logits.device)
    for r in range(logits.shape[0]):
        if skip is not None and skip[r]:
            continue
        ids = None
        if lazy:
            found = [t for t in _first_allowed(constraint, r, generated[r], top[r], need)]
            if len(found) >= need:
                ids = found
        if ids is None:
            ids = constraint.allowed_ids(r, generated[r])
            if ids is None:
                continue
        ids = [i for i in ids if i < limit] or ([dead_id] if dead_id is not None else [])
        if not ids:
            logits[r] = float("-inf")
            continue
        keep = torch.tensor(ids, dtype=torch.long, device=logits.device)
        row = neg.clone()
        row[keep] = logits[r, keep]
        logits[r] = row
    return logits


def _first_allowed(constraint, row, generated, candidates, need):
    n = 0
    for t in candidates:
        if constraint.allows(row, generated, t):
            yield t
            n += 1
            if n == need:
                return


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """One token id per row from (B, vocab) logits: greedy at temperature 0, else softmax(logits / T)
    restricted to the top_k largest and to the smallest set whose probability reaches top_p."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens ranked above it already reach top_p (the first one always stays)
        drop = (probs.cumsum(dim=-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


def build_model_config(preset: str | None = None, **overrides) -> GPTConfig:
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return GPTConfig(**{**(PRESETS[preset] if preset else {}), **overrides})
