"""kernels.attention_qkv: attention over the packed (B, T, 3C) projection, output in (B, T, C).

The packed op runs the same Triton kernels as kernels.attention on strided views (q, k, v cut from
qkv; the output and the three gradients written in place through their strides), so it must give
bit for bit what attention() gives on q, k, v split and transposed, with the output transposed back
and dq, dk, dv concatenated. attention() itself is checked against the float64 reference with an
error bound in tests/test_attention.py; here any difference at all is a bug (a wrong stride, a
head written into the wrong slot). CPU: Triton's interpreter (fp32, fp16); GPU: the `cuda` tests.
"""
import pytest
import torch

import kernels
from kernels.backend import triton_interpreting

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in exp2:RuntimeWarning")


def split_heads(qkv, n_head):
    B, T, C3 = qkv.shape
    return [t.view(B, T, n_head, C3 // 3 // n_head).transpose(1, 2) for t in qkv.split(C3 // 3, dim=2)]


def unpacked(qkv, n_head, **kw):
    """The reference composition: split, attention() on (B, H, T, D), join the heads."""
    B, T, C3 = qkv.shape
    y = kernels.attention(*split_heads(qkv, n_head), **kw)
    return y.transpose(1, 2).reshape(B, T, C3 // 3)


def run(fn, qkv, do, **kw):
    leaf = qkv.detach().clone().requires_grad_()
    out = fn(leaf, **kw)
    out.backward(do)
    return out.detach(), leaf.grad


def packed_inputs(B, T, H, D, dtype, device="cpu", seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    qkv = torch.randn(B, T, 3 * H * D, generator=g, device=device).to(dtype)
    do = torch.randn(B, T, H * D, generator=g, device=device).to(dtype)
    return qkv, do


@pytest.fixture
def triton_backend(monkeypatch):
    if not triton_interpreting():
        pytest.skip("run with TRITON_INTERPRET=1 to test the Triton kernels on CPU")
    monkeypatch.setenv("KERNELS_BACKEND", "triton")


@pytest.mark.parametrize("B,T,H,D,dtype", [(2, 45, 3, 32, torch.float32), (1, 70, 2, 64, torch.float16),
                                           (3, 1, 2, 16, torch.float32)])
def test_packed_equals_split_attention_bitwise(triton_backend, B, T, H, D, dtype):
    qkv, do = packed_inputs(B, T, H, D, dtype, seed=T + D)
    out, dqkv = run(lambda x: kernels.attention_qkv(x, H), qkv, do)
    want_out, want_dqkv = run(lambda x: unpacked(x, H), qkv, do)
    assert out.shape == (B, T, H * D) and dqkv.shape == qkv.shape
    assert torch.equal(out, want_out)
    assert torch.equal(dqkv, want_dqkv)
    assert out.abs().sum() > 0 and all(g.abs().sum() > 0 for g in dqkv.split(H * D, dim=2))


def test_packed_scale_and_other_head_dims(triton_backend):
    """An explicit scale; a head dim the kernels take only zero-padded (40) goes the split way."""
    qkv, do = packed_inputs(1, 33, 2, 32, torch.float32, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(run(lambda x: kernels.attention_qkv(x, 2, scale=0.3), qkv, do),
                                                 run(lambda x: unpacked(x, 2, scale=0.3), qkv, do)))
    qkv, do = packed_inputs(1, 33, 2, 40, torch.float32, seed=6)
    assert all(torch.equal(a, b) for a, b in zip(run(lambda x: kernels.attention_qkv(x, 2), qkv, do),
                                                 run(lambda x: unpacked(x, 2), qkv, do)))


def test_torch_backend_is_the_split_path(monkeypatch):
    monkeypatch.setenv("KERNELS_BACKEND", "torch")
    qkv, do = packed_inputs(2, 20, 2, 16, torch.float32, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(run(lambda x: kernels.attention_qkv(x, 2), qkv, do),
                                                 run(lambda x: unpacked(x, 2), qkv, do)))


def test_rejects_a_width_that_is_not_three_heads_wide():
    with pytest.raises(ValueError, match="3 \\* n_head"):
        kernels.attention_qkv(torch.randn(1, 4, 50), 4)
    with pytest.raises(ValueError, match="3 \\* n_head"):
        kernels.attention_qkv(torch.randn(4, 48), 4)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_packed_equals_split_attention_bitwise(monkeypatch, dtype):
    """GPT-2 124M's layout (12 heads of 64) at T=1024, plus a ragged T; the atomic-dQ backward too.
    Its dQ sums in fp32 in another order and is rounded to the dtype once, so the two dQs differ by
    at most about one rounding of the dtype (2^-8 relative for bf16): 4 of those allowed."""
    monkeypatch.setenv("KERNELS_BACKEND", "auto")
    for B, T, H, D in ((2, 1024, 12, 64), (1, 301, 4, 128)):
        qkv, do = packed_inputs(B, T, H, D, dtype, device="cuda", seed=T)
        out, dqkv = run(lambda x: kernels.attention_qkv(x, H), qkv, do)
        want_out, want_dqkv = run(lambda x: unpacked(x, H), qkv, do)
        assert torch.equal(out, want_out) and torch.equal(dqkv, want_dqkv)
        _, dqkv_atomic = run(lambda x: kernels.attention_qkv(x, H, deterministic=False), qkv, do)
        tol = 4 * torch.finfo(dtype).eps
        torch.testing.assert_close(dqkv_atomic.float(), dqkv.float(), rtol=tol, atol=tol * dqkv.abs().max().item())


def test_gpt_packed_layout_gives_the_split_layouts_loss_and_grads(triton_backend, monkeypatch):
    """KERNELS_ATTENTION_LAYOUT=packed changes where the kernels read and write, not what they compute:
    a GPT's loss and every gradient are bit for bit the split layout's (and decoding, which keeps
    the split path with its KV cache, is untouched)."""
    from gpt.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=97))
    idx, tgt = torch.randint(0, 97, (2, 32)), torch.randint(0, 97, (2, 32))
    results = {}
    for layout in ("split", "packed"):
        monkeypatch.setenv("KERNELS_ATTENTION_LAYOUT", layout)
        model.zero_grad(set_to_none=True)
        loss = model(idx, tgt)
        loss.backward()
        results[layout] = [loss.detach()] + [p.grad.clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(results["split"], results["packed"]))
    monkeypatch.setenv("KERNELS_ATTENTION_LAYOUT", "diagonal")
    with pytest.raises(ValueError, match="KERNELS_ATTENTION_LAYOUT"):
        model(idx, tgt)
