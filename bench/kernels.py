"""Kernel benchmarks: our ops vs the naive reference vs PyTorch's own op vs torch.compile(reference).

    python -m bench.kernels                        # every op, full GPU shapes
    python -m bench.kernels --op layernorm --quick # one op, fewer shapes
    python -m bench.kernels --out DIR              # where the CSV and PNGs go (default bench/results)

Per op, shape and provider it measures three modes: forward, forward+backward, and backward
(= forward+backward minus forward, because our cross-entropy makes its gradient in the forward
pass, so a backward-only timing would flatter it). Every timing runs on fresh random inputs
(never zeros) after a warm-up; on a GPU it is the median of `triton.testing.do_bench`, with peak
memory from torch.cuda.max_memory_allocated. Rows (op, provider, mode, shape, dtype, metric, value,
device, versions) go to <out>/kernels-<device>.csv, one PNG per op next to it, and a summary table
(with the issue's targets as fractions of the card's measured copy bandwidth and bf16 matmul rate)
is printed last.

On a CPU it is a smoke check of the harness with tiny shapes: "ours" runs Triton's interpreter
when TRITON_INTERPRET=1 is set and PyTorch (KERNELS_BACKEND=torch) otherwise, and says which in
the provider name ("ours[interpreter]" / "ours[torch]"). CPU numbers say nothing about GPU speed.

Adding an op (e.g. attention): write a function `Settings -> list[Case]` and register it:

    @register("attention")
    def attention_cases(s: Settings) -> list[Case]:
        ...  # Case(op, shape, dtype, make_inputs, providers, flops={mode: ...})

`make_inputs()` returns a dict of fresh tensors; each provider maps that dict to the op's output
(a tensor or a tuple of tensors); `bytes`/`flops` give, per mode, what an ideal kernel moves or
computes, so the table shows GB/s or TFLOP/s.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
MODES = ("forward", "backward", "forward+backward")


# ------------------------------------------------------------------------------------------------
# Cases and the op registry
# ------------------------------------------------------------------------------------------------

@dataclass
class Settings:
    device: str            # "cuda" or "cpu"
    dtype: torch.dtype
    quick: bool
    with_compile: bool     # include the torch.compile(reference) provider
    ours_label: str        # "ours", "ours[interpreter]" or "ours[torch]"


@dataclass
class Case:
    op: str
    shape: str                                   # a label such as "M=16384,N=768"
    dtype: torch.dtype
    make_inputs: Callable[[], dict]              # fresh random tensors for one provider
    providers: dict[str, Callable[[dict], object]]
    bytes: dict[str, float] = field(default_factory=dict)   # mode -> ideal bytes moved
    flops: dict[str, float] = field(default_factory=dict)   # mode -> FLOPs
    # Also record the summed GPU kernel time (metric gpu_ms, from torch.profiler) beside the wall time:
    # for ops whose one call is short enough that the host's time to enqueue it is what do_bench
    # measures (LayerNorm on the 2026-11-28 H200: ~1 ms of host for 0.1 ms of kernels).
    kernel_time: bool = False


OPS: dict[str, Callable[[Settings], list[Case]]] = {}


def register(name: str):
    def wrap(builder):
        OPS[name] = builder
        return builder
    return wrap


def _randn(*shape, s: Settings, scale=1.0, grad=True):
    t = torch.randn(*shape, device=s.device, dtype=torch.float32) * scale
    return t.to(s.dtype).requires_grad_(grad)


def _compiled(fn, s: Settings):
    return torch.compile(fn, dynamic=False) if s.with_compile else None


def _providers(s: Settings, ours, reference, pytorch):
    out = {s.ours_label: ours, "reference": reference, "pytorch": pytorch}
    compiled = _compiled(reference, s)
    if compiled is not None:
        out["compiled"] = compiled
    return out


_LN_VARIANT_ENV = {k: os.environ.get(k) for k in ("KERNELS_LAYERNORM_FWD", "KERNELS_LAYERNORM_BWD")}


def layernorm_variant(variant):
    """kernels.layer_norm with both KERNELS_LAYERNORM_* set to `variant` (None: as the bench was
    started). Set on every call, so the backward that follows it runs the same variant."""
    import kernels

    def run(i):
        for k, v in _LN_VARIANT_ENV.items():
            if (variant or v) is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = variant or v
        return kernels.layer_norm(i["x"], i["w"], i["b"], residual=i["r"])
    return run


@register("layernorm")
def layernorm_cases(s: Settings) -> list[Case]:
    from kernels import reference

    if s.device == "cpu":
        shapes = [(64, 256)]
    else:
        shapes = [(16384, n) for n in ((768, 4096) if s.quick else (768, 1024, 2048, 4096, 8192))]
    cases = []
    for m, n in shapes:
        def make(m=m, n=n):
            return dict(x=_randn(m, n, s=s), r=_randn(m, n, s=s), w=_randn(n, s=s, scale=0.5) + 1.0,
                        b=_randn(n, s=s, scale=0.5))

        def torch_add_then_ln(i):  # what a model does without fusion
            h = i["x"] + i["r"]
            return F.layer_norm(h, (h.shape[-1],), i["w"], i["b"], 1e-5), h

        elt = torch.finfo(s.dtype).bits // 8
        providers = _providers(s, layernorm_variant(None),
                               lambda i: reference.layer_norm(i["x"], i["w"], i["b"], residual=i["r"]),
                               torch_add_then_ln)
        if s.ours_label != "ours[torch]":  # the switchable blocked kernels (KERNELS_LAYERNORM_*)
            providers[s.ours_label.replace("ours", "ours-blocked")] = layernorm_variant("blocked")
        cases.append(Case(
            "layernorm", f"M={m},N={n}", s.dtype, make, providers,
            # forward reads x, r and writes y, h; backward reads dy, dh, h and writes dx (= dr)
            bytes={"forward": 4 * m * n * elt, "backward": 4 * m * n * elt,
                   "forward+backward": 8 * m * n * elt},
            kernel_time=True,
        ))
    for c in cases:  # leaf weights: a fresh leaf so .grad is populated
        c.make_inputs = _leafify(c.make_inputs)
    return cases


@register("cross_entropy")
def cross_entropy_cases(s: Settings) -> list[Case]:
    import kernels
    from kernels import reference

    shapes = [(16, 1000)] if s.device == "cpu" else [(16384, 50304)] if s.quick else \
        [(4096, 50304), (16384, 50304), (8192, 128256)]
    cases = []
    for m, v in shapes:
        def make(m=m, v=v):
            return dict(logits=_randn(m, v, s=s, scale=2.0),
                        targets=torch.randint(0, v, (m,), device=s.device))

        elt = torch.finfo(s.dtype).bits // 8
        cases.append(Case(
            "cross_entropy", f"M={m},V={v}", s.dtype, make,
            _providers(s,
                       lambda i: kernels.cross_entropy(i["logits"], i["targets"]),
                       lambda i: reference.cross_entropy(i["logits"], i["targets"]),
                       lambda i: F.cross_entropy(i["logits"], i["targets"])),
            # ideal: read the logits once; the backward writes their gradient once
            bytes={"forward": m * v * elt, "backward": m * v * elt, "forward+backward": 2 * m * v * elt},
        ))
    return cases


@register("linear_cross_entropy")
def linear_cross_entropy_cases(s: Settings) -> list[Case]:
    import kernels
    from kernels import reference

    shapes = [(32, 64, 1000)] if s.device == "cpu" else [(16384, 768, 50304)] if s.quick else \
        [(4096, 768, 50304), (16384, 768, 50304), (16384, 1024, 50304)]
    cases = []
    for m, d, v in shapes:
        def make(m=m, d=d, v=v):
            return dict(x=_randn(m, d, s=s), w=_randn(v, d, s=s, scale=d ** -0.5),
                        targets=torch.randint(0, v, (m,), device=s.device))

        cases.append(Case(
            "linear_cross_entropy", f"M={m},D={d},V={v}", s.dtype, _leafify(make),
            _providers(s,
                       lambda i: kernels.linear_cross_entropy(i["x"], i["w"], i["targets"]),
                       lambda i: reference.linear_cross_entropy(i["x"], i["w"], i["targets"]),
                       lambda i: F.cross_entropy(F.linear(i["x"], i["w"]), i["targets"])),
            flops={"forward": 2 * m * d * v, "backward": 4 * m * d * v, "forward+backward": 6 * m * d * v},
        ))
    return cases


@register("attention")
def attention_cases(s: Settings) -> list[Case]:
    from bench import attention_cases as ac  # shapes, FLOPs and providers live there

    compiled = ac.compiled_reference() if s.with_compile else None  # one compile for all shapes
    cases = []
    for B, H, T, D in ac.shapes(s.device, s.quick):
        # SDPA with each backend pinned on a GPU (the fair baseline), and which one its default picks
        if s.device == "cuda":
            try:
                SDPA_INFO[ac.shape_label(B, H, T, D)] = ac.sdpa_info(B, H, T, D, s.dtype, s.device)
            except Exception as e:  # noqa: BLE001 - information only; never ends the run
                SDPA_INFO[ac.shape_label(B, H, T, D)] = {"error": f"{type(e).__name__}: {e}"[:200]}
        cases.append(Case("attention", ac.shape_label(B, H, T, D), s.dtype,
                          ac.make_inputs(B, H, T, D, s.dtype, s.device),
                          ac.providers(s.ours_label, compiled, pinned=s.device == "cuda"),
                          flops=ac.flops(B, H, T, D, causal=True)))
    return cases


SDPA_INFO: dict[str, dict] = {}   # attention shape -> what SDPA does there (bench.attention_cases.sdpa_info)
FAILURES: list[str] = []          # "op shape provider: error" for every provider that could not run


def _leafify(make):
    """Inputs built with arithmetic (w + 1.0) are not leaves; make every float tensor a leaf."""
    def wrapped():
        out = {}
        for k, t in make().items():
            out[k] = t.detach().requires_grad_() if t.is_floating_point() else t
        return out
    return wrapped


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------

def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _time_ms(fn, device: str, grad_to_none, repeats: int) -> float:
    """Median milliseconds of fn(): triton's do_bench on a GPU, a perf_counter loop on a CPU."""
    if device == "cuda":
        import triton.testing
        return float(triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grad_to_none,
                                             return_mode="median"))
    fn()  # warm-up (compilation, interpreter caches)
    times = []
    for _ in range(repeats):
        for t in grad_to_none:
            t.grad = None
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _kernel_ms(fn, grad_to_none, iters: int = 10) -> float:
    """Summed GPU kernel time of one fn() in ms (torch.profiler, mean of `iters` calls after one warm-up):
    what the GPU spends, whatever the host's time to enqueue it."""
    from bench.profile_gpu import kernel_times

    def call():
        for t in grad_to_none:
            t.grad = None
        fn()
    call()
    return kernel_times(call, "cuda", iters)["gpu_ms"]


def _peak_mib(fn, device: str, grad_to_none) -> float:
    if device != "cuda":
        return math.nan
    for t in grad_to_none:
        t.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2 ** 20


def run_case(case: Case, s: Settings, repeats: int) -> list[dict]:
    """Time every provider of `case` in every mode; one dict per (provider, mode, metric)."""
    rows = []
    check_out = None
    for provider, fn in case.providers.items():
        torch.manual_seed(1234)  # the same random inputs for every provider (so outputs compare)
        inputs = case.make_inputs()
        leaves = [t for t in inputs.values() if isinstance(t, torch.Tensor) and t.requires_grad]
        try:
            out = _as_tuple(fn(inputs))
            grads = [torch.randn_like(o) for o in out]  # fresh upstream gradients, never ones

            def forward():
                return fn(inputs)

            def forward_backward():
                torch.autograd.backward(_as_tuple(fn(inputs)), grads)

            results = {}
            for mode, f in (("forward", forward), ("forward+backward", forward_backward)):
                results[mode] = (_time_ms(f, s.device, leaves, repeats), _peak_mib(f, s.device, leaves))
            results["backward"] = (max(results["forward+backward"][0] - results["forward"][0], 0.0),
                                   math.nan)
            gpu = {}
            if case.kernel_time and s.device == "cuda":
                for mode, f in (("forward", forward), ("forward+backward", forward_backward)):
                    gpu[mode] = _kernel_ms(f, leaves)
                gpu["backward"] = max(gpu["forward+backward"] - gpu["forward"], 0.0)
            # A correctness glance: every provider's first output vs "pytorch"'s.
            with torch.no_grad():
                first = _as_tuple(fn(inputs))[0].float()
            if provider == "pytorch":
                check_out = first
            err = math.nan
            if check_out is not None and provider != "pytorch":
                err = ((first - check_out).abs().max() / check_out.abs().max().clamp_min(1e-30)).item()
        except Exception as e:  # an OOM, a compile failure or an unavailable SDPA backend must not end the suite
            first_line = (str(e).splitlines() or [""])[0][:160]
            print(f"  {case.op} {case.shape} {provider}: FAILED ({type(e).__name__}: {first_line})",
                  file=sys.stderr)
            FAILURES.append(f"{case.op} {case.shape} {provider}: unavailable/failed "
                            f"({type(e).__name__}: {first_line})")
            rows.append(_row(case, provider, "forward", "failed", 1))
            if s.device == "cuda":
                torch.cuda.empty_cache()
            continue
        for mode in MODES:
            ms, peak = results[mode]
            rows.append(_row(case, provider, mode, "ms", ms))
            if not math.isnan(peak):
                rows.append(_row(case, provider, mode, "peak_MiB", peak))
            if mode in case.bytes and ms > 0:
                rows.append(_row(case, provider, mode, "GB/s", case.bytes[mode] / ms / 1e6))
            if mode in case.flops and ms > 0:
                rows.append(_row(case, provider, mode, "TFLOP/s", case.flops[mode] / ms / 1e9))
            if mode in gpu:
                rows.append(_row(case, provider, mode, "gpu_ms", gpu[mode]))
                if mode in case.bytes and gpu[mode] > 0:
                    rows.append(_row(case, provider, mode, "gpu_GB/s", case.bytes[mode] / gpu[mode] / 1e6))
        if not math.isnan(err):
            rows.append(_row(case, provider, "forward", "max_rel_err_vs_pytorch", err))
        print(f"  {case.op:22s} {case.shape:22s} {provider:18s} fwd {results['forward'][0]:9.3f} ms"
              f"   fwd+bwd {results['forward+backward'][0]:9.3f} ms", flush=True)
        del inputs, out, grads
    return rows


# Reorder so "pytorch" runs first: the others are checked against its output.
def _pytorch_first(case: Case) -> Case:
    order = sorted(case.providers, key=lambda p: p != "pytorch")
    case.providers = {p: case.providers[p] for p in order}
    return case


def _row(case, provider, mode, metric, value):
    return dict(op=case.op, provider=provider, mode=mode, shape=case.shape,
                dtype=str(case.dtype).replace("torch.", ""), metric=metric, value=f"{value:.6g}")


# ------------------------------------------------------------------------------------------------
# The card's own limits
# ------------------------------------------------------------------------------------------------

def measure_card(device: str = "cuda", copy_mib: int = 1024, matmul_n: int = 8192) -> dict:
    """The card's measured device-to-device copy bandwidth (GB/s, read + write counted) and bf16
    matmul rate (TFLOP/s), so every kernel figure can be read as a fraction of them."""
    if device == "cpu":
        copy_mib, matmul_n = min(copy_mib, 64), min(matmul_n, 512)
    src = torch.randn(copy_mib * 2 ** 20 // 4, device=device)
    dst = torch.empty_like(src)
    copy_ms = _time_ms(lambda: dst.copy_(src), device, [], repeats=5)
    a = torch.randn(matmul_n, matmul_n, device=device).to(torch.bfloat16)
    b = torch.randn(matmul_n, matmul_n, device=device).to(torch.bfloat16)
    mm_ms = _time_ms(lambda: a @ b, device, [], repeats=3)
    return {"copy_GB/s": 2 * src.numel() * 4 / copy_ms / 1e6,
            "bf16_matmul_TFLOP/s": 2 * matmul_n ** 3 / mm_ms / 1e9}


# ------------------------------------------------------------------------------------------------
# Output: CSV, plots, summary
# ------------------------------------------------------------------------------------------------

def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def versions() -> str:
    import triton
    return (f"python {platform.python_version()}; torch {torch.__version__}; "
            f"triton {triton.__version__}")


def write_csv(rows: list[dict], path: Path, device: str, vers: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["op", "provider", "mode", "shape", "dtype", "metric", "value", "device", "versions"]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "device": device, "versions": vers})


def plot(rows: list[dict], out_dir: Path, slug: str) -> list[Path]:
    """One PNG per op: milliseconds per provider, one panel per mode, one bar group per shape."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for op in sorted({r["op"] for r in rows if r["op"] != "card"}):
        ms = [r for r in rows if r["op"] == op and r["metric"] == "ms"]
        shapes = list(dict.fromkeys(r["shape"] for r in ms))
        providers = list(dict.fromkeys(r["provider"] for r in ms))
        fig, axes = plt.subplots(1, len(MODES), figsize=(5 * len(MODES), 4), squeeze=False)
        width = 0.8 / max(len(providers), 1)
        for ax, mode in zip(axes[0], MODES):
            for k, p in enumerate(providers):
                vals = [next((float(r["value"]) for r in ms if r["shape"] == sh and r["provider"] == p
                              and r["mode"] == mode), math.nan) for sh in shapes]
                ax.bar([i + k * width for i in range(len(shapes))], vals, width, label=p)
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(shapes))])
            ax.set_xticklabels(shapes, rotation=15, fontsize=7)
            ax.set_title(f"{op}: {mode}")
            ax.set_ylabel("ms (lower is better)")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"kernels-{op}-{slug}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _value(rows, **match):
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return float(r["value"])
    return math.nan


def summary(rows: list[dict], card: dict, ours: str, targets: bool = True) -> str:
    lines = [f"{'op':22s} {'shape':22s} {'mode':17s} {'provider':18s} {'ms':>9s} {'GB/s|TF/s':>10s} "
             f"{'peak MiB':>9s}"]
    keys = list(dict.fromkeys((r["op"], r["shape"], r["mode"], r["provider"]) for r in rows
                              if r["metric"] == "ms"))
    for op, shape, mode, prov in keys:
        m = dict(op=op, shape=shape, mode=mode, provider=prov)
        rate = _value(rows, metric="GB/s", **m)
        if math.isnan(rate):
            rate = _value(rows, metric="TFLOP/s", **m)
        lines.append(f"{op:22s} {shape:22s} {mode:17s} {prov:18s} {_value(rows, metric='ms', **m):9.3f} "
                     f"{rate:10.1f} {_value(rows, metric='peak_MiB', **m):9.1f}")
    lines.append("")
    lines.append("card: " + ", ".join(f"{k} {v:.1f}" for k, v in card.items()))
    if not targets:
        lines.append("(CPU smoke run: the GPU targets are not evaluated)")
        return "\n".join(lines)
    # The targets, where the data is there.
    fb = "forward+backward"
    for op, shape in dict.fromkeys((r["op"], r["shape"]) for r in rows if r["metric"] == "ms"):
        ours_ms = _value(rows, op=op, shape=shape, mode=fb, provider=ours, metric="ms")
        torch_ms = _value(rows, op=op, shape=shape, mode=fb, provider="pytorch", metric="ms")
        line = f"target {op} {shape}: fwd+bwd speed-up vs pytorch {torch_ms / ours_ms:.2f}x"
        if op == "layernorm":
            gbs = _value(rows, op=op, shape=shape, mode=fb, provider=ours, metric="GB/s")
            line += (f" (want >= 1.3x); {gbs / card.get('copy_GB/s', math.nan):.0%} of copy "
                     f"bandwidth (want >= 85%)")
            ours_gpu = _value(rows, op=op, shape=shape, mode=fb, provider=ours, metric="gpu_ms")
            torch_gpu = _value(rows, op=op, shape=shape, mode=fb, provider="pytorch", metric="gpu_ms")
            if not math.isnan(ours_gpu) and ours_gpu > 0:
                gpu_gbs = _value(rows, op=op, shape=shape, mode=fb, provider=ours, metric="gpu_GB/s")
                line += (f"; GPU kernel time alone: {torch_gpu / ours_gpu:.2f}x, "
                         f"{gpu_gbs / card.get('copy_GB/s', math.nan):.0%} of copy bandwidth")
        if op == "linear_cross_entropy":
            pk = (_value(rows, op=op, shape=shape, mode=fb, provider=ours, metric="peak_MiB")
                  / _value(rows, op=op, shape=shape, mode=fb, provider="pytorch", metric="peak_MiB"))
            line += f" (want >= 1.0x); peak memory {pk:.0%} of pytorch's (want <= 25%)"
        if op == "attention":
            continue  # its own lines below
        lines.append(line)
    from bench.attention_cases import target_lines
    lines += target_lines(rows, ours, _value)
    lines += sdpa_lines(rows)
    if FAILURES:
        lines.append("providers that could not run (recorded, not fatal):")
        lines += [f"  {f}" for f in FAILURES]
    return "\n".join(lines)


def sdpa_report(rows: list[dict]) -> dict:
    """SDPA_INFO plus, per attention shape, the fastest SDPA provider in fwd+bwd; and the backend
    the plain-PyTorch training baseline should pin (the fastest at the GPT-2 shape D=64, else the
    nearest shape measured): bench/gpu_suite.sh passes it to bench.train."""
    from bench.attention_cases import SDPA_BACKENDS, fastest_sdpa

    report = {"cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
              "shapes": {}}
    for shape, info in SDPA_INFO.items():
        best, ms = fastest_sdpa(rows, _value, shape)
        report["shapes"][shape] = {**info, "fastest_fwd_bwd": best,
                                   "fwd_bwd_ms": {p: _value(rows, op="attention", shape=shape,
                                                            mode="forward+backward", provider=p, metric="ms")
                                                  for p in ("pytorch", *SDPA_BACKENDS)}}
    shapes = list(report["shapes"])
    pick = next((sh for sh in shapes if sh.endswith("D=64") and "T=1024" in sh), None) or \
        next((sh for sh in shapes if sh.endswith("D=64")), None) or (shapes[0] if shapes else None)
    best = report["shapes"][pick]["fastest_fwd_bwd"] if pick else "pytorch"
    # "pytorch" = the default pick; a pinned label maps to a backend name bench.train understands
    report["training_baseline"] = {"sdpa-flash": "flash", "sdpa-cudnn": "cudnn",
                                   "sdpa-efficient": "efficient"}.get(best, "default")
    report["training_baseline_shape"] = pick
    return report


def sdpa_lines(rows: list[dict]) -> list[str]:
    if not SDPA_INFO:
        return []
    rep = sdpa_report(rows)
    lines = [f"sdpa: cuDNN version {rep['cudnn_version']}"]
    for shape, info in rep["shapes"].items():
        ms = ", ".join(f"{p} {v:.3f}" for p, v in info["fwd_bwd_ms"].items() if not math.isnan(v))
        unavailable = [p for p, st in info.get("backends", {}).items() if st != "ok"]
        lines.append(f"sdpa {shape}: default picks {info.get('default_backend')}; fastest fwd+bwd "
                     f"{info['fastest_fwd_bwd']} (ms: {ms})"
                     + (f"; unavailable: {', '.join(unavailable)}" if unavailable else ""))
    lines.append(f"sdpa: the plain-PyTorch training baseline pins '{rep['training_baseline']}' "
                 f"(fastest at {rep['training_baseline_shape']})")
    return lines


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.kernels", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--op", default="all",
                    help=f"one of {', '.join(OPS)}, a comma-separated list (run in that order) or all")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="start no new case after this many seconds (the CSV so far is kept)")
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    ap.add_argument("--dtype", default=None, choices=sorted(DTYPES),
                    help="input dtype (default bf16 on a GPU, fp32 on a CPU)")
    ap.add_argument("--device", default=None, choices=["cuda", "cpu"],
                    help="default: cuda when available")
    ap.add_argument("--compile", dest="with_compile", action=argparse.BooleanOptionalAction,
                    default=None, help="include torch.compile(reference) (default: on a GPU only)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                    help="folder for the CSV and PNGs (default bench/results)")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    unknown = [o for o in args.op.split(",") if o not in OPS] if args.op != "all" else []
    if unknown:
        print(f"error: unknown --op {','.join(unknown)!r}; choose from {', '.join(OPS)} or all", file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no GPU; use --device cpu", file=sys.stderr)
        return 2
    if device == "cuda":
        ours = "ours"
        os.environ["KERNELS_BACKEND"] = "auto"
    elif os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        ours = "ours[interpreter]"
        os.environ["KERNELS_BACKEND"] = "triton"
    else:
        ours = "ours[torch]"
        os.environ["KERNELS_BACKEND"] = "torch"
    s = Settings(device=device,
                 dtype=DTYPES[args.dtype] if args.dtype else (torch.bfloat16 if device == "cuda"
                                                              else torch.float32),
                 quick=args.quick or device == "cpu",
                 with_compile=args.with_compile if args.with_compile is not None else device == "cuda",
                 ours_label=ours)
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)  # a smoke run on a shared CPU: one thread avoids wake-up stalls
    try:
        return _run(args, s, repeats=7 if device == "cpu" else 3 if args.quick else 10)
    finally:
        torch.set_num_threads(threads)


def _run(args, s: Settings, repeats: int) -> int:
    device, ours = s.device, s.ours_label
    names = list(OPS) if args.op == "all" else args.op.split(",")
    dev_name, vers = device_name(device), versions()
    t_start = time.time()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", dev_name).strip("-").lower()[:40] + ("-quick" if s.quick else "")
    csv_path = args.out / f"kernels-{slug}.csv"
    print(f"bench.kernels on {dev_name} ({device}); {vers}; ours = {ours}; dtype {s.dtype}", flush=True)
    torch.manual_seed(0)
    card = measure_card(device)
    print("card: " + ", ".join(f"{k} {v:.1f}" for k, v in card.items()), flush=True)
    rows = [dict(op="card", provider="-", mode="-", shape="-", dtype="-", metric=k, value=f"{v:.6g}")
            for k, v in card.items()]
    skipped = []
    for name in names:
        for case in OPS[name](s):
            if args.budget_s is not None and time.time() - t_start > args.budget_s:
                skipped.append(f"{case.op} {case.shape}")
                continue
            rows += run_case(_pytorch_first(case), s, repeats)
            write_csv(rows, csv_path, dev_name, vers)  # after every case: a time limit loses little
    if skipped:
        print(f"budget of {args.budget_s:.0f}s spent: skipped {'; '.join(skipped)}")
    write_csv(rows, csv_path, dev_name, vers)
    print(f"wrote {csv_path}")
    if SDPA_INFO:
        import json

        sdpa_path = args.out / "sdpa.json"
        sdpa_path.write_text(json.dumps(sdpa_report(rows), indent=1) + "\n")
        print(f"wrote {sdpa_path}")
    if not args.no_plots:
        for p in plot(rows, args.out, slug):
            print(f"wrote {p}")
    print()
    print(summary(rows, card, ours, targets=device == "cuda"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
