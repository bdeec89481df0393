"""Torch CPU threads under load: training-step time of the main job's model with 1, 2 and `auto` threads,
alone and beside one busy process (`python -c "while True: pass"`), to pick train.threads' default.

    python -m bench.threads                       # writes bench/results/threads-<cores>core.json
    python -m bench.threads --steps 10 --out /tmp/threads.json

Each case runs in a fresh process (OpenMP reads its environment once, at load): the model of
configs/text2sql_cpu.json (vocab 2048, block 256, batch 8; bf16 autocast, eager: compile changes the step
time, not how threads wait), a forward, backward and AdamW step on random tokens, timed after warm-up; the
median step is reported. "auto" is what train/ddp.py picks when train.threads is 0 (default_threads).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [  # (name, threads or "auto", extra environment)
    ("1 thread", 1, {}),
    ("2 threads", 2, {}),
    ("2 threads, OMP_WAIT_POLICY=PASSIVE", 2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("auto (train.threads=0: cores - 1)", "auto", {}),
]


def worker(threads: str, steps: int, warmup: int, compiled: bool) -> dict:
    import torch

    from gpt.model import GPT, GPTConfig
    from train.config import load_config
    from train.ddp import default_threads
    from train.optim import build_optimizer

    n = default_threads(1) if threads == "auto" else int(threads)
    torch.set_num_threads(n)
    cfg = load_config(str(ROOT / "configs" / "text2sql_cpu.json"))
    m = cfg.model
    gcfg = GPTConfig(n_layer=m.n_layer, n_head=m.n_head, n_embd=m.n_embd, block_size=256, vocab_size=2048)
    torch.manual_seed(0)
    model = GPT(gcfg)
    opt = build_optimizer(model, 1e-3, 0.1, (0.9, 0.95), "cpu")
    forward = torch.compile(model) if compiled else model
    x = torch.randint(0, 2048, (cfg.train.batch_size, 256))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = forward(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    return {"threads": n, "step_s": step, "tokens_per_s": x.numel() / step}


def run_case(threads, env: dict, busy: bool, steps: int, warmup: int, compiled: bool) -> dict:
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        out = subprocess.run([sys.executable, "-m", "bench.threads", "--worker", str(threads), "--steps", str(steps),
                              "--warmup", str(warmup)] + (["--compile"] if compiled else []), cwd=ROOT, env={**os.environ, **env},
                             capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"worker failed: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def measure(name: str, threads, env: dict, compiled: bool, args) -> dict:
    alone = run_case(threads, env, False, args.steps, args.warmup, compiled)
    busy = run_case(threads, env, True, args.steps, args.warmup, compiled)
    row = {"case": name, "threads": alone["threads"], "compiled": compiled, "env": env,
           "alone_step_s": round(alone["step_s"], 4), "alone_tokens_per_s": round(alone["tokens_per_s"]),
           "busy_step_s": round(busy["step_s"], 4), "busy_tokens_per_s": round(busy["tokens_per_s"]),
           "slowdown_when_busy": round(busy["step_s"] / alone["step_s"], 2)}
    print(f"{name:48s} alone {row['alone_step_s']:.3f} s/step ({row['alone_tokens_per_s']:,} tok/s)  beside a busy "
          f"process {row['busy_step_s']:.3f} s/step ({row['busy_tokens_per_s']:,} tok/s)  x{row['slowdown_when_busy']}",
          flush=True)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=12, help="timed steps per case")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default=None, help="JSON file (default: bench/results/threads-<cores>core.json)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (as the main job does)")
    p.add_argument("--eager-and-compiled", action="store_true", help="every case both ways")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.steps, args.warmup, args.compile)))
        return 0
    rows = []
    modes = [False, True] if args.eager_and_compiled else [args.compile]
    for compiled in modes:
        for name, threads, env in CASES:
            rows.append(measure(f"{name}{', compiled' if compiled else ''}", threads, env, compiled, args))
    import torch

    report = {"what": "train step (fwd+bwd+AdamW) of configs/text2sql_cpu.json's model, bf16 autocast, "
                      "eager or torch.compile, batch 8 x 256 tokens; median of timed steps; busy = one `python -c 'while True: pass'`",
              "host": platform.node(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "steps": args.steps, "cases": rows}
    out = Path(args.out or ROOT / "bench" / "results" / f"threads-{os.cpu_count()}core.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
