"""gpt/model.py: shapes, an independent plain-PyTorch forward, both kernel backends, the KV cache,
masked targets, parameter and FLOP counts, sampling filters."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from gpt.model import GPT, BeamKVCache, GPTConfig, KVCache, build_model_config, sample_next
from tests.kernel_testing import UNIT_ROUNDOFF, gamma


def tiny(**kw):
    cfg = dict(n_layer=2, n_head=2, n_embd=32, block_size=48, vocab_size=101, dropout=0.0, bias=True)
    cfg.update(kw)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**cfg))
    # give biases and LayerNorm parameters non-trivial values, so a wiring bug cannot hide behind 0 and 1
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


def plain_forward(model, idx, targets):
    """nanoGPT's forward, written without kernels and without the fused residual: the ground truth."""
    c = model.config
    B, T = idx.shape
    x = model.wte(idx) + model.wpe(torch.arange(T))
    for blk in model.blocks:
        h = F.layer_norm(x, (c.n_embd,), blk.ln_1.weight, blk.ln_1.bias, 1e-5)
        q, k, v = blk.attn.qkv(h).split(c.n_embd, dim=2)
        q, k, v = (t.view(B, T, c.n_head, -1).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        x = x + blk.attn.proj((att @ v).transpose(1, 2).reshape(B, T, c.n_embd))
        h = F.layer_norm(x, (c.n_embd,), blk.ln_2.weight, blk.ln_2.bias, 1e-5)
        x = x + blk.mlp.proj(F.gelu(blk.mlp.fc(h), approximate="tanh"))
    x = F.layer_norm(x, (c.n_embd,), model.ln_f.weight, model.ln_f.bias, 1e-5)
    logits = x @ model.wte.weight.t()
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-100), logits


def loss_and_grads(model, idx, targets, forward):
    model.zero_grad(set_to_none=True)
    loss = forward(idx, targets)
    loss = loss[0] if isinstance(loss, tuple) else loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_shapes_and_loss_at_init():
    model = tiny()
    idx = torch.randint(0, 101, (3, 17))
    loss = model(idx, torch.randint(0, 101, (3, 17)))
    assert loss.shape == () and torch.isfinite(loss)
    assert abs(loss.item() - math.log(101)) < 0.5  # near-uniform predictions at init
    assert model(idx).shape == (3, 1, 101)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 49, dtype=torch.long))


@pytest.mark.parametrize("bias", [True, False])
def test_matches_plain_pytorch_forward_and_gradients(monkeypatch, bias):
    monkeypatch.setenv("KERNELS_BACKEND", "torch")
    model = tiny(bias=bias)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 101, (2, 40), generator=g)
    targets = torch.randint(0, 101, (2, 40), generator=g)
    targets[0, :11] = -100  # a prompt that is not learned
    loss, grads = loss_and_grads(model, idx, targets, model)
    ref_loss, ref_grads = loss_and_grads(model, idx, targets, lambda i, t: plain_forward(model, i, t))
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    # and the logits of generation mode are the last position's
    _, logits = plain_forward(model, idx, targets)
    torch.testing.assert_close(model(idx), logits[:, -1:], rtol=1e-5, atol=1e-5)


def test_masked_targets_are_ignored(monkeypatch):
    monkeypatch.setenv("KERNELS_BACKEND", "torch")
    model = tiny()
    idx = torch.randint(0, 101, (2, 20))
    targets = torch.randint(0, 101, (2, 20))
    masked = targets.clone()
    masked[:, :8] = -100
    full = model.hidden_states(idx)
    logits = full @ model.wte.weight.t()
    expect = F.cross_entropy(logits[:, 8:].reshape(-1, 101), targets[:, 8:].reshape(-1))
    torch.testing.assert_close(model(idx, masked), expect, rtol=1e-5, atol=1e-6)


def test_kernel_backends_agree(monkeypatch):
    """KERNELS_BACKEND=triton (Triton's CPU interpreter) and torch: same loss and gradients, fp32."""
    if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        pytest.skip("needs TRITON_INTERPRET=1 (set before Python starts) to run Triton kernels on CPU")
    model = tiny(n_embd=64, n_head=2, block_size=32, vocab_size=200)
    idx = torch.randint(0, 200, (2, 32))
    targets = torch.randint(0, 200, (2, 32))
    targets[1, :5] = -100
    monkeypatch.setenv("KERNELS_BACKEND", "torch")
    ref_loss, ref_grads = loss_and_grads(model, idx, targets, model)
    monkeypatch.setenv("KERNELS_BACKEND", "triton")
    loss, grads = loss_and_grads(model, idx, targets, model)  # every kernel exists: NotImplementedError fails
    torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-5)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-3, atol=2e-5, msg=name)


def test_beam_cache_matches_copied_prompt_rows(monkeypatch):
    """BeamKVCache (beams share their prompt's keys) computes what a KVCache with the prompt rows copied to
    every beam computes: left-padded prompts, several steps, beams reordered within their prompt and a
    prompt dropped midway. float64, so the two summation orders agree to ~1e-13; a beam reading another
    prompt's keys, a lost position or a wrong padding mask is off by O(1)."""
    monkeypatch.setenv("KERNELS_BACKEND", "torch")
    model = tiny().double().eval()
    g = torch.Generator().manual_seed(7)
    lengths, w = [9, 13, 11], 3
    T = max(lengths)
    pad = torch.tensor([T - n for n in lengths])
    idx = torch.randint(0, 101, (3, T), generator=g)
    prefix = KVCache(model.config, 3, T, "cpu", pad=pad)
    copied = KVCache(model.config, 3, T + 6, "cpu", pad=pad)
    with torch.no_grad():
        model.hidden_states(idx, prefix)
        model.hidden_states(idx, copied)
        copied.reorder(torch.arange(3).repeat_interleave(w))
        beam = BeamKVCache(prefix, w, 6)
        live = 3
        for step in range(6):
            tok = torch.randint(0, 101, (live * w, 1), generator=g)
            a, b = model.hidden_states(tok, beam), model.hidden_states(tok, copied)
            assert beam.length == copied.length
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
            # every beam takes a random beam of its own prompt
            src = [p * w + int(j) for p in range(live) for j in torch.randint(0, w, (w,), generator=g)]
            beam.reorder_generated(list(range(live * w)), src)
            copied.reorder(torch.tensor(src))
            if step == 2:  # the first prompt ends: the last one moves into its place
                dead = list(range(w))
                assert beam.drop(dead) == copied.drop(dead)
                live -= 1


def test_kv_cache_decoding_matches_full_forward(monkeypatch):
    monkeypatch.setenv("KERNELS_BACKEND", "torch")
    model = tiny().eval()
    idx = torch.randint(0, 101, (2, 30))
    h_full = model.hidden_states(idx)
    cache = KVCache(model.config, 2, model.config.block_size, "cpu")
    pieces = [model.hidden_states(idx[:, :12], cache)]  # the prompt at once, then one token at a time
    for t in range(12, 30):
        pieces.append(model.hidden_states(idx[:, t:t + 1], cache))
    assert cache.length == 30
    torch.testing.assert_close(torch.cat(pieces, dim=1), h_full, rtol=1e-4, atol=1e-5)
    # under autocast the cache holds the autocast dtype, so cached and new keys match (GPU sampling),
    # and decoding with it is a bf16 evaluation of the same function: as close to the fp32 forward as
    # the full bf16 forward is (each within the bf16 error model's rounding of the same operands; a
    # factor 2 between two such evaluations, plus 2 u_bf16 for one rounding of the output more or less).
    # A cache that loses or misplaces a position is off by O(1).
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full_bf16 = model.hidden_states(idx[:, :16]).float()
        cache = KVCache(model.config, 2, model.config.block_size, "cpu")
        pieces = [model.hidden_states(idx[:, :12], cache)]
        pieces += [model.hidden_states(idx[:, t:t + 1], cache) for t in range(12, 16)]
    assert cache.k.dtype == torch.bfloat16
    cached_bf16 = torch.cat(pieces, dim=1).float()
    u = UNIT_ROUNDOFF[torch.bfloat16]
    full_err = (full_bf16 - h_full[:, :16]).abs().amax(dim=-1)  # per position
    cached_err = (cached_bf16 - h_full[:, :16]).abs().amax(dim=-1)
    scale = h_full[:, :16].abs().amax(dim=-1)
    assert (cached_err <= 2 * full_err + 2 * u * scale).all(), (cached_err, full_err)


def test_generate_greedy_matches_argmax_loop_and_stops(monkeypatch):
    """Greedy generation with the KV cache, long past block_size (the cache restarts on the last half of
    the window whenever it is full), against a reference that recomputes the whole cropped context at
    every step without a cache: the logits of every step compared by value."""
    import gpt.model as gpt_model

    monkeypatch.setenv("KERNELS_BACKEND", "torch")
    block, n_new = 16, 40  # several restarts
    model = tiny(block_size=block).eval()
    prompt = torch.randint(0, 101, (2, 5))
    seen = []
    draw = gpt_model.sample_next

    def recording_sample_next(logits, *args, **kwargs):
        seen.append(logits.clone())
        return draw(logits, *args, **kwargs)

    monkeypatch.setattr(gpt_model, "sample_next", recording_sample_next)
    got = torch.cat(list(model.generate(prompt, n_new, temperature=0.0)), dim=1)
    monkeypatch.setattr(gpt_model, "sample_next", draw)
    assert got.shape == (2, n_new) and len(seen) == n_new
    history = torch.cat([prompt, got], dim=1)  # the reference is fed the generated tokens
    context, restarts = prompt.shape[1], 0  # how many tokens the model sees at this step
    for step in range(n_new):
        end = prompt.shape[1] + step
        with torch.no_grad():
            h = model.hidden_states(history[:, end - context:end])[:, -1]
            want = h @ model.wte.weight.t()
        # want's error: the final 32-term product's, gamma(32) |h||W|, plus the error of h itself, an
        # fp32 evaluation of a 2-layer model with sums of at most 4 * n_embd terms: 16 gamma(128) |h|
        bound = (gamma(32) + 16 * gamma(4 * model.config.n_embd)) * (h.abs() @ model.wte.weight.abs().t())
        err = (seen[step] - want).abs()
        assert (err <= bound).all(), f"step {step} (context {context}): error {err.max().item():.3g}"
        assert torch.equal(got[:, step], seen[step].argmax(-1))  # greedy: the argmax of those logits
        if context == block:
            context, restarts = block // 2, restarts + 1
        else:
            context += 1
    assert restarts >= 3  # the comparison went through several restarts
    tokens = got[0].tolist()
    k = max(i for i in range(len(tokens)) if tokens[i] not in tokens[:i])  # last first-occurrence
    stopped = list(model.generate(prompt[:1], n_new, temperature=0.0, stop_ids=[tokens[k]]))
    assert len(stopped) == k + 1 and int(stopped[-1]) == tokens[k]


def test_sampling_filters():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50, generator=g)
    assert torch.equal(sample_next(logits, 0.0), logits.argmax(-1, keepdim=True))
    assert torch.equal(sample_next(logits, 1.0, top_k=1, generator=g), logits.argmax(-1, keepdim=True))
    assert torch.equal(sample_next(logits, 1.0, top_p=1e-6, generator=g), logits.argmax(-1, keepdim=True))
    top5 = logits.topk(5, dim=-1).indices
    draws = torch.cat([sample_next(logits, 1.0, top_k=5, generator=g) for _ in range(200)], dim=1)
    assert all(set(draws[r].tolist()) <= set(top5[r].tolist()) for r in range(4))
    assert len(set(draws[0].tolist())) > 1  # really sampling, not argmax
    # top_p keeps the smallest prefix of the sorted distribution reaching p
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    draws = torch.cat([sample_next(probs.log(), 1.0, top_p=0.7, generator=g) for _ in range(300)], dim=1)
    assert set(draws[0].tolist()) == {0, 1}


def test_parameter_count_and_flops_of_gpt2_124m():
    with torch.device("meta"):
        model = GPT(build_model_config("gpt2-124m", vocab_size=50257))
    assert model.num_params(non_embedding=False) == 124_439_808  # GPT-2 small, tied head
    n = model.num_params()
    assert n == 124_439_808 - 1024 * 768
    assert model.flops_per_token(1024) == 6 * n + 12 * 12 * 768 * 1024


def test_residual_projections_use_scaled_init():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=8, n_head=4, n_embd=256, block_size=16, vocab_size=64))
    std = model.blocks[3].mlp.proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(16)) < 0.001
    assert abs(model.blocks[3].mlp.fc.weight.std().item() - 0.02) < 0.001
    # the LM head is the token embedding (tied): zeroing row j of wte zeroes logit j for inputs without j
    model = tiny()
    idx = torch.randint(1, 101, (2, 9))
    with torch.no_grad():
        model.wte.weight[0] = 0.0
        assert model(idx)[..., 0].abs().max().item() == 0.0
    assert not any("head" in name for name, _ in model.named_parameters())


def test_bad_config_is_value_error():
    with pytest.raises(ValueError, match="multiple of"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model_config("gpt5")


def _rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_gpu_backends_agree(monkeypatch, dtype):
    """On a GPU, KERNELS_BACKEND=triton (our kernels) and torch under autocast, each against the float64
    loss and gradients, per parameter, at GPT-2's head size (64) and a vocabulary that is not a power of two.

    Error model (tests/kernel_testing.py): autocast rounds the operands of every matmul to the dtype (u_t)
    and both paths sum in fp32 (gamma(n), n at most the B*T = 1024 tokens a weight gradient sums over).
    Our kernels store in the dtype where PyTorch's ops do and accumulate in fp32 as they do, so they make the
    same roundings in other orders: per parameter, our relative L2 error is at most 3x PyTorch's own plus
    4 u_t + gamma(1024) (one rounding of the stored result more or less on each side). A kernel that
    accumulated dW or a softmax sum in the dtype errs by ~sqrt(1024) u_t, ten times more."""
    import copy

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=4, n_embd=256, block_size=256, vocab_size=1000)).cuda()
    idx = torch.randint(0, 1000, (4, 256), device="cuda")
    targets = torch.randint(0, 1000, (4, 256), device="cuda")
    targets[:, :40] = -100

    def step(m, backend, autocast_dtype):
        monkeypatch.setenv("KERNELS_BACKEND", backend)
        m.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=autocast_dtype, enabled=autocast_dtype in (torch.bfloat16, torch.float16)):
            loss = m(idx, targets)
        loss.backward()
        return loss.detach().double(), {n: p.grad.double() for n, p in m.named_parameters()}

    ref_loss, ref_grads = step(copy.deepcopy(model).double(), "torch", torch.float64)
    torch_loss, torch_grads = step(model, "torch", dtype)
    loss, grads = step(model, "triton", dtype)
    floor = 4 * UNIT_ROUNDOFF[dtype] + gamma(idx.numel())

    def err(a, b):
        return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()

    assert err(loss, ref_loss) <= 3 * err(torch_loss, ref_loss) + floor
    for name in grads:
        ours, theirs = err(grads[name], ref_grads[name]), err(torch_grads[name], ref_grads[name])
        assert ours <= 3 * theirs + floor, f"{name}: relative error {ours:.3g}, PyTorch's {theirs:.3g}"


@pytest.mark.cuda
def test_gpu_kv_cache_generation_matches_full_forward(monkeypatch):
    monkeypatch.setenv("KERNELS_BACKEND", "auto")  # Triton attention with Tq != Tk while decoding
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=4, n_embd=256, block_size=128, vocab_size=500)).cuda().eval()
    idx = torch.randint(0, 500, (2, 100), device="cuda")
    with torch.no_grad():
        full = model.hidden_states(idx)
        cache = KVCache(model.config, 2, 128, "cuda")
        parts = [model.hidden_states(idx[:, :60], cache)] + [model.hidden_states(idx[:, t:t + 1], cache)
                                                              for t in range(60, 100)]
    assert _rel_err(torch.cat(parts, dim=1), full) < 1e-3


def test_loss_of_fully_masked_batch_is_zero_not_nan():
    """A fine-tuning window can hold only prompt tokens (all targets -100): the loss must be 0 with zero
    gradients, not NaN (which would stop the run)."""
    torch.manual_seed(0)
    model = GPT(build_model_config("tiny", vocab_size=97))
    idx = torch.randint(0, 97, (2, 8))
    loss = model(idx, torch.full((2, 8), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in model.parameters())
    # and with some learned tokens it is exactly the mean over them
    targets = torch.randint(0, 97, (2, 8))
    targets[0, :5] = -100
    logits = torch.nn.functional.linear(model.hidden_states(idx), model.wte.weight)
    expected = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
    torch.testing.assert_close(model(idx, targets), expected, rtol=1e-5, atol=1e-6)
