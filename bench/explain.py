"""Graph breaks of the compiled model: torch._dynamo.explain over one training forward.

    python -m bench.explain                       # GPT-2 124M, T=1024, bf16 autocast, CUDA when present
    python -m bench.explain --preset tiny --batch-size 2 --backend torch --json out.json

torch.compile traces the model into graphs; each graph break splits it, costs a Python round trip
and stops fusion across the break. Our kernels are torch custom ops, so the model should trace as
ONE graph with no break, with KERNELS_BACKEND=auto (Triton kernels) and =torch (plain PyTorch).
Prints the graph count, the break count and each break's reason; exit status 1 when anything
broke, so bench/gpu_suite.sh flags it. Dynamo only (no Inductor code generation): seconds, not
minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def explain(preset: str, batch_size: int, seq_len: int | None, device: str) -> dict:
    import torch
    import torch._dynamo

    from gpt.model import GPT, build_model_config

    config = build_model_config(preset)
    T = seq_len or config.block_size
    model = GPT(config).to(device)
    idx = torch.randint(0, config.vocab_size, (batch_size, T), device=device)
    targets = torch.randint(0, config.vocab_size, (batch_size, T), device=device)
    dtype = torch.bfloat16 if device == "cuda" or device == "cpu" else torch.float32
    t0 = time.time()
    with torch.autocast(device, dtype=dtype):
        result = torch._dynamo.explain(model)(idx, targets)
    reasons = [str(getattr(b, "reason", b)).splitlines()[0][:300] for b in result.break_reasons]
    return {"preset": preset, "batch_size": batch_size, "seq_len": T, "device": device,
            "kernels_backend": os.environ.get("KERNELS_BACKEND", "auto"),
            "graph_count": result.graph_count, "graph_break_count": result.graph_break_count,
            "op_count": result.op_count, "break_reasons": reasons, "seconds": round(time.time() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.explain", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="gpt2-124m", help="gpt.model preset (default gpt2-124m)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=None, help="default: the preset's block size")
    ap.add_argument("--device", default=None, choices=["cuda", "cpu"], help="default: cuda when available")
    ap.add_argument("--backend", nargs="+", default=["auto", "torch"], choices=["auto", "torch", "triton"],
                    help="KERNELS_BACKEND values to explain (default: auto torch)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    results, broke = [], False
    for backend in args.backend:
        os.environ["KERNELS_BACKEND"] = backend
        torch._dynamo.reset()
        try:
            r = explain(args.preset, args.batch_size, args.seq_len, device)
        except Exception as e:  # noqa: BLE001 - reported, the suite goes on
            r = {"kernels_backend": backend, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        results.append(r)
        if "error" in r:
            broke = True
            print(f"explain {args.preset} KERNELS_BACKEND={backend}: FAILED {r['error']}")
            continue
        broke |= r["graph_break_count"] > 0 or r["graph_count"] != 1
        print(f"explain {args.preset} on {device}, KERNELS_BACKEND={backend}: {r['graph_count']} graph(s), "
              f"{r['graph_break_count']} graph break(s), {r['op_count']} ops ({r['seconds']}s)")
        for reason in r["break_reasons"]:
            print(f"  break: {reason}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 1 if broke else 0


if __name__ == "__main__":
    sys.exit(main())
