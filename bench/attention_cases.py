"""Attention cases for bench/kernels.py, the issue's targets, and a tile-config sweep for GPUs.

bench/kernels.py registers `attention` with the pieces here: shapes (T = 512..8192, D = 64 and 128,
B*T = 16384 tokens, H*D = 2048 as in FlashAttention-2's benchmarks), causal, bf16 by default;
providers ours (kernels.attention) / reference (naive, materialised T x T scores) / pytorch
(F.scaled_dot_product_attention) / compiled (torch.compile of the reference); FLOPs as the issue
counts them: forward 4*B*H*T*T*D, halved when causal; backward 2.5x the forward.

    python -m bench.kernels --op attention              # the benchmark (GPU; CPU = smoke run)
    python -m bench.attention_cases --warm --jobs 6     # GPU: compile the sweep's kernels, in parallel
    python -m bench.attention_cases --sweep --budget-s 60 --write-tuned OUT/tuned.json

The sweep (GPU) times, at T=4096 and D=128 then 64 (bf16, causal): the launch table of
kernels/attention.py, each launch order (reverse, longest_first) with the table's tiles, each
candidate tile of each kernel (SWEEP_CANDIDATES, all compile-gated for sm_90) with the natural
order, and finally the combination of the winners. Every variant's output and gradients are
first checked against the table's; a variant wins only when it is more than 3% faster; the
winners go to a decisions file (kernels/tuned.json format) that pick_configs reads. `--warm`
compiles all of it into Triton's on-disk cache in parallel processes beforehand (the suite does
that beside the CUDA tests), so the timed sweep spends its budget timing, not compiling.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

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


# PyTorch's SDPA with one backend pinned (torch.nn.attention.sdpa_kernel). "pytorch" is SDPA with
# PyTorch's own pick; the targets compare with "sdpa-flash" (FlashAttention-2, the yardstick)
# and the report shows the others beside it (cuDNN attention may be the faster one on H100). A backend
# that cannot run a shape raises, and bench.kernels records the provider as unavailable.
SDPA_BACKENDS = {"sdpa-flash": "FLASH_ATTENTION", "sdpa-cudnn": "CUDNN_ATTENTION",
                 "sdpa-efficient": "EFFICIENT_ATTENTION"}


def pinned_sdpa(backend_name: str):
    """F.scaled_dot_product_attention(causal) restricted to one SDPA backend (by SDPBackend name).
    The backward runs the kernel the forward picked (autograd records it), so only the forward
    needs the context."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, backend_name)

    def run(i):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(i["q"], i["k"], i["v"], is_causal=True)
    return run


def sdpa_backend_of(out: torch.Tensor) -> str:
    """Which SDPA backend produced `out` (a tensor that requires grad): read off the autograd node
    (ScaledDotProduct{Flash,Cudnn,Efficient}AttentionBackward), a few nodes deep; "math" when none."""
    seen, frontier = set(), [out.grad_fn]
    for _ in range(4):
        nxt = []
        for fn in frontier:
            if fn is None or id(fn) in seen:
                continue
            seen.add(id(fn))
            name = fn.name()
            for key, label in (("Cudnn", "cudnn"), ("Efficient", "efficient"), ("Flash", "flash")):
                if "ScaledDotProduct" in name and key in name:
                    return label
            nxt += [f for f, _ in fn.next_functions]
        frontier = nxt
    return "math"


def sdpa_info(B: int, H: int, T: int, D: int, dtype: torch.dtype, device: str) -> dict:
    """What SDPA does at this shape: the backend its default picks, which pinned backends run, and
    the cuDNN version (None without cuDNN)."""
    q, k, v = (torch.randn(B, H, T, D, device=device).to(dtype).requires_grad_() for _ in range(3))
    info = {"shape": shape_label(B, H, T, D), "dtype": str(dtype).replace("torch.", ""),
            "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    try:
        info["default_backend"] = sdpa_backend_of(
            F.scaled_dot_product_attention(q, k, v, is_causal=True))
    except Exception as e:  # noqa: BLE001 - recorded, never raised
        info["default_backend"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    available = {}
    for label, name in SDPA_BACKENDS.items():
        try:
            pinned_sdpa(name)({"q": q, "k": k, "v": v})
            available[label] = "ok"
        except Exception as e:  # noqa: BLE001 - unavailable backends are a result, not a crash
            available[label] = f"unavailable: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    info["backends"] = available
    return info


def providers(ours_label: str, compiled=None, pinned: bool = False) -> dict:
    """Provider name -> function of the inputs dict. `compiled` is one torch.compile'd reference
    shared by all shapes (dynamic shapes: one compile, not one per T); `pinned` adds SDPA with each
    backend pinned (GPU runs)."""
    import kernels
    from kernels import reference

    out = {
        ours_label: lambda i: kernels.attention(i["q"], i["k"], i["v"], causal=True),
        "reference": lambda i: reference.attention(i["q"], i["k"], i["v"], causal=True),
        "pytorch": lambda i: F.scaled_dot_product_attention(i["q"], i["k"], i["v"], is_causal=True),
    }
    if pinned:
        out.update({label: pinned_sdpa(name) for label, name in SDPA_BACKENDS.items()})
    if compiled is not None:
        out["compiled"] = lambda i: compiled(i["q"], i["k"], i["v"], causal=True)
    return out


def fastest_sdpa(rows: list[dict], value, shape: str) -> tuple[str, float]:
    """(provider, ms) of the fastest SDPA provider (default or pinned) in fwd+bwd at `shape`."""
    best = ("pytorch", value(rows, op="attention", shape=shape, mode="forward+backward",
                             provider="pytorch", metric="ms"))
    for label in SDPA_BACKENDS:
        ms = value(rows, op="attention", shape=shape, mode="forward+backward", provider=label, metric="ms")
        if not math.isnan(ms) and (math.isnan(best[1]) or ms < best[1]):
            best = (label, ms)
    return best


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
        ours_ms, naive_ms = value(rows, provider=ours, **m), value(rows, provider="reference", **m)
        # The yardstick is SDPA's flash backend when it was measured, else SDPA's default pick.
        flash_ms = value(rows, provider="sdpa-flash", **m)
        sdpa_ms, sdpa_name = ((flash_ms, "SDPA-flash") if not math.isnan(flash_ms)
                              else (value(rows, provider="pytorch", **m), "SDPA"))
        tflops = value(rows, op="attention", shape=shape, mode=fb, provider=ours, metric="TFLOP/s")
        line = (f"target attention {shape}: fwd+bwd {tflops:.0f} TFLOP/s, "
                f"{sdpa_ms / ours_ms:.2f}x {sdpa_name}'s speed (want >= 1.0x)")
        cudnn_ms = value(rows, provider="sdpa-cudnn", **m)
        if not math.isnan(cudnn_ms):
            line += f", {cudnn_ms / ours_ms:.2f}x SDPA-cuDNN's"
        if T == 4096 and D in TARGET_TFLOPS:
            line += f", want >= {TARGET_TFLOPS[D]:.0f} TFLOP/s"
        if math.isnan(naive_ms):
            line += "; naive: failed (out of memory?)" if not math.isnan(ours_ms) else ""
        else:
            line += f"; naive {naive_ms / ours_ms:.1f}x slower (want >= 10x)"
        lines.append(line)
    return lines


# ------------------------------------------------------------------------------------------------
# The sweep (GPU only): launch orders and candidate tiles, winners written as decisions
# ------------------------------------------------------------------------------------------------
# Candidate tiles (block_m, block_n, num_warps, num_stages) per head dim and kernel, for sm_90. Every
# one is proven by tests/test_attention_compile_gate.py to compile for sm_90 without spills (bf16,
# causal, aligned lengths), so the GPU time goes to configs that can win. The table's own tiles
# (kernels/attention.py) are the baseline and are not repeated here.
SWEEP_CANDIDATES = {
    128: {"forward": [(128, 128, 8, 3), (128, 64, 8, 4), (64, 64, 4, 3)],
          # (64, 128, 8, 3) spills 64 B with triton 3.9 and (64, 128, 8, 2) 16 B with 3.6: left out
          "dkdv": [(32, 128, 8, 3), (64, 64, 8, 2), (32, 64, 4, 3)],
          "dq": [(128, 64, 8, 3), (64, 64, 4, 3), (128, 32, 8, 2), (64, 32, 4, 3)]},
    64: {"forward": [(128, 64, 8, 3), (128, 64, 4, 3), (128, 128, 8, 4), (64, 64, 4, 3)],
         "dkdv": [(32, 128, 8, 3), (64, 64, 4, 3), (64, 128, 8, 2)],  # (128, 128, 8, 3) spills
         "dq": [(128, 128, 8, 3), (64, 64, 4, 3), (128, 32, 8, 3)]},
}
SWEEP_SEQ_LEN = 4096
MARGIN = 0.03  # a variant replaces the table only when it is more than 3% faster (timing noise)
KINDS = ("forward", "dkdv", "dq")


def _tiles(head_dim: int):
    from kernels.attention import TileConfig

    return {kind: [TileConfig(*t) for t in SWEEP_CANDIDATES[head_dim][kind]] for kind in KINDS}


def sweep_plan(head_dim: int, table) -> list[tuple[str, object]]:
    """(label, AttentionConfigs) in the order the sweep times them: the table, each launch order
    with the table's tiles, then each candidate tile of each kernel with the natural order. The
    combination of the winners is timed last (sweep_head_dim). Used for the warm-up too, so its
    compiled kernels are exactly the ones the timed sweep will load from Triton's cache."""
    plan = [("table", table)]
    plan += [(f"schedule={s}", dataclasses.replace(table, schedule=s)) for s in ("reverse", "longest_first")]
    for kind, tiles in _tiles(head_dim).items():
        for t in tiles:
            if t != getattr(table, kind):
                plan.append((f"{kind}={t.block_m}x{t.block_n}/w{t.num_warps}/s{t.num_stages}",
                             dataclasses.replace(table, **{kind: t})))
    # The non-deterministic backward (dQ by atomics in the dK/dV kernel), table tiles: informational
    # (recorded as atomic_dq_speedup; attention() stays deterministic unless asked otherwise).
    plan.append((ATOMIC, table))
    return plan


ATOMIC = "atomic_dq"


class _Pinned:
    """kernels.attention with pick_configs pinned to one AttentionConfigs while in the block."""

    def __init__(self, attn, cfgs):
        self.attn, self.cfgs = attn, cfgs

    def __enter__(self):
        self.saved = self.attn.pick_configs
        self.attn.pick_configs = lambda *a, **k: self.cfgs
        return self

    def __exit__(self, *exc):
        self.attn.pick_configs = self.saved


def _inputs(head_dim: int, seq_len: int, dtype, seed: int = 0, device: str = "cuda", heads=None):
    """The benchmark's (B, H) for this T and D (B*T = 16384, H*D = 2048) unless `heads` = (B, H)."""
    g = torch.Generator(device=device).manual_seed(seed)
    B, H = heads or (TOKENS // seq_len, MODEL_WIDTH // head_dim)
    q, k, v = (torch.randn(B, H, seq_len, head_dim, generator=g, device=device).to(dtype).requires_grad_()
               for _ in range(3))
    do = torch.randn(B, H, seq_len, head_dim, generator=g, device=device).to(dtype)
    return q, k, v, do


def _table(attn, head_dim: int, dtype, capability=None):
    """The built-in table (no decisions file, no launch-order override): the sweep's baseline."""
    saved = {k: os.environ.pop(k, None) for k in ("KERNELS_TUNED", "KERNELS_ATTENTION_SCHEDULE")}
    os.environ["KERNELS_TUNED"] = "off"
    try:
        return attn.pick_configs(capability or torch.cuda.get_device_capability(), head_dim, dtype)
    finally:
        os.environ.pop("KERNELS_TUNED")
        os.environ.update({k: v for k, v in saved.items() if v is not None})


def _run_once(attn, cfgs, q, k, v, do, deterministic: bool = True):
    for t in (q, k, v):
        t.grad = None
    with _Pinned(attn, cfgs):
        out = attn.attention(q, k, v, causal=True, deterministic=deterministic)
        out.backward(do)
    return [out.detach().float(), q.grad.float(), k.grad.float(), v.grad.float()]


def warm(head_dims, seq_len: int, dtype, worker: int, workers: int) -> int:
    """Compile (into Triton's on-disk cache) this worker's share of every config the sweep may time,
    by running each once. Several workers run side by side: compiling is single-threaded CPU work."""
    attn = importlib.import_module("kernels.attention")
    jobs = [(d, label, cfgs) for d in head_dims for label, cfgs in sweep_plan(d, _table(attn, d, dtype))]
    for n, (d, label, cfgs) in enumerate(jobs):
        if n % workers != worker:
            continue
        t0 = time.time()
        try:
            _run_once(attn, cfgs, *_inputs(d, seq_len, dtype), deterministic=label != ATOMIC)
            torch.cuda.synchronize()
            print(f"warm {worker}: D={d} {cfgs} {time.time() - t0:.1f}s", flush=True)
        except Exception as e:  # noqa: BLE001 - the timed sweep reports it again
            print(f"warm {worker}: D={d} {cfgs} failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
    return 0


def _close(got, want) -> tuple[bool, float]:
    """Same result as the table's (up to the rounding a different summation order gives in bf16)?"""
    worst = 0.0
    for a, b in zip(got, want):
        if not torch.isfinite(a).all():
            return False, math.inf
        worst = max(worst, ((a - b).abs().max() / b.abs().max().clamp_min(1e-6)).item())
    return worst < 2e-2, worst


def _do_bench(fn, fwd, grads):
    import triton.testing

    ms_fb = triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grads, return_mode="median")
    ms_f = triton.testing.do_bench(fwd, warmup=10, rep=50, return_mode="median")
    return float(ms_fb), float(ms_f)


def sweep_head_dim(head_dim: int, seq_len: int, dtype, deadline: float, log, *, device: str = "cuda",
                   capability=None, heads=None, bench=_do_bench) -> dict:
    """Time the plan for one head dim until `deadline`; return the decision entry and the timings.
    device/capability/heads/bench let a CPU test drive the same logic through the interpreter."""
    attn = importlib.import_module("kernels.attention")
    q, k, v, do = _inputs(head_dim, seq_len, dtype, device=device, heads=heads)
    table = _table(attn, head_dim, dtype, capability)
    B, H = q.shape[:2]

    def timed(cfgs, deterministic):
        def fb():
            with _Pinned(attn, cfgs):
                attn.attention(q, k, v, causal=True, deterministic=deterministic).backward(do)

        def fwd():
            with _Pinned(attn, cfgs):
                attn.attention(q, k, v, causal=True)
        return bench(fb, fwd, [q, k, v])

    want = _run_once(attn, table, q, k, v, do)
    results = {}

    def measure(label, cfgs, deterministic=True):
        if time.time() > deadline:
            log(f"  D={head_dim} {label}: skipped (sweep budget spent)")
            return None
        t0 = time.time()
        try:
            ok, err = _close(_run_once(attn, cfgs, q, k, v, do, deterministic), want)
            if not ok:
                log(f"  D={head_dim} {label}: WRONG RESULT (max rel. diff {err:.3g} vs the table): dropped")
                results[label] = {"status": f"wrong result ({err:.3g})"}
                return None
            ms_fb, ms_f = timed(cfgs, deterministic)
        except Exception as e:  # noqa: BLE001 - a failing candidate is a result
            log(f"  D={head_dim} {label}: failed ({type(e).__name__}: {str(e)[:160]})")
            results[label] = {"status": f"failed: {type(e).__name__}"}
            return None
        results[label] = {"status": "ok", "fwd_bwd_ms": round(ms_fb, 4), "fwd_ms": round(ms_f, 4),
                          "max_rel_diff": float(f"{err:.3g}")}
        log(f"  D={head_dim} {label:34s} fwd+bwd {ms_fb:8.3f} ms  fwd {ms_f:8.3f} ms  "
            f"({time.time() - t0:.1f}s)")
        return ms_fb, ms_f

    plan = sweep_plan(head_dim, table)
    base = measure("table", table)
    if base is None:
        return {"entry": {}, "results": results, "note": "the table itself failed or no time"}
    work = flops(B, H, seq_len, head_dim)
    # Launch order: decided on fwd+bwd. Tiles: forward tiles on forward time, dK/dV and dQ tiles on
    # fwd+bwd time (the forward is the same there). Each choice is made independently against the
    # table, then the combination is timed and kept only if it beats the table too.
    best = {"schedule": ("natural", base[0]), "forward": (table.forward, base[1]),
            "dkdv": (table.dkdv, base[0]), "dq": (table.dq, base[0])}
    atomic_ms = None
    for label, cfgs in plan[1:]:
        got = measure(label, cfgs, deterministic=label != ATOMIC)
        if got is None:
            continue
        if label == ATOMIC:
            atomic_ms = got[0]
            continue
        if label.startswith("schedule="):
            key, new, ms = "schedule", cfgs.schedule, got[0]
        else:
            key = label.split("=")[0]
            new, ms = getattr(cfgs, key), got[1] if key == "forward" else got[0]
        reference_ms = base[1] if key == "forward" else base[0]
        if ms < reference_ms * (1 - MARGIN) and ms < best[key][1]:
            best[key] = (new, ms)
    combo = dataclasses.replace(table, forward=best["forward"][0], dkdv=best["dkdv"][0], dq=best["dq"][0],
                                schedule=best["schedule"][0])
    chosen, chosen_ms = table, base
    if combo != table:
        got = measure("combined winners", combo)
        if got is not None and got[0] < base[0] * (1 - MARGIN):
            chosen, chosen_ms = combo, got
        elif got is not None:
            log(f"  D={head_dim}: the combined winners are not {MARGIN:.0%} faster than the table: keep the table")
    entry = {}
    for kind in KINDS:
        t = getattr(chosen, kind)
        if t != getattr(table, kind):
            entry[kind] = [t.block_m, t.block_n, t.num_warps, t.num_stages]
    if chosen.schedule != "natural":
        entry["schedule"] = chosen.schedule
    if atomic_ms is not None:
        # information for users choosing deterministic=False (pick_configs ignores this key)
        entry["atomic_dq_speedup"] = round(base[0] / atomic_ms, 3)
    tf = lambda ms: round(work["forward+backward"] / ms / 1e9, 1)  # noqa: E731
    log(f"  D={head_dim}: table {base[0]:.3f} ms ({tf(base[0])} TFLOP/s fwd+bwd) -> chosen "
        f"{chosen_ms[0]:.3f} ms ({tf(chosen_ms[0])} TFLOP/s); decision {entry or 'keep the table'}")
    return {"entry": entry, "results": results, "table_ms": base[0], "chosen_ms": chosen_ms[0],
            "table_tflops": tf(base[0]), "chosen_tflops": tf(chosen_ms[0])}


def write_tuned(path: Path, arch: str, decisions: dict, measured: dict, base: Path | None) -> dict:
    """Merge this card's decisions into the decisions file `base` (kernels/tuned.json, when it
    exists) and write the result to `path`: other cards' entries are kept; this card's head dims
    are replaced (an empty entry = the table won)."""
    data = {}
    if base is not None and base.exists():
        try:
            data = json.loads(base.read_text())
        except ValueError:
            data = {}
    data.setdefault("comment", "Launch decisions measured by bench/gpu_suite.sh's sweep; read by "
                               "kernels/attention.py (pick_configs). Keys: sm_<capability> -> head dim.")
    arch_entries = data.setdefault("attention", {}).setdefault(arch, {})
    for d, entry in decisions.items():
        arch_entries[str(d)] = entry
    data.setdefault("measured", {})[arch] = measured
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


def _changes(entry: dict) -> dict:
    """The keys of a decision entry that change a launch (not the informational ones)."""
    return {k: v for k, v in entry.items() if k in ("forward", "dkdv", "dq", "dkdv_atomic", "schedule")}


def _write_outputs(args, arch: str, decisions: dict, measured: dict) -> None:
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(measured, indent=1) + "\n")
    if args.write_tuned:
        from kernels.attention import TUNED_PATH

        write_tuned(args.write_tuned, arch, decisions, measured, TUNED_PATH)
        # a marker the suite reads: run the CUDA attention tests again with the new decisions
        changed = args.write_tuned.parent / "tuned_changed"
        if any(_changes(e) for e in decisions.values()):
            changed.write_text(json.dumps({str(k): _changes(v) for k, v in decisions.items()}) + "\n")
        elif changed.exists():
            changed.unlink()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.attention_cases",
                                 description="Sweep of the Triton attention kernels' launch orders and "
                                             "tiles on a GPU; writes the winners as kernels/tuned.json "
                                             "decisions (the benchmark itself: python -m bench.kernels "
                                             "--op attention)")
    ap.add_argument("--sweep", action="store_true", help="time the variants (GPU)")
    ap.add_argument("--warm", action="store_true",
                    help="only compile the sweep's kernels into Triton's cache, in --jobs processes")
    ap.add_argument("--jobs", type=int, default=4, help="processes for --warm (default 4)")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--seq-len", type=int, default=SWEEP_SEQ_LEN, help=f"T (default {SWEEP_SEQ_LEN})")
    ap.add_argument("--head-dims", type=int, nargs="+", default=[128, 64], choices=sorted(SWEEP_CANDIDATES),
                    help="head dims, most important first (default 128 64)")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"], help="default bf16")
    ap.add_argument("--budget-s", type=float, default=60.0,
                    help="stop starting new measurements after this many seconds (default 60)")
    ap.add_argument("--write-tuned", type=Path, default=None,
                    help="write the decisions file here (merged with kernels/tuned.json)")
    ap.add_argument("--json", type=Path, default=None, help="write every timing here")
    args = ap.parse_args(argv)
    if not (args.sweep or args.warm):
        ap.print_help()
        return 0
    if not torch.cuda.is_available():
        print("error: --sweep/--warm need an NVIDIA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    if args.seq_len <= 0 or TOKENS % args.seq_len:
        print(f"error: --seq-len must divide {TOKENS} (B = {TOKENS} / T)", file=sys.stderr)
        return 2
    os.environ["KERNELS_BACKEND"] = "auto"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    if args.warm:
        if args.worker is not None:
            return warm(args.head_dims, args.seq_len, dtype, args.worker, args.jobs)
        cmd = [sys.executable, "-m", "bench.attention_cases", "--warm", "--jobs", str(args.jobs),
               "--seq-len", str(args.seq_len), "--dtype", args.dtype, "--head-dims",
               *map(str, args.head_dims)]
        procs = [subprocess.Popen(cmd + ["--worker", str(w)]) for w in range(args.jobs)]
        return max(p.wait() for p in procs)
    start = time.time()
    deadline = start + args.budget_s
    cap = torch.cuda.get_device_capability()
    arch = f"sm_{cap[0]}{cap[1]}"
    print(f"attention sweep on {torch.cuda.get_device_name()} ({arch}): T={args.seq_len}, "
          f"D={args.head_dims}, {args.dtype}, causal; budget {args.budget_s:.0f}s", flush=True)

    def log(line):
        print(line, flush=True)
    decisions, measured = {}, {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                               "triton": importlib.import_module("triton").__version__,
                               "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "seq_len": args.seq_len, "dtype": args.dtype, "head_dims": {}}
    for d in args.head_dims:
        res = sweep_head_dim(d, args.seq_len, dtype, deadline, log)
        measured["head_dims"][str(d)] = res
        if "table_ms" in res:
            decisions[d] = res["entry"]
        # written after every head dim: a time limit that ends the sweep keeps what was decided
        _write_outputs(args, arch, decisions, measured)
    if args.write_tuned:
        print(f"decisions for {arch}: {json.dumps({str(k): v for k, v in decisions.items()})}")
        print(f"wrote {args.write_tuned} (copy it to kernels/tuned.json to apply)")
    print(f"sweep done in {time.time() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
