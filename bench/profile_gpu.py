"""Where the GPU time goes: kernel time against wall time, from torch.profiler.

    python -m bench.profile_gpu --out DIR            # on a GPU (bench/gpu_suite.sh's `profile` step)
    python -m bench.profile_gpu --device cpu --tiny  # the plumbing on a CPU (no kernel times there)

It answers two questions the suite's timings could not:
1. LayerNorm (+ residual) forward+backward at M=16384, N=768 and 4096, bf16: is the time bench.kernels
   reports in our kernels or around them (the host: Python, the custom-op dispatch, autograd)? Per
   provider (ours, ours-blocked, add + F.layer_norm): the wall time (synchronised), the host time to
   enqueue one call from an idle GPU (nothing waits), the summed GPU kernel time and each kernel; our
   backward op also alone, called directly. (2026-11-28, H200: the kernels take half PyTorch's GPU
   time at N=768, the host ~1 ms per call pair: bench/results/gpu-H200-20261128/README.md.)
2. A GPT-2 124M training step (T=1024, batch 16, bf16 autocast, fused AdamW), eager and with --compile:
   ours (split attention layout), plain PyTorch, and ours with KERNELS_ATTENTION_LAYOUT=packed. Per step:
   wall, host enqueue time, GPU kernel time, and the kernel time by family (our attention / LayerNorm /
   cross-entropy, SDPA, matmuls, optimizer, the rest), so a gap between ours and PyTorch can be put on
   a kernel family or on the host.

Kernel time is the sum of the GPU's kernel (and memcpy/memset) durations, one stream, so it is the
time the GPU was busy; wall minus that is time the GPU waited for the host. Writes profile.txt and
profile.json under --out.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# Kernel-name families. Our Triton kernels are named after their functions (kernels/*.py: _attn_*,
# _layer_norm_*, _cross_entropy_*), so they are matched by prefix: Inductor's kernels start with
# "triton_" and may hold the same words ("triton_per_fused_native_layer_norm_0"). The rest by
# lower-cased substring, first match wins.
OUR_PREFIXES = (("ours: attention", "_attn_"), ("ours: layernorm", "_layer_norm_"),
                ("ours: cross-entropy", "_cross_entropy_"))
FAMILIES = (
    ("sdpa", ("flash", "fmha", "cudnn", "sdpa", "attention")),
    ("matmul", ("gemm", "xmma", "nvjet", "cutlass", "cublas", "wgmma")),
    ("layernorm (torch)", ("layer_norm", "layernorm")),
    ("cross-entropy (torch)", ("softmax", "nll_loss", "cross_entropy")),
    ("optimizer", ("adam", "foreach", "multi_tensor")),
)


def family(name: str) -> str:
    """The family a GPU kernel's name belongs to (see FAMILIES); "other" when none matches."""
    for fam, prefix in OUR_PREFIXES:
        if name.startswith(prefix):
            return fam
    low = name.lower()
    for fam, keys in FAMILIES:
        if any(k in low for k in keys):
            return fam
    return "other"


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def host_and_wall(fn, device: str, iters: int) -> tuple[float, float]:
    """(median host ms to enqueue fn from an idle device, mean wall ms per fn over `iters` back to back)."""
    host = []
    for _ in range(max(3, iters // 2)):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        host.append((time.perf_counter() - t0) * 1e3)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return statistics.median(host), (time.perf_counter() - t0) * 1e3 / iters


def kernel_times(fn, device: str, iters: int) -> dict:
    """Profile `iters` calls of fn; per call: GPU kernel ms in all and by kernel name (device events only)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    _sync(device)
    with profile(activities=acts) as prof:
        for _ in range(iters):
            fn()
        _sync(device)
    by_name: dict[str, list] = {}
    for e in prof.events():
        if e.device_type != DeviceType.CUDA:
            continue
        us = e.time_range.elapsed_us()
        slot = by_name.setdefault(e.name, [0, 0.0])
        slot[0] += 1
        slot[1] += us
    kernels = sorted(((n, c / iters, us / iters / 1e3) for n, (c, us) in by_name.items()),
                     key=lambda r: -r[2])
    fams: dict[str, float] = {}
    for n, _, ms in kernels:
        fams[family(n)] = fams.get(family(n), 0.0) + ms
    return {"gpu_ms": sum(ms for _, _, ms in kernels),
            "kernels": [{"name": n, "per_call": c, "ms": ms} for n, c, ms in kernels],
            "families": dict(sorted(fams.items(), key=lambda kv: -kv[1]))}


def do_bench_ms(fn, device: str) -> float | None:
    if device != "cuda":
        return None
    import triton.testing
    return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))


# ------------------------------------------------------------------------------------------------
# 1. LayerNorm (+ residual) forward + backward
# ------------------------------------------------------------------------------------------------

def layernorm_profile(device: str, dtype: torch.dtype, shapes, iters: int, emit) -> None:
    from bench.kernels import layernorm_variant
    from kernels import layernorm as ln
    from kernels.backend import use_triton

    def torch_add_ln(x, w, b, r):
        h = x + r
        return F.layer_norm(h, (h.shape[-1],), w, b, 1e-5), h

    def ours(variant):  # bench.kernels' switch (it sets KERNELS_LAYERNORM_* on every call)
        run = layernorm_variant(variant)
        return lambda x, w, b, r: run(dict(x=x, w=w, b=b, r=r))

    providers = {"pytorch": torch_add_ln, "ours": ours("rows"), "ours-blocked": ours("blocked")}
    for m, n in shapes:
        g = torch.Generator(device=device).manual_seed(m * 31 + n)

        def randn(*shape, scale=1.0):
            return (torch.randn(*shape, generator=g, device=device, dtype=torch.float32) * scale).to(dtype)

        x, r = randn(m, n).requires_grad_(), randn(m, n).requires_grad_()
        w, b = (randn(n, scale=0.5) + 1.0).requires_grad_(), randn(n, scale=0.5).requires_grad_()
        gy, gh = randn(m, n), randn(m, n)
        leaves = (x, r, w, b)
        for name, f in providers.items():
            def fwd_bwd(f=f):
                for t in leaves:
                    t.grad = None
                y, h = f(x, w, b, r)
                torch.autograd.backward((y, h), (gy, gh))

            def fwd(f=f):
                with torch.no_grad():
                    f(x, w, b, r)
            try:
                fwd_bwd()  # compile / warm
                host_ms, wall_ms = host_and_wall(fwd_bwd, device, iters)
                prof = kernel_times(fwd_bwd, device, iters)
                row = {"op": "layernorm", "shape": f"M={m},N={n}", "provider": name,
                       "host_ms": host_ms, "wall_ms": wall_ms, **prof,
                       "do_bench_fwd_ms": do_bench_ms(fwd, device),
                       "do_bench_fwd_bwd_ms": do_bench_ms(fwd_bwd, device)}
                if name.startswith("ours") and use_triton(x):
                    # our backward op alone, called directly: no autograd, no forward
                    with torch.no_grad():
                        y, h, mean, rstd = ln.layer_norm_forward(x, r, w, b, 1e-5)

                    def bwd_op():
                        ln.layer_norm_backward(gy, gh, h, w, mean, rstd, True)
                    bwd_op()
                    row["direct_bwd_host_ms"], row["direct_bwd_wall_ms"] = host_and_wall(bwd_op, device, iters)
                    row["direct_bwd_gpu_ms"] = kernel_times(bwd_op, device, iters)["gpu_ms"]
                    row["direct_bwd_do_bench_ms"] = do_bench_ms(bwd_op, device)
            except Exception as e:  # one provider failing must not lose the others' rows
                row = {"op": "layernorm", "shape": f"M={m},N={n}", "provider": name,
                       "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
            emit(row)
    for k in ("KERNELS_LAYERNORM_FWD", "KERNELS_LAYERNORM_BWD"):
        os.environ.pop(k, None)


# ------------------------------------------------------------------------------------------------
# 2. one GPT-2 training step
# ------------------------------------------------------------------------------------------------

# Training-step variants: name -> (KERNELS_BACKEND, KERNELS_ATTENTION_LAYOUT). ours-packed last: its
# compiled warm-up did not finish in 175 s on the 2026-11-28 H200 run, so it must not cost the others.
MODEL_VARIANTS = {"ours": ("auto", "split"), "torch": ("torch", "split"), "ours-packed": ("auto", "packed")}


def model_profile(device: str, preset: str, batch: int, seq: int, iters: int, variants, compile_: bool,
                  emit) -> None:
    from gpt.model import GPT, GPTConfig, PRESETS

    for variant in variants:
        backend, layout = MODEL_VARIANTS[variant]
        os.environ["KERNELS_BACKEND"], os.environ["KERNELS_ATTENTION_LAYOUT"] = backend, layout
        if compile_:
            torch._dynamo.reset()  # the backend is read while tracing: no graph may carry over
        torch.manual_seed(0)
        cfg = GPTConfig(**{**PRESETS[preset], "block_size": max(seq, PRESETS[preset]["block_size"])})
        model = GPT(cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
        step_model = torch.compile(model) if compile_ else model
        idx = torch.randint(0, cfg.vocab_size, (batch, seq), device=device)
        tgt = torch.randint(0, cfg.vocab_size, (batch, seq), device=device)
        amp = torch.autocast(device_type=device, dtype=torch.bfloat16)

        def step():
            with amp:
                loss = step_model(idx, tgt)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        name = f"{variant}{'+compile' if compile_ else '+eager'}"
        try:
            for _ in range(3 if not compile_ else 5):
                step()
            host_ms, wall_ms = host_and_wall(step, device, iters)
            prof = kernel_times(step, device, iters)
            fpt = model.flops_per_token(seq)
            row = {"op": f"{preset} step", "shape": f"B={batch},T={seq}", "provider": name,
                   "host_ms": host_ms, "wall_ms": wall_ms, "tokens_per_s": batch * seq / (wall_ms / 1e3),
                   "tflops": batch * seq * fpt / (wall_ms / 1e3) / 1e12, **prof}
        except Exception as e:
            row = {"op": f"{preset} step", "shape": f"B={batch},T={seq}", "provider": name,
                   "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
        emit(row)
        del model, opt, step_model
        if device == "cuda":
            torch.cuda.empty_cache()
    os.environ.pop("KERNELS_BACKEND", None)
    os.environ.pop("KERNELS_ATTENTION_LAYOUT", None)


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------

def _fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def _row_line(row: dict) -> str:
    head = f"{row['op']:<16} {row['shape']:<16} {row['provider']:<14}"
    if "error" in row:
        return f"{head} FAILED {row['error']}"
    line = (f"{head} wall {_fmt(row['wall_ms'])} ms  host {_fmt(row['host_ms'])} ms  "
            f"gpu {_fmt(row['gpu_ms'])} ms")
    if row.get("do_bench_fwd_bwd_ms") is not None:
        line += f"  do_bench fwd {_fmt(row['do_bench_fwd_ms'])} / fwd+bwd {_fmt(row['do_bench_fwd_bwd_ms'])} ms"
    if "direct_bwd_wall_ms" in row:
        line += (f"  | bwd op alone: wall {_fmt(row['direct_bwd_wall_ms'])} host {_fmt(row['direct_bwd_host_ms'])}"
                 f" gpu {_fmt(row['direct_bwd_gpu_ms'])} do_bench {_fmt(row.get('direct_bwd_do_bench_ms'))} ms")
    if "tokens_per_s" in row:
        line += f"  {row['tokens_per_s']:,.0f} tok/s  {row['tflops']:.1f} TFLOP/s"
    return line


def report(rows: list[dict], top: int) -> str:
    out = ["# bench.profile_gpu: per call (LayerNorm fwd+bwd) or per training step; ms",
           "# wall: synchronised host clock; host: time to enqueue from an idle GPU; gpu: summed kernel time", ""]
    out += [_row_line(r) for r in rows]
    for r in rows:
        if "error" in r or not r.get("kernels"):
            continue
        out += ["", f"## {r['op']} {r['shape']} {r['provider']}: by family (ms per call)"]
        out += [f"  {fam:<24} {ms:9.3f}" for fam, ms in r["families"].items()]
        out += [f"  top kernels (of {len(r['kernels'])}):"]
        out += [f"  {k['ms']:9.3f} ms  x{k['per_call']:<5g} {k['name'][:110]}" for k in r["kernels"][:top]]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_gpu", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    p.add_argument("--tiny", action="store_true", help="small shapes and the tiny model (a plumbing check)")
    p.add_argument("--iters", type=int, default=20, help="calls per measurement")
    p.add_argument("--parts", default="layernorm,model", help="comma-separated: layernorm, model")
    p.add_argument("--compile", action="store_true",
                   help="also profile the compiled training step, after the eager one (each compile takes "
                        "tens of seconds; with Inductor's cache warm from the trainer's, less)")
    p.add_argument("--top", type=int, default=12, help="kernels listed per row in profile.txt")
    p.add_argument("--out", default=None, help="folder for profile.txt and profile.json (default: print only)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no GPU (use --device cpu)", file=sys.stderr)
        return 2
    parts = {s.strip() for s in args.parts.split(",") if s.strip()}
    unknown = parts - {"layernorm", "model"}
    if unknown:
        print(f"error: unknown part(s) {', '.join(sorted(unknown))} (use layernorm, model)", file=sys.stderr)
        return 2
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    rows: list[dict] = []
    meta = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
            "torch": torch.__version__, "rows": rows}
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)

    def emit(row):
        # every row is written as it comes, so a step cut by its time limit keeps what it measured
        rows.append(row)
        print(_row_line(row), flush=True)
        if out:
            (out / "profile.txt").write_text(report(rows, args.top))
            (out / "profile.json").write_text(json.dumps(meta, indent=1))

    if "layernorm" in parts:
        shapes = [(64, 256)] if args.tiny else [(16384, 768), (16384, 4096)]
        layernorm_profile(args.device, dtype, shapes, args.iters, emit)
    if "model" in parts:
        preset, batch, seq = ("tiny", 2, 64) if args.tiny else ("gpt2-124m", 16, 1024)
        for compiled in (False, True) if args.compile else (False,):
            model_profile(args.device, preset, batch, seq, max(3, args.iters // 4), list(MODEL_VARIANTS),
                          compiled, emit)
    print("\n" + report(rows, args.top))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
