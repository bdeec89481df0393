"""The kernels as torch custom ops (text2sql::*): opcheck on every op, and torch.compile sees them.

`torch.library.opcheck` runs each op (forward and backward ops) on fresh random inputs and checks
its schema, that autograd is registered, that the fake (meta) implementation gives the real
outputs' shapes, dtypes and strides, and that AOTAutograd with dynamic shapes gives the eager
values and gradients. Then `torch.compile(fullgraph=True)` of a tiny GPT must compile without a
graph break, with exactly one text2sql:: node per kernel call in the forward and backward graphs.

CPU: Triton's interpreter (TRITON_INTERPRET=1, fp32, small shapes); tests skip without it.
GPU: the `cuda` variants.
"""
import collections
import importlib

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

import kernels
from gpt.model import GPT, GPTConfig
from tests.kernel_testing import force_triton_backend, interpreting  # noqa: F401 (autouse fixture)

# kernels/__init__.py exports functions named like their modules: fetch the modules themselves.
attn = importlib.import_module("kernels.attention")
ce = importlib.import_module("kernels.cross_entropy")
ln = importlib.import_module("kernels.layernorm")

DEVICES = [pytest.param("cpu", marks=interpreting),
           pytest.param("cuda", marks=pytest.mark.cuda)]


def rand(*shape, device, requires_grad=True, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    t = (torch.randn(*shape, generator=g) * scale).to(device)
    return t.requires_grad_(requires_grad)


def targets(shape, v, device, seed, ignore_every=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, v, shape, generator=g)
    if ignore_every:
        t.view(-1)[::ignore_every] = -100
    return t.to(device)


def opcheck(op, args, kwargs=None):
    # Raises OpCheckError naming the failed check; every check must report SUCCESS.
    result = torch.library.opcheck(op, args, kwargs)
    assert set(result.values()) == {"SUCCESS"}, result


# ---- opcheck, one op at a time ----

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("residual,weight,bias", [(True, True, True), (False, True, True),
                                                  (False, False, False), (True, False, True)])
def test_layer_norm_forward_opcheck(device, residual, weight, bias):
    x = rand(3, 5, 37, device=device, seed=1)
    r = rand(3, 5, 37, device=device, seed=2) if residual else None
    w = rand(37, device=device, seed=3) if weight else None
    b = rand(37, device=device, seed=4) if bias else None
    opcheck(ln.layer_norm_forward, (x, r, w, b, 1e-5))


@pytest.mark.parametrize("device", DEVICES)
def test_layer_norm_forward_opcheck_non_contiguous(device):
    x = rand(8, 96, device=device, seed=5).detach()[:, ::2].requires_grad_()
    opcheck(ln.layer_norm_forward, (x, rand(8, 48, device=device, seed=6), None, None, 1e-2))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dh_out,weight,bias", [(True, True, True), (False, False, False),
                                                (True, False, True)])
def test_layer_norm_backward_opcheck(device, dh_out, weight, bias):
    x, r = rand(4, 2, 33, device=device, seed=7), rand(4, 2, 33, device=device, seed=8)
    w = rand(33, device=device, seed=9, requires_grad=False) if weight else None
    with torch.no_grad():
        _, h, mean, rstd = ln.layer_norm_forward(x, r, w, None, 1e-5)
    dy = rand(4, 2, 33, device=device, seed=10, requires_grad=False)
    dh = rand(4, 2, 33, device=device, seed=11, requires_grad=False) if dh_out else None
    opcheck(ln.layer_norm_backward, (dy, dh, h, w, mean, rstd, bias))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction,smoothing,z_loss", [("mean", 0.0, 0.0), ("sum", 0.1, 1e-3),
                                                        ("none", 0.0, 1e-3)])
def test_cross_entropy_forward_opcheck(device, reduction, smoothing, z_loss):
    logits = rand(3, 4, 50, device=device, seed=12, scale=3.0)
    t = targets((3, 4), 50, device, seed=12, ignore_every=5)
    opcheck(ce.cross_entropy_forward, (logits, t, -100, reduction, smoothing, z_loss, True))


@pytest.mark.parametrize("device", DEVICES)
def test_cross_entropy_forward_opcheck_loss_only(device):
    logits = rand(6, 40, device=device, seed=13, requires_grad=False)
    opcheck(ce.cross_entropy_forward, (logits, targets((6,), 40, device, seed=13), -100, "mean",
                                       0.0, 0.0, False))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_cross_entropy_forward_opcheck(device, reduction, bias):
    x = rand(3, 7, 24, device=device, seed=14)
    w = rand(60, 24, device=device, seed=15, scale=0.2)
    b = rand(60, device=device, seed=16, scale=0.1) if bias else None
    t = targets((3, 7), 60, device, seed=14, ignore_every=4)
    # 21 rows in chunks of 8: three chunks, the last one short.
    opcheck(ce.linear_cross_entropy_forward,
            (x, w, t, b, -100, reduction, 8, torch.float32, True, True, bias))


@pytest.mark.parametrize("device", DEVICES)
def test_linear_cross_entropy_backward_opcheck(device):
    x = rand(3, 7, 24, device=device, seed=17, requires_grad=False)
    w = rand(60, 24, device=device, seed=18, scale=0.2, requires_grad=False)
    b = rand(60, device=device, seed=19, scale=0.1, requires_grad=False)
    t = targets((3, 7), 60, device, seed=17, ignore_every=4)
    up = rand(3, 7, device=device, seed=20, requires_grad=False)
    opcheck(ce.linear_cross_entropy_backward,
            (x, w, t, b, up, -100, 8, torch.float32, True, True, True))


def attention_variants():
    """Keyword arguments beyond (q, k, v, causal, scale) that the attention ops take: both
    backwards when the ops have a `deterministic` switch (dQ by atomics or not), else none."""
    names = [a.name for a in torch.ops.text2sql.flash_attention_forward.default._schema.arguments]
    if "deterministic" in names:
        return [{"deterministic": True}, {"deterministic": False}]
    return [{}]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("extra", attention_variants(),
                         ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()) or "plain")
def test_attention_opcheck(device, causal, extra):
    # T_Q != T_K: the causal mask aligns to the end (a decoding step over a cache).
    q = rand(1, 2, 20, 16, device=device, seed=21)
    k, v = rand(1, 2, 27, 16, device=device, seed=22), rand(1, 2, 27, 16, device=device, seed=23)
    opcheck(attn.flash_attention_forward, (q, k, v, causal, 0.25), extra)
    with torch.no_grad():
        o, lse2 = attn.flash_attention_forward(q, k, v, causal, 0.25, **extra)
    do = rand(1, 2, 20, 16, device=device, seed=24, requires_grad=False)
    opcheck(attn.flash_attention_backward,
            (do, q.detach(), k.detach(), v.detach(), o, lse2, causal, 0.25), extra)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("extra", attention_variants(),
                         ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()) or "plain")
def test_attention_qkv_opcheck(device, extra):
    qkv = rand(2, 19, 3 * 2 * 16, device=device, seed=31)  # (B, T, 3C), 2 heads of 16
    det = extra.get("deterministic", True)
    opcheck(attn.flash_attention_qkv_forward, (qkv, 2, True, 0.25, det))
    with torch.no_grad():
        o, lse2 = attn.flash_attention_qkv_forward(qkv, 2, True, 0.25, det)
    do = rand(2, 19, 2 * 16, device=device, seed=32, requires_grad=False)
    opcheck(attn.flash_attention_qkv_backward, (do, qkv.detach(), o, lse2, 2, True, 0.25, det))


# ---- torch.compile: one graph, one node per kernel call ----

def compile_and_count(fn, *args):
    """Run fn(*args) compiled with fullgraph=True (a graph break raises) and backward through it.

    Returns (value, {"dynamo" | "forward" | "backward": Counter of text2sql:: op names}) from a
    backend that reads the graphs Dynamo and AOTAutograd hand it, then runs them as they are."""
    counts = {}

    def text2sql_ops(gm):
        return collections.Counter(
            str(node.target).split(".")[1] for node in gm.graph.nodes
            if node.op == "call_function" and str(node.target).startswith("text2sql."))

    def recorder(kind):
        def compiler(gm, example_inputs):
            assert kind not in counts, f"more than one {kind} graph: a graph break"
            counts[kind] = text2sql_ops(gm)
            return make_boxed_func(gm.forward)
        return compiler

    aot = aot_autograd(fw_compiler=recorder("forward"), bw_compiler=recorder("backward"))

    def backend(gm, example_inputs):
        recorder("dynamo")(gm, example_inputs)
        return aot(gm, example_inputs)

    torch._dynamo.reset()
    try:
        out = torch.compile(fn, backend=backend, fullgraph=True)(*args)
        out.sum().backward()
    finally:
        torch._dynamo.reset()
    return out, counts


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["split", "packed"])
def test_compiled_gpt_one_node_per_kernel(device, layout, monkeypatch):
    monkeypatch.setenv("KERNELS_ATTENTION_LAYOUT", layout)
    attention = "flash_attention_qkv" if layout == "packed" else "flash_attention"
    config = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=64)
    torch.manual_seed(0)
    model = GPT(config).to(device)
    idx = targets((2, 16), 64, device, seed=25)
    tgt = targets((2, 16), 64, device, seed=26, ignore_every=3)
    loss, counts = compile_and_count(model, idx, tgt)
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    # What GPT.forward calls: the first block's ln_1, then two residual LayerNorms per block (the
    # last one is ln_f), one attention per block, and the LM head + loss ("sum": its backward only
    # scales the gradients the forward made, so no backward op).
    n = config.n_layer
    forward = {"layer_norm_forward": 2 * n + 1, f"{attention}_forward": n,
               "linear_cross_entropy_forward": 1}
    backward = {"layer_norm_backward": 2 * n + 1, f"{attention}_backward": n}
    assert counts == {"dynamo": forward, "forward": forward, "backward": backward}
    # The compiled graph runs the same kernels as eager: the same loss and gradients.
    model.zero_grad()
    eager = model(idx, tgt)
    eager.backward()
    torch.testing.assert_close(loss, eager)
    for p, g in zip(model.parameters(), compiled_grads):
        torch.testing.assert_close(g, p.grad)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_compiled_cross_entropy_one_node(device, reduction):
    logits = rand(5, 30, device=device, seed=27)
    t = targets((5,), 30, device, seed=27, ignore_every=2)
    loss, counts = compile_and_count(
        lambda x: kernels.cross_entropy(x * 2.0, t, reduction=reduction, z_loss=1e-3), logits)
    one = {"cross_entropy_forward": 1}
    assert counts == {"dynamo": one, "forward": one, "backward": {}}
    grad = logits.grad.clone()
    logits.grad = None
    eager = kernels.cross_entropy(logits * 2.0, t, reduction=reduction, z_loss=1e-3)
    eager.sum().backward()
    torch.testing.assert_close(loss, eager)
    torch.testing.assert_close(grad, logits.grad)


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_linear_cross_entropy_none_has_backward_op(device):
    x, w = rand(4, 6, 16, device=device, seed=28), rand(40, 16, device=device, seed=29, scale=0.3)
    t = targets((4, 6), 40, device, seed=28, ignore_every=3)
    _, counts = compile_and_count(
        lambda x, w: kernels.linear_cross_entropy(x, w, t, reduction="none"), x, w)
    assert counts["forward"] == {"linear_cross_entropy_forward": 1}
    assert counts["backward"] == {"linear_cross_entropy_backward": 1}
