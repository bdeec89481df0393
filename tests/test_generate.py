"""gpt/generate.py: greedy, sampling and beam search with a constraint hook, on a random tiny GPT.
(Prompts of different lengths, left-padded: tests/test_padded_decoding.py.)

Beam search of width 1 is greedy; beam hypotheses' log-probabilities equal a cache-free recomputation (the
KV cache rows follow their beams); a constraint is obeyed by every mode; padded vocabulary ids (model vocab
> tokenizer vocab) are never produced, even by a model that prefers them."""
import pytest
import torch

from gpt.generate import Hypothesis, PerRowConstraint, beam_search, decode_batch, generate_ids
from gpt.model import GPT, GPTConfig, KVCache

VOCAB, N_VOCAB = 128, 100  # model vocab padded past the tokenizer's 100 ids
STOP = 7


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=VOCAB))
    m.eval()
    return m


def prompts(n, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(10, N_VOCAB, (n, length), generator=g).tolist()


class EvenIds:
    """Allows only even ids (and the stop id once 3 tokens were written)."""

    def allowed_ids(self, row, generated):
        ids = list(range(0, N_VOCAB, 2))
        return ids + [STOP] if len(generated) >= 3 else ids

    def allows(self, row, generated, token):
        return token in self.allowed_ids(row, generated)


class OneRow:
    """EvenIds for one row, in the shape PerRowConstraint holds (no row argument)."""

    def allowed_ids(self, generated):
        return EvenIds().allowed_ids(0, generated)

    def allows(self, generated, token):
        return EvenIds().allows(0, generated, token)


def test_beam_width_one_is_greedy(model):
    ps = prompts(4, 9)
    greedy = decode_batch(model, ps, 12, 0.0, stop_ids={STOP}, n_vocab=N_VOCAB)
    beams = beam_search(model, ps, 1, 12, stop_ids={STOP}, n_vocab=N_VOCAB)
    assert [h[0].ids for h in beams] == greedy
    # and with a constraint
    greedy_c = decode_batch(model, ps, 12, 0.0, stop_ids={STOP}, n_vocab=N_VOCAB, constraint=EvenIds())
    beams_c = beam_search(model, ps, 1, 12, stop_ids={STOP}, n_vocab=N_VOCAB, constraint=EvenIds())
    assert [h[0].ids for h in beams_c] == greedy_c


def full_logprob(model, prompt, ids, n_vocab):
    """Sum of log p(ids | prompt) recomputed without a cache (the model's own normalisation)."""
    seq = torch.tensor([prompt + ids])
    total = 0.0
    for i, t in enumerate(ids):
        logits = model(seq[:, :len(prompt) + i])[0, -1].float()
        logits[n_vocab:] = float("-inf")
        total += torch.log_softmax(logits, -1)[t].item()
    return total


@pytest.mark.parametrize("width", [2, 4])
def test_beam_logprobs_match_a_cache_free_recomputation(model, width):
    ps = prompts(3, 6, seed=1)
    results = beam_search(model, ps, width, 8, stop_ids={STOP}, n_vocab=N_VOCAB)
    for p, hyps in zip(ps, results):
        assert 1 <= len(hyps) <= width
        for h in hyps:
            ids = h.ids + ([STOP] if h.finished else [])
            assert h.logprob == pytest.approx(full_logprob(model, p, ids, N_VOCAB), abs=1e-4)
        # best first; distinct hypotheses
        assert [h.score for h in hyps if h.finished] == sorted([h.score for h in hyps if h.finished], reverse=True)
        assert len({tuple(h.ids) for h in hyps}) == len(hyps)


def test_beam_search_batch_equals_one_prompt_at_a_time(model):
    ps = prompts(3, 5, seed=2)
    together = beam_search(model, ps, 3, 8, stop_ids={STOP}, n_vocab=N_VOCAB)
    alone = [beam_search(model, [p], 3, 8, stop_ids={STOP}, n_vocab=N_VOCAB)[0] for p in ps]
    assert [[h.ids for h in hs] for hs in together] == [[h.ids for h in hs] for hs in alone]


class StopByRow:
    """Row r may stop after r + 2 ids and must after r + 4: prompts of one batch finish at different steps."""

    def __init__(self, shift=0):
        self.shift = shift

    def allowed_ids(self, row, generated):
        row += self.shift
        if len(generated) >= row + 4:
            return [STOP]
        ids = list(range(10, N_VOCAB))
        return ids + [STOP] if len(generated) >= row + 2 else ids

    def allows(self, row, generated, token):
        return token in self.allowed_ids(row, generated)


@pytest.mark.parametrize("early_stop", [False, True])
def test_prompts_finishing_at_different_steps(model, early_stop):
    """Finished prompts leave the batch (their cache rows are dropped): the others' hypotheses and
    log-probabilities are unchanged, as if each prompt were searched alone."""
    ps = prompts(4, 5, seed=4)
    together = beam_search(model, ps, 3, 10, {STOP}, n_vocab=N_VOCAB, constraint=StopByRow(),
                           early_stop=early_stop)
    alone = [beam_search(model, [p], 3, 10, {STOP}, n_vocab=N_VOCAB, constraint=StopByRow(r),
                         early_stop=early_stop)[0] for r, p in enumerate(ps)]
    assert [[h.ids for h in hs] for hs in together] == [[h.ids for h in hs] for hs in alone]
    for r, (p, hyps) in enumerate(zip(ps, together)):
        assert hyps and all(h.finished and r + 2 <= len(h.ids) <= r + 4 for h in hyps)
        for h in hyps:
            assert h.logprob == pytest.approx(full_logprob(model, p, h.ids + [STOP], N_VOCAB), abs=1e-4)
        if not early_stop:
            assert len(hyps) == 3


def test_early_stop_keeps_the_best_finished_hypothesis_first(model):
    ps = prompts(3, 6, seed=5)
    full = beam_search(model, ps, 4, 10, {STOP}, n_vocab=N_VOCAB, constraint=StopByRow())
    early = beam_search(model, ps, 4, 10, {STOP}, n_vocab=N_VOCAB, constraint=StopByRow(), early_stop=True)
    for f, e in zip(full, early):
        assert 1 <= len(e) <= len(f)
        assert [h.score for h in e] == sorted((h.score for h in e), reverse=True)
        assert all(h.finished for h in e)  # (the live beams it dropped are not returned)


def test_constraint_obeyed_by_every_mode(model):
    ps = prompts(2, 7, seed=3)
    c = EvenIds()
    for rows in (decode_batch(model, ps, 10, 0.0, {STOP}, n_vocab=N_VOCAB, constraint=c),
                 decode_batch(model, ps, 10, 1.5, {STOP}, torch.Generator().manual_seed(0), n_vocab=N_VOCAB,
                              constraint=c)):
        assert all(t % 2 == 0 for r in rows for t in r)
    for hyps in beam_search(model, ps, 3, 10, {STOP}, n_vocab=N_VOCAB, constraint=c):
        assert all(t % 2 == 0 for h in hyps for t in h.ids)
        assert all(len(h.ids) >= 3 for h in hyps if h.finished)
    one = generate_ids(model, ps[0], 10, 0.0, stop_ids={STOP}, n_vocab=N_VOCAB, constraint=PerRowConstraint([OneRow()]))
    assert all(t % 2 == 0 for t in one)


class Nothing:
    def allowed_ids(self, row, generated):
        return []


def test_a_row_left_without_ids_stops(model):
    ps = prompts(2, 5)
    assert decode_batch(model, ps, 6, 0.0, {STOP}, n_vocab=N_VOCAB, constraint=Nothing()) == [[], []]
    assert beam_search(model, ps, 2, 6, {STOP}, n_vocab=N_VOCAB, constraint=Nothing()) == [[], []]


def test_padded_ids_are_never_produced(model):
    torch.manual_seed(1)
    m = GPT(model.config)
    m.eval()
    with torch.no_grad():  # make the padding rows of the tied embedding win every argmax
        m.wte.weight[N_VOCAB:] = 50.0 * torch.randn(VOCAB - N_VOCAB, m.config.n_embd)
    ps = prompts(3, 6, seed=4)
    unmasked = decode_batch(m, ps, 5, 0.0, {STOP})
    assert any(t >= N_VOCAB for r in unmasked for t in r), "the test model should prefer padded ids"
    for rows in (decode_batch(m, ps, 8, 0.0, {STOP}, n_vocab=N_VOCAB),
                 decode_batch(m, ps, 8, 1.0, {STOP}, torch.Generator().manual_seed(0), n_vocab=N_VOCAB),
                 [h.ids for hs in beam_search(m, ps, 3, 8, {STOP}, n_vocab=N_VOCAB) for h in hs]):
        assert all(t < N_VOCAB for r in rows for t in r)


def test_kv_cache_reorder_copies_and_drops_rows():
    cfg = GPTConfig(n_layer=1, n_head=1, n_embd=4, block_size=8, vocab_size=16)
    cache = KVCache(cfg, 2, 8, "cpu")
    k = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).view(2, 1, 3, 4)
    cache.append(0, k, -k)
    cache.length = 3
    cache.reorder(torch.tensor([1, 1, 0]))
    assert cache.k.shape[1] == 3 and cache.shape[1] == 3
    assert torch.equal(cache.k[0, 0, :, :3], k[1]) and torch.equal(cache.k[0, 2, :, :3], k[0])
    assert torch.equal(cache.v[0, 1, :, :3], -k[1])


def test_kv_cache_reorder_carries_pad():
    """Beam search copies and drops cache rows: each row's left padding must follow its keys and values."""
    cfg = GPTConfig(n_layer=1, n_head=1, n_embd=4, block_size=8, vocab_size=16)
    cache = KVCache(cfg, 3, 8, "cpu", pad=torch.tensor([0, 2, 5]))
    cache.reorder(torch.tensor([2, 2, 0, 1]))
    assert cache.pad.tolist() == [5, 5, 0, 2] and cache.shape[1] == 4
    assert KVCache(cfg, 2, 8, "cpu").pad is None  # no padding: the unpadded path
    with pytest.raises(ValueError):
        KVCache(cfg, 2, 8, "cpu", pad=torch.tensor([0, 1, 2]))


def test_kv_cache_drop_moves_the_last_rows_into_the_holes():
    cfg = GPTConfig(n_layer=1, n_head=1, n_embd=4, block_size=8, vocab_size=16)
    cache = KVCache(cfg, 6, 8, "cpu", pad=torch.tensor([0, 1, 2, 3, 4, 5]))
    k = torch.arange(6 * 1 * 3 * 4, dtype=torch.float32).view(6, 1, 3, 4)
    cache.append(0, k, -k)
    cache.length = 3
    order = cache.drop([2, 3])  # a group of two (a prompt's two beams): rows 4, 5 move into 2, 3 in order
    assert order == [0, 1, 4, 5] and cache.shape[1] == 4 and cache.k.shape[1] == 4
    assert cache.pad.tolist() == [0, 1, 4, 5]
    for new, old in enumerate(order):
        assert torch.equal(cache.k[0, new, :, :3], k[old]) and torch.equal(cache.v[0, new, :, :3], -k[old])
    assert cache.drop([3]) == [0, 1, 2] and cache.drop([0]) == [2, 1]  # the last row fills the hole


def test_errors_are_value_errors(model):
    with pytest.raises(ValueError):  # an empty prompt
        beam_search(model, [[1, 2], []], 2, 4, {STOP})
    with pytest.raises(ValueError):  # padded prompts must leave room in the context
        decode_batch(model, [[11] * 64, [12] * 3], 4, 0.0, {STOP})
    with pytest.raises(ValueError):
        beam_search(model, [[1, 2]], 0, 4, {STOP})
    with pytest.raises(ValueError):
        decode_batch(model, [], 4)
    assert isinstance(Hypothesis([1], -1.0, -0.5, True), Hypothesis)


class RandomSets:
    """A fixed random allowed set per (row, beam ids so far); lazy (with allows) or not."""

    def __init__(self, seed, vocab, lazy):
        self.g, self.vocab, self.sets = torch.Generator().manual_seed(seed), vocab, {}
        if lazy:
            self.allows = lambda row, generated, token: token in self.allowed_ids(row, generated)

    def allowed_ids(self, row, generated):
        key = (row, tuple(generated))
        if key not in self.sets:  # sizes from none to all, small ones most often (a string literal's few ids)
            size = int(self.vocab ** torch.rand(1, generator=self.g).item()) - 1
            self.sets[key] = torch.randperm(self.vocab, generator=self.g)[:size].tolist()
        return self.sets[key]


@pytest.mark.parametrize("lazy", [True, False])
def test_best_allowed_walks_the_fully_masked_candidates(lazy):
    """beam_search's candidate walk (_best_allowed: the top 4k, then 16k, ... tested one by one, full allowed
    sets once the top 16k ran out) picks what walking every candidate of the fully masked scores in order
    picks: the same live beams, in order, and the same finished hypotheses."""
    from gpt.generate import _best_allowed

    k, vocab, limit, stops = 3, 60, 55, {5, 6}
    for seed in range(200):
        g = torch.Generator().manual_seed(seed)
        cand = torch.randn(k * vocab, generator=g, dtype=torch.float64) * 3 - 10
        dead = torch.rand(k, generator=g) < 0.3
        dead[0] = False  # (beam 0 is always live)
        cand.view(k, vocab)[dead] = float("-inf")
        beams = [[seed, j] for j in range(k)]
        constraint = RandomSets(seed, vocab, lazy)
        finished = []
        got = _best_allowed(cand, 0, k, vocab, limit, beams, stops, constraint, lazy, finished, 1.0)

        want, want_finished = [], []
        masked = torch.full_like(cand, float("-inf"))
        for j in range(k):
            for t in constraint.allowed_ids(0, beams[j]):
                if t < limit:
                    masked[j * vocab + t] = cand[j * vocab + t]
        for i in masked.argsort(descending=True).tolist():
            s = masked[i].item()
            if s == float("-inf") or len(want) == k or len(want_finished) == k:
                break
            j, t = divmod(i, vocab)
            if t in stops:
                want_finished.append((s, j))
            else:
                want.append((s, j, t))
        assert [(s, p, t) for s, p, t in got] == want, seed
        assert [(h.logprob, h.ids) for h in finished] == [(s, beams[j]) for s, j in want_finished], seed
