"""Decoding over GPT (gpt/model.py): greedy, sampling and beam search, each with an optional constraint.

A *constraint* says, for one row of a batch and the ids that row has generated so far, which ids may come
next (`Constraint.allowed_ids`); decoding sets every other logit to -inf. gpt/ knows nothing of what the
constraint enforces (a grammar, a schema: that lives in the floor that owns the task); it only applies the
mask. Ids past the tokenizer's vocabulary (`n_vocab`: the embedding is padded past it) are never produced.

    generate_ids(model, prompt, ...)        one continuation of one prompt, streamed to a callback
    decode_batch(model, prompts, ...)       greedy / sampled continuations of a batch of prompts
    beam_search(model, prompts, width, ...) the `width` best continuations of each prompt

Prompts of different lengths are left-padded to the longest (`left_pad`): the KV cache knows each row's
padding (KVCache.pad), so every row gets the positions and attention it would get alone, and decodes the
same ids (within fp32 rounding: tests/test_padded_decoding.py). A padded row ends when its own context
is full (block_size minus its length tokens); an unpadded batch (one length) runs as before.

Beam search keeps `width` live hypotheses per prompt; every step each one is extended by every allowed id,
the `width` best by summed log-probability survive (a hypothesis ending in a stop id is set aside as
finished), and the KV cache rows are reordered to follow their parents (KVCache.reorder). Finished
hypotheses are ranked by log-probability / length ** length_penalty, so short answers are not favoured
merely for having fewer factors below 1. A prompt is done when it has `width` finished hypotheses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Protocol, Sequence

import torch

from gpt.model import GPT, BeamKVCache, KVCache, mask_logits, sample_next


class Constraint(Protocol):
    """Which ids may follow. `row` is the prompt's index in the batch; `generated` the ids it has so far
    (in beam search: the hypothesis's ids). Return None for "anything"; an empty list ends the row."""

    def allowed_ids(self, row: int, generated: Sequence[int]) -> Sequence[int] | None: ...

    # Optional: allows(row, generated, id) -> bool, a cheap test of one id. With it greedy and beam search
    # test the model's best ids first and compute the full allowed set only when none of those passes.


class PerRowConstraint:
    """A Constraint made of one object per row, each with allowed_ids(generated) (None: unconstrained) and
    allows(generated, id)."""

    def __init__(self, rows: Sequence):
        self.rows = list(rows)

    def allowed_ids(self, row, generated):
        c = self.rows[row]
        return None if c is None else c.allowed_ids(generated)

    def allows(self, row, generated, token):
        c = self.rows[row]
        if c is None:
            return True
        if hasattr(c, "allows"):
            return c.allows(generated, token)
        return token in c.allowed_ids(generated)


def _autocast(device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def left_pad(prompts: Sequence[Sequence[int]], device, block_size: int, pad_id: int = 0):
    """(ids (B, longest), pad) for non-empty prompts: each prompt right-aligned after pad[r] copies of
    pad_id (any id: padding is masked out). pad is None when the prompts share one length (the unpadded
    path: the causal attention kernel, no mask). Padded prompts must be shorter than block_size."""
    lengths = [len(p) for p in prompts]
    if not prompts or min(lengths) == 0:
        raise ValueError("decoding needs at least one prompt and no empty prompt")
    longest = max(lengths)
    if len(set(lengths)) == 1:
        return torch.tensor([list(p) for p in prompts], dtype=torch.long, device=device), None
    if longest >= block_size:
        raise ValueError(f"prompts of different lengths are padded and must be shorter than block_size "
                         f"({block_size}); got one of {longest} tokens: decode it alone, or cut it")
    rows = [[pad_id] * (longest - n) + list(p) for p, n in zip(prompts, lengths)]
    pad = torch.tensor([longest - n for n in lengths], dtype=torch.long, device=device)
    return torch.tensor(rows, dtype=torch.long, device=device), pad


@torch.no_grad()
def generate_ids(model: GPT, prompt_ids: list[int], max_new_tokens: int, temperature: float = 0.0,
                 top_k: int | None = None, top_p: float | None = None, stop_ids: Collection[int] = (),
                 seed: int = 0, on_token: Callable[[int], None] | None = None, n_vocab: int | None = None,
                 constraint: Constraint | None = None) -> list[int]:
    """The new ids of one sampled continuation (the stop token excluded); on_token(id) is called as each
    one arrives. Temperature 0 is greedy. On a GPU the forward passes run under bf16 autocast."""
    if not prompt_ids:
        raise ValueError("the prompt is empty")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    stop = set(stop_ids)
    out: list[int] = []
    with _autocast(device):
        for tok in model.generate(idx, max_new_tokens, temperature, top_k, top_p, stop, generator,
                                  n_vocab=n_vocab, constraint=constraint):
            t = int(tok[0, 0])
            if t in stop:
                break
            out.append(t)
            if on_token is not None:
                on_token(t)
    return out


@torch.no_grad()
def decode_batch(model: GPT, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: float = 0.0,
                 stop_ids: Collection[int] = (), generator=None, n_vocab: int | None = None,
                 constraint: Constraint | None = None, top_k: int | None = None,
                 top_p: float | None = None) -> list[list[int]]:
    """Greedy (temperature 0) or sampled continuations of prompts, each cut before its stop id.

    Prompts of one length run through GPT.generate (a full context slides its window). Prompts of different
    lengths are left-padded and decoded by _decode_padded: prompt r adds at most min(max_new_tokens,
    block_size - its length) tokens, and its greedy ids are those it gets alone with that many steps."""
    device = next(model.parameters()).device
    idx, pad = left_pad(prompts, device, model.config.block_size)
    stop = set(stop_ids)
    if pad is not None:
        with _autocast(device):
            return _decode_padded(model, idx, pad, [len(p) for p in prompts], max_new_tokens, temperature, stop,
                                  generator, n_vocab, constraint, top_k, top_p)
    rows: list[list[int]] = [[] for _ in prompts]
    ended = [False] * len(prompts)
    with _autocast(device):
        for tok in model.generate(idx, max_new_tokens, temperature, top_k, top_p, stop, generator,
                                  n_vocab=n_vocab, constraint=constraint):
            for r, t in enumerate(tok[:, 0].tolist()):
                if ended[r]:
                    continue
                if t in stop:
                    ended[r] = True
                else:
                    rows[r].append(t)
    return rows


def _decode_padded(model, idx, pad, lengths, max_new_tokens, temperature, stop, generator, n_vocab, constraint,
                   top_k, top_p) -> list[list[int]]:
    """decode_batch's loop for left-padded prompts (idx, pad from left_pad; lengths: the prompts' own).

    Each row has its own budget (no window slides: positions past block_size do not exist). A row that ends
    leaves the batch at once (KVCache.drop: a kept row moves into its place, a copy of one row)."""
    block = model.config.block_size
    budget = [min(max_new_tokens, block - n) for n in lengths]
    B, steps = len(lengths), max(budget)
    cache = KVCache(model.config, B, idx.shape[1] + steps, idx.device, pad=pad)
    logits = model(idx, cache=cache)[:, -1, :]
    stop_list = sorted(stop)
    rows: list[list[int]] = [[] for _ in range(B)]
    live = [True] * B
    held = list(range(B))  # the prompt of each row the cache and logits hold (ended rows leave each step)
    for _ in range(steps):
        step_logits = mask_logits(logits, n_vocab, None if constraint is None else _HeldRows(constraint, held),
                                  [rows[r] for r in held], stop_list[0] if stop_list else None,
                                  [not live[r] for r in held], need=1 if temperature <= 0 else None)
        nxt = sample_next(step_logits, temperature, top_k, top_p, generator)
        for r, t in zip(held, nxt[:, 0].tolist()):
            if not live[r]:
                continue
            if t in stop:
                live[r] = False
            else:
                rows[r].append(t)
                live[r] = len(rows[r]) < budget[r]
        ended = [a for a, r in enumerate(held) if not live[r]]
        if len(ended) == len(held):
            break
        if ended:
            order = cache.drop(ended)
            nxt = nxt[torch.tensor(order, dtype=torch.long, device=idx.device)]
            held = [held[a] for a in order]
        logits = model(nxt, cache=cache)[:, -1, :]
    return rows


class _HeldRows:
    """A Constraint seen through the rows a batch still holds: row a of the batch is prompt held[a]."""

    def __init__(self, constraint: Constraint, held: list[int]):
        self.constraint, self.held = constraint, held
        if hasattr(constraint, "allows"):
            self.allows = lambda row, generated, token: constraint.allows(held[row], generated, token)

    def allowed_ids(self, row, generated):
        return self.constraint.allowed_ids(self.held[row], generated)


@dataclass
class Hypothesis:
    ids: list[int]        # generated ids, the stop id excluded
    logprob: float        # summed log-probability (the stop id included)
    score: float          # logprob / length ** length_penalty (length counts the stop id)
    finished: bool        # ended with a stop id (False: ran out of steps)


@torch.inference_mode()
def beam_search(model: GPT, prompts: Sequence[Sequence[int]], width: int, max_new_tokens: int,
                stop_ids: Collection[int], n_vocab: int | None = None, constraint: Constraint | None = None,
                length_penalty: float = 1.0, early_stop: bool = False) -> list[list[Hypothesis]]:
    """The best `width` hypotheses of each prompt, best first. Each prompt adds at most
    min(max_new_tokens, block_size - its length) tokens; prompts of different lengths are left-padded
    and each gets the hypotheses it would get alone.

    A prompt is done when it has `width` finished hypotheses. With early_stop, also as soon as its best
    finished hypothesis scores at least what every live beam would if it ended at the next step at no
    cost (an estimate, not a bound: each step costs log-probability, but a longer hypothesis divides by
    more): the live beams are then dropped, and fewer than `width` hypotheses may come back.

    The prompt is run once per prompt (not per beam), and its beams share its keys and values
    (gpt/model.py BeamKVCache: nothing is copied, and a step reads a prompt's keys once for all of its
    beams). At step 0 only beam 0 of each prompt is live (the others start at -inf), so no hypothesis is
    duplicated.

    Cost per step, besides one forward of all beams of all prompts together: candidates are taken best
    first over all beams of a prompt (summed log-probability) and each is tested with the constraint's
    cheap allows(); the full allowed set of a beam is computed only when the best candidates run out, so
    a step costs about `width` tests per prompt. Reordering the cache copies only the generated positions;
    a prompt that ends leaves the cache by BeamKVCache.drop (the last prompt's rows move into its place),
    not by a copy of the whole cache."""
    if width < 1:
        raise ValueError(f"beam width must be >= 1, got {width}")
    stop = sorted(set(stop_ids))
    if not stop:
        raise ValueError("beam_search needs at least one stop id")
    device = next(model.parameters()).device
    block = model.config.block_size
    idx, pad = left_pad(prompts, device, block)
    B, k, T = len(prompts), width, idx.shape[1]  # T: the (padded) prompt length, shared by every row
    budget = [min(max_new_tokens, block - len(p)) for p in prompts]  # steps each prompt may take
    max_new_tokens = max(budget)
    stop_set = set(stop)
    prompt_cache = KVCache(model.config, B, T, device, pad=pad)
    with _autocast(device):
        logits = model(idx, cache=prompt_cache)[:, -1, :]
    cache = BeamKVCache(prompt_cache, k, max_new_tokens)  # the beams share their prompt's keys (no copies)
    rows = torch.arange(B, device=device).repeat_interleave(k)
    logits = logits.index_select(0, rows)
    vocab = logits.shape[-1]
    limit = min(vocab, n_vocab or vocab)
    NEG = float("-inf")
    scores = [[0.0] + [NEG] * (k - 1) for _ in range(B)]
    beams: list[list[int]] = [[] for _ in range(B * k)]
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B   # finished: `width` finished hypotheses, none left, or early_stop
    ended = [False] * B  # done, or out of steps (its live beams are its unfinished answers)
    lazy = constraint is not None and hasattr(constraint, "allows")
    active = list(range(B))  # the prompts still decoding; cache and logits rows: active[a] at a * k + j
    for step in range(max_new_tokens):
        # log-probabilities are the model's own (normalised over the vocabulary, not renormalised over the
        # allowed ids, as PICARD does): a hypothesis the constraint had to bend pays for it
        logp = torch.log_softmax(mask_logits(logits.float(), n_vocab), dim=-1)
        base = torch.tensor([scores[b] for b in active], device=device).view(-1, 1)
        cand = (base + logp).view(len(active), k * vocab)
        # every prompt's best 4k candidates in one call (most prompts need no more; _best_allowed asks for
        # more of its own row when they run out)
        top = cand.topk(min(4 * k, cand.shape[1]), dim=-1)
        top = list(zip(top.values.tolist(), top.indices.tolist()))
        src, tok = [], []  # per surviving prompt's slot: the cache row it extends, the id it adds
        for a, b in enumerate(active):
            picked = _best_allowed(cand[a], b, k, vocab, limit, beams, stop_set, constraint, lazy, finished[b],
                                   length_penalty, top[a])
            new_scores = [s for s, _, _ in picked] + [NEG] * (k - len(picked))
            if len(finished[b]) >= k or not picked:
                done[b] = True
            elif early_stop and finished[b]:
                n_next = len(beams[b * k]) + 2  # the live beams' length after this step and a stop id
                best = max(h.score for h in finished[b])
                if all(s / n_next ** length_penalty <= best for s in new_scores[:len(picked)]):
                    done[b] = True
            old = beams[b * k:(b + 1) * k]
            slots = [(parent - b * k, t) for _, parent, t in picked]
            slots += [(0, stop[0])] * (k - len(slots))  # a dead slot copies beam 0 of its own prompt
            beams[b * k:(b + 1) * k] = [old[j] + [t] for j, t in slots]
            scores[b] = new_scores
            ended[b] = done[b] or step == budget[b] - 1
            if ended[b]:  # its rows leave the cache below; until then they stay where they are
                src += [a * k + j for j in range(k)]
                tok += [stop[0]] * k
            else:
                src += [a * k + j for j, _ in slots]
                tok += [t for _, t in slots]
        dead = [a * k + j for a, b in enumerate(active) if ended[b] for j in range(k)]
        if len(dead) == len(src) or step == max_new_tokens - 1:
            break
        moved = [i for i, s in enumerate(src) if s != i]  # a beam that extends itself keeps its keys
        if moved:
            cache.reorder_generated(moved, [src[i] for i in moved])
        if dead:  # prompts that ended leave: the last prompts' rows move into their places (BeamKVCache.drop)
            order = cache.drop(dead)
            tok = [tok[i] for i in order]
            active = [active[order[a * k] // k] for a in range(len(order) // k)]
        with _autocast(device):
            logits = model(torch.tensor(tok, dtype=torch.long, device=device)[:, None], cache=cache)[:, -1, :]
    out = []
    for b in range(B):
        hyps = list(finished[b])
        if not done[b]:  # out of steps: the live beams count as unfinished answers
            for slot in range(k):
                s = scores[b][slot]
                if s != NEG:
                    ids = beams[b * k + slot]
                    hyps.append(Hypothesis(list(ids), s, s / max(len(ids), 1) ** length_penalty, False))
        hyps.sort(key=lambda h: (h.finished, h.score), reverse=True)
        out.append(hyps[:k])
    return out


def _best_allowed(cand, b, k, vocab, limit, beams, stop_set, constraint, lazy, finished, length_penalty,
                  top=None):
    """The next live beams of prompt b as [(score, parent row, id)], best first; candidates ending in a stop
    id go to `finished` (at most k in all). cand: (k * vocab,) summed log-probabilities of every extension;
    top: (scores, indices) of its best min(4k, k * vocab) as lists, when the caller has them already.

    Candidates are walked best first (the top 4k, then 16k, ...). With a lazy constraint each is tested
    with allows(); once the top 16k are used up that way, every live beam gets its full allowed set
    instead. The result equals walking the candidates of the fully masked scores."""
    NEG = float("-inf")
    out = []
    full: dict[int, set | None] = {}  # beam -> its full allowed set (None: unconstrained)
    processed: set[int] = set()

    def allowed(j, t):
        if t >= limit:
            return False
        if constraint is None:
            return True
        if j not in full:
            if lazy:
                return constraint.allows(b, beams[b * k + j], t)
            ids = constraint.allowed_ids(b, beams[b * k + j])
            full[j] = None if ids is None else set(ids)
        return full[j] is None or t in full[j]

    n = min(4 * k, cand.numel())
    while True:
        if top is None or len(top[0]) != n:
            top = [x.tolist() for x in cand.topk(n)]
        for s, i in zip(*top):
            if s == NEG:
                return out
            if i in processed:
                continue
            processed.add(i)
            j, t = divmod(i, vocab)
            if not allowed(j, t):
                continue
            parent = b * k + j
            if t in stop_set:
                m = len(beams[parent]) + 1
                finished.append(Hypothesis(list(beams[parent]), s, s / m ** length_penalty, True))
                if len(finished) >= k:
                    return out
                continue
            out.append((s, parent, t))
            if len(out) == k:
                return out
        if n >= cand.numel():
            return out
        if lazy and n >= 16 * k:  # the best candidates ran out: full allowed sets from here on
            lazy = False
        n = min(n * 4, cand.numel())
