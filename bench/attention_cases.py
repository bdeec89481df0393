"""Attention cases for bench/kernels.py, the issue's targets, and a tile-config sweep for GPUs.

bench/kernels.py registers `attention` with the pieces here: shapes (T = 512..8192, D = 64 and 128,
B*T = 16384 tokens, H*D = 2048 as in FlashAttention-2's benchmarks), causal, bf16 by default;
providers ours (kernels.attention) / reference (naive, materialised T x T scores) / pytorch
(F.scaled_dot_product_attention) / compiled (torch.compile of the reference); FLOPs as the issue
counts them: forward 4*B*H*T*T*D, halved when causal; backward 2.5x the forward.

    python -m bench.kernels --op attention              # the benchmark (GPU; CPU = smoke run)
    python -m bench.attention_cases --sweep             # GPU: time candidate tiles of each kernel
    python -m bench.attention_cases --sweep --seq-len 2048 --head-dim 64 --dtype fp16

The sweep times each candidate TileConfig of one kernel (forward, dK/dV or dQ) with the others at
their table values, so a GPU run can confirm or replace kernels/attention.py's launch tables.
"""
from __future__ import annotations

import argparse
import importlib
import math
import sys

import torch
import torch.nn.functional as F

TOKENS = 16384       # B * T for every shape
MODEL_WIDTH = 2048   # H * D for every shape
GPU_SEQ_LENS = (512, 1024, 2048, 4096, 8192)
QUICK_SEQ_LENS = (1024, 4096)
HEAD_DIMS = (64, 128)
# The forward+backward targets on one H100 at T = 4096, causal (FlashAttention-2: 328/284).
TARGET_TFLOPS = {128: 300.0, 64: 250.0}


def shapes(device: str, quick: bool) -> list[tuple[int, int, int, int]]:
    """(B, H, T, D) to benchmark."""
    if device == "cpu":
        return [(1, 2, 64, 32)]  # a smoke run of the harness, nothing more
    seq_lens = QUICK_SEQ_LENS if quick else GPU_SEQ_LENS
    return [(TOKENS // t, MODEL_WIDTH // d, t, d) for d in HEAD_DIMS for t in seq_lens]


def shape_label(B: int, H: int, T: int, D: int) -> str:
    return f"B={B},H={H},T={T},D={D}"


def flops(B: int, H: int, T: int, D: int, causal: bool = True) -> dict[str, float]:
    """FLOPs per mode: two T x T x D matmuls forward (4*B*H*T*T*D), half of them when causal;
    the backward does 2.5x the forward's work (five matmuls, one of them the recomputed Q K^T)."""
    fwd = 4.0 * B * H * T * T * D / (2 if causal else 1)
    return {"forward": fwd, "backward": 2.5 * fwd, "forward+backward": 3.5 * fwd}


def make_inputs(B: int, H: int, T: int, D: int, dtype: torch.dtype, device: str):
    """A function returning fresh random leaf q, k, v (never zeros) for one provider."""
    def make():
        return {name: torch.randn(B, H, T, D, device=device).to(dtype).requires_grad_()
                for name in ("q", "k", "v")}
    return make


def providers(ours_label: str, compiled=None) -> dict:
    """Provider name -> function of the inputs dict. `compiled` is one torch.compile'd reference
    shared by all shapes (dynamic shapes: one compile, not one per T)."""
    import kernels
    from kernels import reference

    out = {
        ours_label: lambda i: kernels.attention(i["q"], i["k"], i["v"], causal=True),
        "reference": lambda i: reference.attention(i["q"], i["k"], i["v"], causal=True),
        "pytorch": lambda i: F.scaled_dot_product_attention(i["q"], i["k"], i["v"], is_causal=True),
    }
    if compiled is not None:
        out["compiled"] = lambda i: compiled(i["q"], i["k"], i["v"], causal=True)
    return out


def compiled_reference():
    from kernels import reference

    return torch.compile(reference.attention, dynamic=True)


def target_lines(rows: list[dict], ours: str, value) -> list[str]:
    """The issue's targets, read off the benchmark rows; `value(rows, **match)` -> float or nan."""
    lines = []
    fb = "forward+backward"
    labels = dict.fromkeys(r["shape"] for r in rows if r["op"] == "attention" and r["metric"] == "ms")
    for shape in labels:
        fields = dict(kv.split("=") for kv in shape.split(","))
        T, D = int(fields["T"]), int(fields["D"])
        m = dict(op="attention", shape=shape, mode=fb, metric="ms")
        ours_ms, sdpa_ms = value(rows, provider=ours, **m), value(rows, provider="pytorch", **m)
        naive_ms = value(rows, provider="reference", **m)
        tflops = value(rows, op="attention", shape=shape, mode=fb, provider=ours, metric="TFLOP/s")
        line = (f"target attention {shape}: fwd+bwd {tflops:.0f} TFLOP/s, "
                f"{sdpa_ms / ours_ms:.2f}x SDPA's speed (want >= 1.0x)")
        if T == 4096 and D in TARGET_TFLOPS:
            line += f", want >= {TARGET_TFLOPS[D]:.0f} TFLOP/s"
        if math.isnan(naive_ms):
            line += "; naive: failed (out of memory?)" if not math.isnan(ours_ms) else ""
        else:
            line += f"; naive {naive_ms / ours_ms:.1f}x slower (want >= 10x)"
        lines.append(line)
    return lines


# ------------------------------------------------------------------------------------------------
# Tile-config sweep (GPU only)
# ------------------------------------------------------------------------------------------------

def _candidates(kind: str):
    from kernels.attention import TileConfig as C

    if kind == "forward":
        base = [C(128, 64, 4, 3), C(128, 64, 8, 3), C(128, 128, 8, 3), C(128, 128, 8, 2),
                C(128, 32, 4, 3), C(64, 64, 4, 3), C(128, 64, 8, 4)]
    elif kind == "dkdv":
        base = [C(32, 128, 4, 3), C(32, 128, 8, 3), C(64, 128, 8, 3), C(64, 64, 4, 3),
                C(64, 64, 8, 3), C(32, 64, 4, 3), C(32, 64, 8, 3)]
    else:
        base = [C(128, 32, 4, 3), C(128, 32, 8, 3), C(128, 64, 8, 3), C(64, 64, 4, 3),
                C(64, 32, 4, 3), C(128, 64, 8, 2)]
    return base  # tiles that spill or overflow shared memory simply time badly or fail


def sweep(seq_len: int, head_dim: int, dtype: torch.dtype) -> list[tuple[str, object, float]]:
    """(kernel kind, TileConfig, ms) for every candidate; forward timed alone, dkdv/dq in fwd+bwd."""
    import triton.testing

    attn = importlib.import_module("kernels.attention")
    B, H = TOKENS // seq_len, MODEL_WIDTH // head_dim
    q, k, v = (torch.randn(B, H, seq_len, head_dim, device="cuda").to(dtype).requires_grad_()
               for _ in range(3))
    do = torch.randn(B, H, seq_len, head_dim, device="cuda").to(dtype)
    table = attn.pick_configs(torch.cuda.get_device_capability(), head_dim, dtype)
    results = []
    original = attn.pick_configs
    try:
        for kind in ("forward", "dkdv", "dq"):
            for cand in _candidates(kind):
                cfgs = attn.AttentionConfigs(cand if kind == "forward" else table.forward,
                                             cand if kind == "dkdv" else table.dkdv,
                                             cand if kind == "dq" else table.dq)
                attn.pick_configs = lambda *a, cfgs=cfgs: cfgs
                if kind == "forward":
                    def fn():
                        attn.attention(q, k, v, causal=True)
                else:
                    def fn():
                        attn.attention(q, k, v, causal=True).backward(do)
                try:
                    ms = triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=[q, k, v],
                                                 return_mode="median")
                except Exception as e:  # e.g. out of shared memory for this tile
                    print(f"  {kind:8s} {cand}: failed ({type(e).__name__}: {str(e)[:100]})")
                    continue
                mark = " (table)" if cand == getattr(table, kind) else ""
                print(f"  {kind:8s} {cand}: {ms:.3f} ms{mark}", flush=True)
                results.append((kind, cand, ms))
    finally:
        attn.pick_configs = original
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.attention_cases",
                                 description="Tile-config sweep of the Triton attention kernels "
                                             "(the benchmark itself: python -m bench.kernels --op attention)")
    ap.add_argument("--sweep", action="store_true", help="time candidate tiles of each kernel (GPU)")
    ap.add_argument("--seq-len", type=int, default=4096, help="T (default 4096)")
    ap.add_argument("--head-dim", type=int, default=128, choices=[16, 32, 64, 128], help="D (default 128)")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"], help="default bf16")
    args = ap.parse_args(argv)
    if not args.sweep:
        ap.print_help()
        return 0
    if not torch.cuda.is_available():
        print("error: --sweep needs an NVIDIA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    if args.seq_len <= 0 or TOKENS % args.seq_len:
        print(f"error: --seq-len must divide {TOKENS} (B = {TOKENS} / T)", file=sys.stderr)
        return 2
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    print(f"attention tile sweep on {torch.cuda.get_device_name()}: T={args.seq_len} "
          f"D={args.head_dim} {args.dtype}, causal")
    results = sweep(args.seq_len, args.head_dim, dtype)
    for kind in ("forward", "dkdv", "dq"):
        best = min((r for r in results if r[0] == kind), key=lambda r: r[2], default=None)
        if best:
            print(f"best {kind}: {best[1]} {best[2]:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
