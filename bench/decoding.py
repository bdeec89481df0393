"""Decoding benchmark: the SQL constraint's cost per token against a forward pass, and each decode mode's
execution accuracy, valid-SQL rate and seconds per question on the main job's model.

    python -m bench.decoding --checkpoint runs/text2sql --data data/processed/text2sql --split test_domains

Per-token cost (on the gold SQL of the first --cost-examples questions, token by token):
  * full mask: every allowed next id (the vocabulary trie walked against the parser), fresh per question;
  * lazy check: one id tested (what greedy and beam search do first: PICARD's top-k check);
  * forward: one new token through the model with its KV cache, batch 1 and batch = beam width.
Modes (text2sql/decoding.py) run on the same examples, one after another, each timed end to end (decoding
and, for beam+exec, the executions). Results go to bench/results/decoding-<date>.json with the command,
the machine and the date; each mode also records a SHA-256 of its predicted SQL in question order, so two
runs (two versions of the decoder) show whether they wrote the same SQL. --preds-out writes the predictions
themselves (they may quote a dataset's values: keep them out of the repository).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


@torch.no_grad()
def token_costs(model, tok, examples, block_size, max_sql, width: int, n_examples: int) -> dict:
    from gpt.model import KVCache
    from text2sql.decoding import make_constraint, sql_context
    from text2sql.prompt import fit_and_encode_prompt, prompt_sql
    from text2sql.sql_constraint import SchemaIndex

    full, lazy, fwd1, fwdk = [], [], [], []
    allowed_sizes = []
    for e in examples[:n_examples]:
        ctx = sql_context(e)
        gold = tok.encode_ordinary(prompt_sql(ctx.schema, e.sql))  # over the schema's tags, as the model writes it
        SchemaIndex.clear_shared()  # each from cold: the second would otherwise reuse the first's parses
        con = make_constraint(tok, ctx)
        SchemaIndex.clear_shared()
        con_lazy = make_constraint(tok, ctx)
        for i in range(len(gold) + 1):
            t0 = time.perf_counter()
            ids = con.allowed_ids(gold[:i])
            full.append(time.perf_counter() - t0)
            allowed_sizes.append(len(ids))
            nxt = gold[i] if i < len(gold) else con.end_id
            t0 = time.perf_counter()
            con_lazy.allows(gold[:i], nxt)
            lazy.append(time.perf_counter() - t0)
        prompt = fit_and_encode_prompt(tok, ctx.schema, e.question, block_size, max_sql)
        for batch, sink in ((1, fwd1), (width, fwdk)):
            cache = KVCache(model.config, batch, block_size, "cpu")
            model(torch.tensor([prompt] * batch), cache=cache)
            x = torch.tensor([[gold[0]]] * batch)
            for _ in range(min(len(gold), block_size - len(prompt) - 1)):
                t0 = time.perf_counter()
                model(x, cache=cache)
                sink.append(time.perf_counter() - t0)
    ms = lambda xs: round(1000 * statistics.mean(xs), 4)  # noqa: E731
    return {"tokens": len(full), "full_mask_ms": ms(full),
            "full_mask_median_ms": round(1000 * statistics.median(full), 4),
            "lazy_check_ms": ms(lazy), "forward_batch1_ms": ms(fwd1), f"forward_batch{width}_ms": ms(fwdk),
            "mean_allowed_ids": round(statistics.mean(allowed_sizes), 1), "vocab": tok.n_vocab}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.decoding", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="runs/text2sql")
    p.add_argument("--data", default="data/processed/text2sql")
    p.add_argument("--split", default="test_domains")
    p.add_argument("--limit", type=int, default=0, help="first N examples (0: all)")
    p.add_argument("--modes", default="greedy,constrained,beam,beam+exec,greedy")
    p.add_argument("--beam-width", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cost-examples", type=int, default=30,
                   help="questions whose gold SQL gives the per-token costs (0: skip that measurement)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="JSON path (default: bench/results/decoding-<date>.json)")
    p.add_argument("--preds-out", default=None, help="also write every mode's predicted SQL to this JSON path")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)

    from text2sql.evaluate import tokenizer_override, evaluate
    from text2sql.prepare import load_examples
    from text2sql.prompt import DEFAULT_MAX_SQL_TOKENS
    from text2sql.sql_constraint import SchemaIndex
    from train.checkpoint import load_for_inference

    data = Path(args.data)
    examples, meta = load_examples(data, args.split)
    if args.limit:
        examples = examples[:args.limit]
    # the checkpoint's own tokenizer, as text2sql.evaluate does (the data folder's only for a moved run):
    # a checkpoint scored on another data folder's questions must not read them with that folder's ids
    tokenizer = tokenizer_override(args.checkpoint, data, meta)
    model, tok, state, ckpt = load_for_inference(args.checkpoint, torch.device("cpu"), tokenizer)
    max_sql = int(state.get("data_meta", {}).get("max_sql_tokens", meta.get("max_sql_tokens", DEFAULT_MAX_SQL_TOKENS)))
    block = model.config.block_size
    result = {"command": "python -m bench.decoding " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "checkpoint": str(ckpt), "step": state.get("step"), "data": str(data), "split": args.split,
              "n_questions": len(examples), "beam_width": args.beam_width, "batch_size": args.batch_size}
    print(f"[bench.decoding] {len(examples)} {args.split} questions, {ckpt}", file=sys.stderr)
    if args.cost_examples > 0:  # 0: seconds per question only
        result["per_token"] = token_costs(model, tok, examples, block, max_sql, args.beam_width, args.cost_examples)
        print(json.dumps(result["per_token"]), file=sys.stderr)
    modes, preds = [], []
    for mode in args.modes.split(","):
        # every mode starts from cold caches, as in a fresh process: the schema indexes the constraint
        # shares between questions (SchemaIndex.shared) would otherwise carry one mode's work to the next
        SchemaIndex.clear_shared()
        report = evaluate(model, tok, examples, block, max_sql, 128, 0.0, args.batch_size, 2.0, progress=False,
                          decode=mode, beam_width=args.beam_width)
        s = report["summary"]
        sqls = [r["pred"] for r in report["examples"]]
        row = {"decode": mode, "execution_accuracy": s["execution_accuracy"], "valid_sql_rate": s["valid_sql_rate"],
               "seconds_per_question": round(s["seconds_per_question"], 5), "n": s["n"],
               "preds_sha256": hashlib.sha256(json.dumps(sqls).encode()).hexdigest()}
        preds.append({"decode": mode, "preds": sqls})
        modes.append(row)
        print(json.dumps(row), file=sys.stderr)
    # greedy may be listed more than once (first and last, to see the machine's drift): the mean is the base
    greedy = [m for m in modes if m["decode"] == "greedy"]
    if greedy:
        base = statistics.mean(m["seconds_per_question"] for m in greedy)
        result["greedy_seconds_per_question"] = round(base, 5)
        for m in modes:
            m["x_greedy_seconds"] = round(m["seconds_per_question"] / base, 2)
            m["gain_over_greedy"] = round(m["execution_accuracy"] - greedy[0]["execution_accuracy"], 4)
    result["modes"] = modes
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"decoding-{datetime.now():%Y%m%d-%H%M}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    if args.preds_out:
        Path(args.preds_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.preds_out).write_text(json.dumps(preds))
    print(f"{'mode':<12} {'exec acc':>8} {'valid':>7} {'s/q':>8} {'x greedy':>8}")
    for m in modes:
        print(f"{m['decode']:<12} {m['execution_accuracy']:8.1%} {m['valid_sql_rate']:7.1%} "
              f"{m['seconds_per_question']:8.4f} {m.get('x_greedy_seconds', float('nan')):8.2f}")
    pt = result.get("per_token")
    if pt:
        print(f"per token: full mask {pt['full_mask_ms']} ms, lazy check {pt['lazy_check_ms']} ms, forward "
              f"{pt['forward_batch1_ms']} ms (batch 1)")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
