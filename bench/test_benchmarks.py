"""CPU benchmarks as pytest-benchmark entry points, for its comparison and histogram tools:

    pytest bench --benchmark-only                                 # run and print the table
    pytest bench --benchmark-only --benchmark-autosave            # keep a run (.benchmarks/)
    pytest bench --benchmark-only --benchmark-compare             # against the last saved run
    pytest bench --benchmark-only --benchmark-histogram=hist      # SVG histograms

Groups: the tokenizer (ours vs tiktoken, GPT-2's ranks from ../shared/data/gpt2, skipped when
absent) and the kernels' CPU paths (KERNELS_BACKEND=auto on CPU tensors = PyTorch's ops) beside the
naive reference, forward + backward. The GPU numbers come from bench/gpu_suite.sh, not from here.
Not collected by the normal test run (pyproject's testpaths is tests/).
"""
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
GPT2 = Path(os.environ.get("TEXT2SQL_SHARED", ROOT.parent / "shared")) / "data" / "gpt2"
TEXT = ("SELECT name, COUNT(*) FROM singer WHERE age > 30 GROUP BY country ORDER BY 2 DESC; "
        "How many singers are older than thirty in each country? ") * 400  # ~60 KB


@pytest.fixture(scope="module")
def gpt2_files():
    enc, bpe = GPT2 / "encoder.json", GPT2 / "vocab.bpe"
    if not (enc.exists() and bpe.exists()):
        pytest.skip(f"GPT-2's encoder.json / vocab.bpe not found under {GPT2}")
    return enc, bpe


@pytest.mark.benchmark(group="tokenizer: encode 60 KB")
def test_tokenizer_ours(benchmark, gpt2_files):
    from gpt.tokenizer import Tokenizer

    tok = Tokenizer.from_gpt2(*gpt2_files)
    ids = benchmark(tok.encode_ordinary, TEXT)
    assert len(ids) > 1000


@pytest.mark.benchmark(group="tokenizer: encode 60 KB")
def test_tokenizer_tiktoken(benchmark, gpt2_files):
    pytest.importorskip("tiktoken")
    from gpt.tokenizer import Tokenizer

    enc = Tokenizer.from_gpt2(*gpt2_files).to_tiktoken()  # same ranks and pattern, tiktoken's engine
    ids = benchmark(enc.encode_ordinary, TEXT)
    assert len(ids) > 1000


def _fwd_bwd(fn, *tensors):
    def run():
        for t in tensors:
            t.grad = None
        out = fn()
        out = out[0] if isinstance(out, tuple) else out
        out.float().sum().backward()
    return run


@pytest.fixture
def cpu_backend(monkeypatch):
    monkeypatch.setenv("KERNELS_BACKEND", "auto")  # PyTorch's ops on CPU tensors
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


@pytest.mark.parametrize("impl", ["kernels", "reference"])
@pytest.mark.benchmark(group="layer_norm + residual 2048 x 768, fwd+bwd (CPU)")
def test_layer_norm_cpu(benchmark, cpu_backend, impl):
    import kernels
    from kernels import reference

    g = torch.Generator().manual_seed(0)
    x, r = (torch.randn(2048, 768, generator=g).requires_grad_() for _ in range(2))
    w, b = torch.randn(768, generator=g).requires_grad_(), torch.randn(768, generator=g).requires_grad_()
    op = kernels.layer_norm if impl == "kernels" else reference.layer_norm
    benchmark(_fwd_bwd(lambda: op(x, w, b, residual=r), x, r, w, b))


@pytest.mark.parametrize("impl", ["kernels", "reference"])
@pytest.mark.benchmark(group="cross_entropy 512 x 50304, fwd+bwd (CPU)")
def test_cross_entropy_cpu(benchmark, cpu_backend, impl):
    import kernels
    from kernels import reference

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(512, 50304, generator=g).requires_grad_()
    targets = torch.randint(0, 50304, (512,), generator=g)
    op = kernels.cross_entropy if impl == "kernels" else reference.cross_entropy
    benchmark(_fwd_bwd(lambda: op(logits, targets), logits))


@pytest.mark.parametrize("impl", ["kernels", "reference"])
@pytest.mark.benchmark(group="attention causal B=1 H=4 T=512 D=64, fwd+bwd (CPU)")
def test_attention_cpu(benchmark, cpu_backend, impl):
    import kernels
    from kernels import reference

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 512, 64, generator=g).requires_grad_() for _ in range(3))
    op = kernels.attention if impl == "kernels" else reference.attention
    benchmark(_fwd_bwd(lambda: op(q, k, v, causal=True), q, k, v))
