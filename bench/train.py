"""Training throughput: tokens/s and MFU of the real trainer, our kernels vs plain PyTorch, compile on/off.

    python -m bench.train --config small --data data/processed/shakespeare          # CPU: compile vs eager
    python -m bench.train --config gpt2-124m --synthetic --seconds 60 \\
        --variants ours+compile torch+compile                                        # GPU (bench/gpu_suite.sh)

Each variant is one `python -m train` process (fresh memory; torch.compile may reuse its on-disk
cache) that trains for --seconds after its first step (the one that compiles), with checkpoints and
evaluation off, all in the same invocation, so the ratios compare runs on the same machine minutes
apart. A variant is BACKEND+MODE: BACKEND `ours` = KERNELS_BACKEND=auto (Triton
kernels on CUDA tensors; on CPU tensors auto means PyTorch, so ours == torch there), `torch` =
KERNELS_BACKEND=torch (plain PyTorch: SDPA + F.layer_norm + F.cross_entropy on materialised logits);
MODE `compile` or `eager`. Throughput counts only log intervals after the first --skip-logs ones
(torch.compile and warm-up happen there): tokens/s = tokens in those intervals / their wall time, and
MFU = tokens/s x FLOPs per token / peak FLOP/s of the device (the trainer's estimate: datasheet bf16
peak on known GPUs, measured fp32 matmul rate on CPUs).

--synthetic trains on uniformly random token ids (vocab 50257): throughput does not depend on the text,
and the GPU machine has no corpus. Writes train.csv, train.json and train.png under --out.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"ours": "auto", "torch": "torch"}
# The plain-PyTorch baseline may pin one SDPA backend: torch[flash], torch[cudnn], torch[efficient]
# (torch = torch[default], PyTorch's own pick). bench/gpu_suite.sh pins the one bench.kernels found
# fastest, so the baseline is the best plain PyTorch can do on the card.
SDPA_PINS = ("default", "flash", "cudnn", "efficient")


def parse_variant(text: str) -> tuple[str, bool]:
    """'BACKEND+MODE' -> (BACKEND, compiled); BACKEND may carry an SDPA pin: torch[cudnn]+compile."""
    backend, _, mode = text.partition("+")
    base, _, pin = backend.partition("[")
    ok = base in BACKENDS and mode in ("compile", "eager")
    if pin:
        ok = ok and base == "torch" and pin.endswith("]") and pin[:-1] in SDPA_PINS
    if not ok:
        raise ValueError(f"variant {text!r}: write BACKEND+MODE with BACKEND in {sorted(BACKENDS)} "
                         f"(torch may pin an SDPA backend: torch[{'|'.join(SDPA_PINS)}]) and MODE compile "
                         f"or eager, e.g. ours+compile or torch[flash]+compile")
    if pin == "default]":
        backend = base
    return backend, mode == "compile"


def _sdpa_pin(backend: str) -> str:
    """'torch[cudnn]' -> 'cudnn'; '' when nothing is pinned."""
    return backend.partition("[")[2].rstrip("]")


# Runs `python -m train` with one SDPA backend enabled (math stays on as the fallback of last resort).
# The global switches are read when SDPA picks its kernel, also while torch.compile traces the model.
_PINNED_TRAIN = """import runpy, sys, torch
pin = sys.argv.pop(1)
torch.backends.cuda.enable_flash_sdp(pin == "flash")
torch.backends.cuda.enable_cudnn_sdp(pin == "cudnn")
torch.backends.cuda.enable_mem_efficient_sdp(pin == "efficient")
torch.backends.cuda.enable_math_sdp(True)
print(f"[bench.train] SDPA pinned to {pin}", file=sys.stderr, flush=True)
runpy.run_module("train", run_name="__main__", alter_sys=True)
"""


def write_synthetic(folder: Path, vocab: int, n_tokens: int, seed: int = 0) -> Path:
    from data.shards import write_dataset

    rng = np.random.default_rng(seed)
    write_dataset(folder, {"train": [(rng.integers(0, vocab - 1, n_tokens), None)]}, vocab_size=vocab,
                  eos_id=vocab - 1)
    return folder


def measure(log_path: Path, skip_logs: int) -> dict:
    """Throughput over the train log intervals after the first skip_logs."""
    from train.log import read_log

    records = read_log(log_path)
    header = next(r for r in records if r["kind"] == "run")
    train = [r for r in records if r["kind"] == "train"]
    if len(train) <= skip_logs:
        raise ValueError(f"only {len(train)} log intervals in {log_path}: run longer (--seconds) or log more often")
    kept = train[skip_logs:]
    seconds = sum(r["interval_s"] for r in kept)
    tokens = sum(r["steps"] for r in kept) * header["tokens_per_step"]
    tokens_per_s = tokens / seconds
    return {"tokens_per_s": tokens_per_s,
            "mfu": tokens_per_s / header["world_size"] * header["flops_per_token"] / header["peak_flops"],
            "measured_steps": sum(r["steps"] for r in kept), "measured_s": seconds,
            "warmup_s": train[skip_logs - 1]["elapsed_s"] if skip_logs else 0.0,
            "loss": train[-1]["loss"], "params": header["params"], "dtype": header["dtype"],
            "device": header["device"], "peak_flops": header["peak_flops"], "peak_source": header["peak_source"],
            "tokens_per_step": header["tokens_per_step"]}


def median_row(rows: list[dict]) -> dict:
    """The repeat with the median tokens/s (all repeats' tokens/s kept in `repeats`); failures win."""
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        return failed[0]
    ranked = sorted(rows, key=lambda r: r["tokens_per_s"])
    row = dict(ranked[(len(ranked) - 1) // 2])
    row["repeats"] = [round(r["tokens_per_s"], 1) for r in rows]
    return row


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group proc leads (it was started in a session of its own), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _last_line(path: Path) -> str:
    return (path.read_text(errors="replace").strip().splitlines() or ["(no output)"])[-1]


def run_variant(args, backend: str, compiled: bool, data_dir: Path, work: Path, rep: int = 0) -> dict:
    name = f"{backend}+{'compile' if compiled else 'eager'}"
    slug = name.replace("+", "-").replace("[", "-").replace("]", "")
    out_dir = work / f"{slug}-{rep}"
    sets = [f"data.dir={data_dir}", f"train.out_dir={out_dir}", f"train.compile={str(compiled).lower()}",
            f"train.max_seconds={args.seconds}", "train.max_steps=1000000000", "train.ckpt_interval=-1",
            "train.eval_interval=0", "data.val_split=none", "train.progress=false",
            f"train.log_interval={args.log_interval}", *args.set]
    env = {**os.environ, "KERNELS_BACKEND": BACKENDS[backend.partition("[")[0]]}
    pin = _sdpa_pin(backend)
    launcher = ["-c", _PINNED_TRAIN, pin] if pin else ["-m", "train"]
    cmd = [sys.executable, *launcher, "--config", args.config, "--set", *sets]
    print(f"[bench.train] {name}: {' '.join(cmd[1:]) if not pin else 'SDPA ' + pin + ': train ' + ' '.join(cmd[4:])}",
          file=sys.stderr, flush=True)
    t0 = time.time()
    log_path = work / f"{slug}-{rep}.log"
    # The run writes straight into its log, unbuffered, in a session of its own: a run cut at its time
    # limit is killed with its whole process group (torch.compile's workers too, which would otherwise
    # hold a pipe open) and its log still says how far it got.
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout=args.seconds + args.startup_timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return {"variant": name,
                    "status": f"timeout after {time.time() - t0:.0f}s (last output: {_last_line(log_path)[:200]})"}
    if returncode != 0:
        return {"variant": name, "status": f"failed (rc {returncode}): {_last_line(log_path)[:300]}"}
    try:
        row = measure(out_dir / "log.jsonl", args.skip_logs)
    except (ValueError, OSError, StopIteration) as e:
        return {"variant": name, "status": f"no measurement: {e}"}
    return {"variant": name, "status": "ok", "backend": backend, "compile": compiled,
            "wall_s": time.time() - t0, **row}


def plot(rows: list[dict], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar([r["variant"] for r in ok], [r["tokens_per_s"] for r in ok], color="#4477aa")
    for bar, r in zip(bars, ok):
        ax.annotate(f"{r['tokens_per_s']:,.0f}\nMFU {100 * r['mfu']:.1f}%", (bar.get_x() + bar.get_width() / 2,
                    bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("tokens / s")
    ax.set_title(title, fontsize=9)
    ax.margins(y=0.25)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default="small", help="trainer config (preset name or JSON)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", default=None, help="prepared data folder (default: the config's data.dir)")
    src.add_argument("--synthetic", action="store_true", help="random token ids (vocab --vocab) instead of data")
    p.add_argument("--vocab", type=int, default=50257, help="vocabulary of --synthetic data")
    p.add_argument("--variants", nargs="+", default=None,
                   help="BACKEND+MODE list (default: ours+compile torch+compile on CUDA, "
                        "torch+compile torch+eager on CPU)")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="training time of each run after its first step (torch.compile happens in that step)")
    p.add_argument("--repeat", type=int, default=1, help="run every variant this many times, alternating; "
                   "report the median")
    p.add_argument("--skip-logs", type=int, default=2, help="first log intervals left out (compile, warm-up)")
    p.add_argument("--log-interval", type=int, default=5, help="steps per log interval")
    p.add_argument("--startup-timeout", type=float, default=300.0,
                   help="seconds allowed beyond --seconds (start-up, compile) before a run is killed")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="extra trainer overrides, e.g. train.batch_size=8")
    p.add_argument("--out", default=None, help="results folder (default: bench/results/train-<utc time>)")
    args = p.parse_args(argv)

    try:
        import torch

        from train.config import load_config

        config = load_config(args.config, args.set)  # fail fast on a bad config, before any run
        cuda = torch.cuda.is_available() and config.train.device != "cpu"
        variants = [parse_variant(v) for v in (args.variants or (
            ["ours+compile", "torch+compile"] if cuda else ["torch+compile", "torch+eager"]))]
        if args.seconds <= 0 or args.repeat <= 0:
            raise ValueError("--seconds and --repeat must be positive")
        out = Path(args.out or ROOT / "bench" / "results" / f"train-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}")
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
            work = Path(tmp)
            if args.synthetic:
                from gpt.model import PRESETS

                block = config.model.block_size or PRESETS[config.model.preset]["block_size"]
                data_dir = write_synthetic(work / "data", args.vocab, max(2_000_000, 64 * block * 64))
            else:
                data_dir = Path(args.data or config.data.dir)
                from data.shards import read_meta

                read_meta(data_dir)
            if not cuda and not any(o.startswith("train.peak_flops=") for o in args.set):
                # one CPU peak for every variant (best of 20 short matmul timings), so their MFUs compare
                from train.log import measured_matmul_flops

                args.set.append(f"train.peak_flops={measured_matmul_flops(torch.device('cpu'), trials=20):.6g}")
            runs: dict[str, list[dict]] = {}
            for rep in range(args.repeat):  # variants alternate, so a change in machine load hits all
                for backend, compiled in variants:
                    row = run_variant(args, backend, compiled, data_dir, work, rep)
                    runs.setdefault(row["variant"], []).append(row)
            rows = [median_row(r) for r in runs.values()]
            for log in work.glob("*.log"):  # each run's console output and its JSONL log
                (out / log.name).write_text(log.read_text())
            for jsonl in work.glob("*/log.jsonl"):
                (out / f"{jsonl.parent.name}.jsonl").write_text(jsonl.read_text())
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    device_name = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)"
    meta = {"config": args.config, "data": "synthetic" if args.synthetic else str(data_dir), "device": device_name,
            "torch": torch.__version__, "triton": _triton_version(), "seconds_per_run": args.seconds,
            "overrides": args.set, "repeat": args.repeat, "utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    fields = ["variant", "status", "tokens_per_s", "repeats", "mfu", "measured_steps", "measured_s", "warmup_s", "loss",
              "params", "dtype", "tokens_per_step", "peak_flops", "peak_source", "device"]
    with open(out / "train.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    by_name = {r["variant"]: r for r in rows if r["status"] == "ok"}
    ratios = {}
    pairs = [("ours+compile", "torch+compile"), ("ours+eager", "torch+eager"),
             ("torch+compile", "torch+eager"), ("ours+compile", "ours+eager")]
    pairs += [(f"ours+{m}", v) for v in by_name for m in ("compile", "eager")
              if v.startswith("torch[") and v.endswith("+" + m)]
    for a, b in pairs:
        if a in by_name and b in by_name:
            ratios[f"{a} / {b}"] = by_name[a]["tokens_per_s"] / by_name[b]["tokens_per_s"]
    (out / "train.json").write_text(json.dumps({"meta": meta, "rows": rows, "ratios": ratios}, indent=2) + "\n")
    plot(rows, out / "train.png", f"{args.config} on {device_name}, torch {torch.__version__}")

    print(f"\ntraining throughput: {args.config}, {device_name}, torch {torch.__version__}, triton {meta['triton']}")
    print(f"{'variant':16s} {'tokens/s':>12s} {'MFU':>7s} {'steps':>6s} {'loss':>7s}  status")
    for r in rows:
        if r["status"] == "ok":
            print(f"{r['variant']:16s} {r['tokens_per_s']:12,.0f} {100 * r['mfu']:6.1f}% {r['measured_steps']:6d} "
                  f"{r['loss']:7.3f}  ok")
        else:
            print(f"{r['variant']:16s} {'-':>12s} {'-':>7s} {'-':>6s} {'-':>7s}  {r['status']}")
    for k, v in ratios.items():
        print(f"ratio {k}: {v:.2f}x")
    print(f"results: {out}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def _triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except ImportError:
        return "absent"


if __name__ == "__main__":
    sys.exit(main())
