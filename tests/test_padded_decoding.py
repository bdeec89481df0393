"""Prompts of different lengths decoded in one batch, left-padded (gpt/model.py KVCache.pad, gpt/generate.py
left_pad, text2sql/decoding.py length_sorted_batches): every prompt gets what it gets decoded alone.

Logits are compared within a tolerance from an error model of floating-point rounding (rounding_tolerance);
the same comparison in fp64 leaves rounding out, and a mask that lets padding through must fail it. Greedy
and beam search (with a per-row constraint, and rows whose context fills before max_new_tokens) must give
the same ids; decode_sql_batch the same SQL as batch_size=1."""
import sqlite3

import pytest
import torch

from gpt.generate import PerRowConstraint, beam_search, decode_batch, left_pad
from gpt.model import GPT, GPTConfig, KVCache

VOCAB, N_VOCAB, BLOCK = 128, 100, 64
STOP = 7


def make_model(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=BLOCK, vocab_size=VOCAB)).to(dtype).eval()


def random_prompts(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(10, N_VOCAB, (n,), generator=g).tolist() for n in lengths]


def rounding_tolerance(model, y, keys):
    """How far two evaluations of the same logits may drift apart by rounding alone (an error model, not a
    proof). A dot product of n terms rounded at unit roundoff u is off by at most gamma_n * sum |a_i b_i|,
    gamma_n = n u / (1 - n u). Errors made earlier reach a logit through the same sums, so n counts every
    reduction on the way from the embedding to a logit: per layer the two LayerNorms (mean and variance,
    2C each), q/k/v (C), q.k (head dim), the softmax's sum and p.v (`keys` each), attn.proj (C), mlp.fc (C),
    mlp.proj (4C); then ln_f (2C) and the head (C). The scale is the head's sum |y| . |w| (y the final
    LayerNorm's output); padded and alone both round, hence 2x."""
    cfg = model.config
    C, D = cfg.n_embd, cfg.n_embd // cfg.n_head
    n = cfg.n_layer * (2 * C + C + D + 2 * keys + C + 2 * C + C + 4 * C) + 3 * C
    u = torch.finfo(y.dtype).eps / 2
    gamma = n * u / (1 - n * u)
    scale = (y.abs() @ model.wte.weight.abs().t()).max().item()
    return 2 * gamma * scale


def padded_and_alone_logits(model, prompts, steps, seed, device="cpu"):
    """Logits of every real position: the prompts left-padded in one batch, then `steps` tokens fed one
    at a time through the padded cache; and each prompt alone through its own cache. Also the tolerance."""
    g = torch.Generator().manual_seed(seed + 1)
    fed = torch.randint(10, N_VOCAB, (len(prompts), steps), generator=g).to(device)
    idx, pad = left_pad(prompts, device, BLOCK)
    assert pad is not None
    cache = KVCache(model.config, len(prompts), idx.shape[1] + steps, device, pad=pad)
    ys = [model.hidden_states(idx, cache)] + [model.hidden_states(fed[:, s:s + 1], cache) for s in range(steps)]
    y_padded = torch.cat(ys, dim=1)
    padded, alone, tol = [], [], 0.0
    for r, p in enumerate(prompts):
        c = KVCache(model.config, 1, len(p) + steps, device)  # no pad: the kernels.attention path
        ys = [model.hidden_states(torch.tensor([p], device=device), c)] + [model.hidden_states(fed[r:r + 1, s:s + 1], c)
                                                            for s in range(steps)]
        y_alone = torch.cat(ys, dim=1)[0]
        alone.append(y_alone @ model.wte.weight.t())
        padded.append(y_padded[r, int(pad[r]):] @ model.wte.weight.t())
        tol = max(tol, rounding_tolerance(model, y_alone, idx.shape[1] + steps))
    return padded, alone, tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_padded_logits_equal_each_prompt_alone(dtype):
    model = make_model(dtype)
    prompts = random_prompts([23, 5, 40, 17, 40, 1], seed=7)
    with torch.no_grad():
        padded, alone, tol = padded_and_alone_logits(model, prompts, steps=6, seed=3)
    for p, a in zip(padded, alone):
        assert p.shape == a.shape
        assert (p - a).abs().max().item() <= tol, ((p - a).abs().max().item(), tol)


@pytest.mark.cuda
def test_cuda_padded_logits_equal_each_prompt_alone(monkeypatch):
    """The same on a GPU: the padded batch takes SDPA with the padding mask, each prompt alone our
    Triton attention (KERNELS_BACKEND=auto), both in fp32 (no TF32: PyTorch's default for matmuls)."""
    monkeypatch.setenv("KERNELS_BACKEND", "auto")
    model = make_model().cuda()
    prompts = random_prompts([23, 5, 40, 17, 40, 1], seed=7)
    with torch.no_grad():
        padded, alone, tol = padded_and_alone_logits(model, prompts, steps=6, seed=3, device="cuda")
    for p, a in zip(padded, alone):
        assert p.shape == a.shape
        assert (p - a).abs().max().item() <= tol, ((p - a).abs().max().item(), tol)


def test_the_tolerance_catches_padding_that_leaks(monkeypatch):
    """A mask that forgets the padding (every slot visible, causally) moves the logits far past the
    tolerance: the test above can fail."""
    model = make_model()
    prompts = random_prompts([23, 5, 40], seed=11)

    def causal_only(self, t):
        i = torch.arange(self.length, self.length + t)[:, None]
        j = torch.arange(self.length + t)[None, :]
        return (j <= i).expand(self.pad.shape[0], 1, t, self.length + t)

    monkeypatch.setattr(KVCache, "attention_mask", causal_only)
    with torch.no_grad():
        padded, alone, tol = padded_and_alone_logits(model, prompts, steps=3, seed=3)
    assert (padded[0] - alone[0]).abs().max().item() > 100 * tol  # row 0 is padded by 17 slots
    assert (padded[2] - alone[2]).abs().max().item() <= tol       # row 2 is not padded


def test_padding_queries_give_no_nan():
    """A padding query sees no real key; it must see some key (itself), or a softmax over nothing is 0/0.
    (PyTorch's CPU attention happens to return 0 for such a row; a plain masked softmax gives NaN.)"""
    model = make_model()
    idx, pad = left_pad(random_prompts([30, 2], seed=5), "cpu", BLOCK)
    cache = KVCache(model.config, 2, idx.shape[1], "cpu", pad=pad)
    mask = cache.attention_mask(idx.shape[1])
    assert mask.any(dim=-1).all()
    scores = torch.randn(mask.shape).masked_fill(~mask, float("-inf"))
    assert torch.isfinite(torch.softmax(scores, dim=-1)).all()
    with torch.no_grad():
        y = model.hidden_states(idx, cache)
    assert torch.isfinite(y).all()


class ResidueRow:
    """One row's toy allowed set: ids = `residue` mod 3; the stop id too once `after` ids were written,
    only the stop id after `after` + 2 (rows of one batch end at different steps)."""

    def __init__(self, residue, after):
        self.residue, self.after = residue, after

    def allowed_ids(self, generated):
        if len(generated) >= self.after + 2:
            return [STOP]
        ids = [i for i in range(10, N_VOCAB) if i % 3 == self.residue]
        return ids + [STOP] if len(generated) >= self.after else ids

    def allows(self, generated, token):
        return token in self.allowed_ids(generated)


# prompts of 60, 58 and 55 tokens have room for 4, 6 and 9 new tokens only (block 64): their rows end first
LENGTHS = [9, 3, 60, 58, 55, 20]


@pytest.mark.parametrize("constrained", [False, True])
def test_greedy_padded_batch_equals_each_prompt_alone(constrained, monkeypatch):
    model = make_model()
    prompts = random_prompts(LENGTHS, seed=21)
    rows = [ResidueRow(r % 3, 2 + r % 4) for r in range(len(prompts))]
    con = PerRowConstraint(rows) if constrained else None
    dropped = []  # rows dropped from the batch, step by step, as they end
    drop = KVCache.drop
    monkeypatch.setattr(KVCache, "drop", lambda self, rows: dropped.append(len(rows)) or drop(self, rows))
    together = decode_batch(model, prompts, 12, 0.0, {STOP}, n_vocab=N_VOCAB, constraint=con)
    assert len(dropped) >= 2, dropped  # rows left the batch at different steps
    alone = [decode_batch(model, [p], min(12, BLOCK - len(p)), 0.0, {STOP}, n_vocab=N_VOCAB,
                          constraint=PerRowConstraint([rows[r]]) if constrained else None)[0]
             for r, p in enumerate(prompts)]
    assert together == alone
    assert all(len(ids) <= BLOCK - n for ids, n in zip(together, LENGTHS))
    assert any(len(ids) > BLOCK - 60 for ids in together), "some row should outlast the 60-token prompt's"


def test_sampling_a_padded_batch_obeys_each_rows_constraint_and_budget():
    model = make_model()
    prompts = random_prompts(LENGTHS, seed=23)
    rows = [ResidueRow(r % 3, 20) for r in range(len(prompts))]  # no stop before 20 ids: budgets end rows
    out = decode_batch(model, prompts, 12, 1.0, {STOP}, torch.Generator().manual_seed(0), n_vocab=N_VOCAB,
                       constraint=PerRowConstraint(rows))
    assert [len(ids) for ids in out] == [min(12, BLOCK - n) for n in LENGTHS]
    assert all(t % 3 == r % 3 for r, ids in enumerate(out) for t in ids)


@pytest.mark.parametrize("early_stop", [False, True])
def test_beam_search_padded_batch_equals_each_prompt_alone(early_stop):
    model = make_model()
    prompts = random_prompts(LENGTHS, seed=22)
    rows = [ResidueRow(r % 3, 2 + r % 4) for r in range(len(prompts))]
    together = beam_search(model, prompts, 3, 12, {STOP}, n_vocab=N_VOCAB, constraint=PerRowConstraint(rows),
                           early_stop=early_stop)
    alone = [beam_search(model, [p], 3, 12, {STOP}, n_vocab=N_VOCAB, constraint=PerRowConstraint([rows[r]]),
                         early_stop=early_stop)[0] for r, p in enumerate(prompts)]
    for hs, ha in zip(together, alone):
        assert [(h.ids, h.finished) for h in hs] == [(h.ids, h.finished) for h in ha]
        # fp32 rounding only (see rounding_tolerance: these sums are of a few log-probabilities)
        assert [h.logprob for h in hs] == pytest.approx([h.logprob for h in ha], abs=1e-4)
    assert all(len(h.ids) <= BLOCK - n for hs, n in zip(together, LENGTHS) for h in hs)
    assert any(not h.finished for hs in together for h in hs), "some prompt should run out of context"


@pytest.mark.cuda
def test_cuda_greedy_and_beam_padded_batches_equal_each_prompt_alone(monkeypatch):
    """Greedy and beam search on a GPU (KV-cache copies and drops, SDPA with a mask for the padded
    batch, our attention for one prompt): the same ids as each prompt decoded alone. In fp32: decoding's
    bf16 autocast would round the two paths' logits apart by ~1e-2, enough to flip near-ties of an
    untrained model's argmax; fp32 leaves ~1e-6, as on the CPU."""
    import gpt.generate

    monkeypatch.setenv("KERNELS_BACKEND", "auto")
    monkeypatch.setattr(gpt.generate, "_autocast", lambda device: torch.autocast("cuda", enabled=False))
    model = make_model().cuda()
    prompts = random_prompts(LENGTHS, seed=22)
    rows = [ResidueRow(r % 3, 2 + r % 4) for r in range(len(prompts))]
    greedy = decode_batch(model, prompts, 12, 0.0, {STOP}, n_vocab=N_VOCAB, constraint=PerRowConstraint(rows))
    assert greedy == [decode_batch(model, [p], min(12, BLOCK - len(p)), 0.0, {STOP}, n_vocab=N_VOCAB,
                                   constraint=PerRowConstraint([rows[r]]))[0] for r, p in enumerate(prompts)]
    together = beam_search(model, prompts, 3, 12, {STOP}, n_vocab=N_VOCAB, constraint=PerRowConstraint(rows))
    alone = [beam_search(model, [p], 3, 12, {STOP}, n_vocab=N_VOCAB, constraint=PerRowConstraint([rows[r]]))[0]
             for r, p in enumerate(prompts)]
    for hs, ha in zip(together, alone):
        assert [(h.ids, h.finished) for h in hs] == [(h.ids, h.finished) for h in ha]
        assert [h.logprob for h in hs] == pytest.approx([h.logprob for h in ha], abs=1e-4)


def test_unpadded_batches_take_the_causal_kernel(monkeypatch):
    """Prompts of one length build no mask (training and equal-length decoding run as before)."""
    model = make_model()

    def no_mask(self, t):
        raise AssertionError("an unpadded batch asked for a padding mask")

    monkeypatch.setattr(KVCache, "attention_mask", no_mask)
    prompts = random_prompts([8, 8, 8], seed=4)
    assert left_pad(prompts, "cpu", BLOCK)[1] is None
    decode_batch(model, prompts, 5, 0.0, {STOP}, n_vocab=N_VOCAB)
    beam_search(model, prompts, 2, 5, {STOP}, n_vocab=N_VOCAB)


# ---- text2sql/decoding.py: batches of similar length


def test_length_sorted_batches_bound_the_padding():
    from text2sql.decoding import length_sorted_batches

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(20, 420, (300,), generator=g).tolist() + [5, 6, 400]
    batches = list(length_sorted_batches(lengths, 8, max_pad_fraction=0.25))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert 1 <= len(b) <= 8 and longest - min(lengths[i] for i in b) <= 0.25 * longest
    assert [lengths[b[0]] for b in batches] == sorted(lengths[b[0]] for b in batches)  # shortest first
    assert sum(len(b) for b in batches) / len(batches) > 7  # dense lengths: nearly full batches


@pytest.fixture(scope="module")
def sql_setup(tmp_path_factory):
    from gpt.tokenizer import Tokenizer
    from text2sql.prompt import SPECIAL_TOKENS
    from text2sql.schema import read_schema

    db = tmp_path_factory.mktemp("padded") / "db.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INT);
        CREATE TABLE concert (id INTEGER PRIMARY KEY, singer_id INT, venue TEXT, year INT);
        INSERT INTO singer VALUES (1, 'Ann', 'France', 31), (2, 'Bo', 'Chile', 45), (3, 'Cy', 'Japan', 27);
        INSERT INTO concert VALUES (1, 1, 'Arena', 2019), (2, 3, 'Dome', 2021);
    """)
    conn.commit()
    conn.close()
    schema = read_schema(db)
    questions = ["How many singers are there?",
                 "What are the names of the singers from France, listed by their age from the oldest down?",
                 "Which venue hosted a concert in 2021?",
                 "Names of singers older than 30",
                 "For every singer from Chile or Japan, what is the venue and the year of each of their concerts, "
                 "and how old were they?",
                 "Count concerts"]
    tok = Tokenizer.train([schema.to_text()] * 20 + questions * 20 + [
        "SELECT name FROM singer WHERE country = 'France' ORDER BY age DESC",
        "SELECT COUNT(*) FROM concert WHERE year = 2021"] * 20, 400, SPECIAL_TOKENS)
    return db, schema, questions, tok


@pytest.mark.parametrize("mode", ["greedy", "constrained", "beam+exec"])
def test_decode_sql_batch_on_mixed_lengths_equals_batch_size_one(sql_setup, mode, monkeypatch):
    import text2sql.decoding as decoding
    from text2sql.decoding import SQLContext, decode_sql_batch
    from text2sql.prompt import fit_and_encode_prompt, special_token_ids

    db, schema, questions, tok = sql_setup
    block, max_sql, max_new = 96, 24, 40
    torch.manual_seed(1)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=block, vocab_size=512)).eval()
    with torch.no_grad():  # control tokens (every one ends the SQL) get logit 0: unconstrained greedy writes text
        model.wte.weight[sorted(special_token_ids(tok).values())] = 0.0
    prompts = [fit_and_encode_prompt(tok, schema, q, block, max_sql, db) for q in questions]
    contexts = [SQLContext(schema, q, db) for q in questions]
    lengths = [len(p) for p in prompts]
    assert len(set(lengths)) >= 4 and any(block - n < max_new for n in lengths), lengths  # some budgets bind

    seen = []
    for name in ("beam_search", "decode_batch"):
        real = getattr(decoding, name)
        monkeypatch.setattr(decoding, name, lambda m, ps, *a, _real=real, **k: seen.append(
            [len(p) for p in ps]) or _real(m, ps, *a, **k))
    together = decode_sql_batch(model, tok, prompts, contexts, mode, max_new, beam_width=2, batch_size=32)
    assert any(len(set(b)) > 1 for b in seen), seen  # some batch mixed lengths
    alone = decode_sql_batch(model, tok, prompts, contexts, mode, max_new, beam_width=2, batch_size=1)
    assert together == alone, together


@pytest.mark.parametrize("mode", ["greedy", "constrained", "beam+exec"])
def test_decoding_pauses_the_collector_and_leaves_no_cycles_behind(sql_setup, mode, monkeypatch):
    """decode_sql_batch pauses Python's cyclic garbage collector (text2sql.decoding.collector_paused): safe
    only while decoding makes no reference cycles, whose garbage would then wait for the next collection."""
    import gc

    import text2sql.decoding as decoding
    from text2sql.decoding import SQLContext, decode_sql_batch
    from text2sql.prompt import fit_and_encode_prompt

    db, schema, questions, tok = sql_setup
    torch.manual_seed(2)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=96, vocab_size=512)).eval()
    prompts = [fit_and_encode_prompt(tok, schema, q, 96, 24, db) for q in questions]
    contexts = [SQLContext(schema, q, db) for q in questions]
    enabled_inside, collected = [], []
    real = decoding._decode_sql_batch
    monkeypatch.setattr(decoding, "_decode_sql_batch",
                        lambda *a: enabled_inside.append(gc.isenabled()) or real(*a))

    def count(phase, info):  # (a collection may run as the pause ends: what it finds counts too)
        if phase == "stop":
            collected.append(info["collected"])

    gc.collect()
    gc.callbacks.append(count)
    try:
        sql = decode_sql_batch(model, tok, prompts, contexts, mode, 40, beam_width=2, batch_size=4)
    finally:
        gc.callbacks.remove(count)
    assert len(sql) == len(questions) and enabled_inside == [False] and gc.isenabled()
    assert sum(collected) + gc.collect() == 0  # decoding left nothing that only the collector can free
