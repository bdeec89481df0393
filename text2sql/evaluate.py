"""`python -m text2sql.evaluate`: execution accuracy of a checkpoint on a prepared text-to-SQL split.

    python -m text2sql.evaluate --checkpoint runs/text2sql --data data/processed/text2sql --split test

For every example of the split (written by `python -m text2sql.prepare --source synthetic|spider|...`), the
prompt is built exactly as in training (text2sql/prompt.py, same schema cut), the model writes SQL until
<|end|> (--decode: greedy, constrained, beam or beam+exec, text2sql/decoding.py), and both the predicted
and the gold SQL run read-only on the example's database (text2sql/sql_exec.py). Reported
(text2sql/metrics.py): execution accuracy, exact match after sqlglot normalisation, valid-SQL rate, and all
three per SQL shape. A JSON report (summary and
every example) is written to --out (default: <checkpoint run folder>/eval_<split>.json), the table is
printed, and --show N examples are printed with their generated SQL and result rows. Beside the model,
on the same examples, the lookup baseline (text2sql/baseline.py, fitted on the folder's training
examples) shows what a method that learns nothing scores; accuracies come with 95% intervals and by
Spider hardness too. --ablation also prints every decode mode on the same examples (execution accuracy,
valid SQL, seconds per question).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from gpt.device import DEVICE_CHOICES, pick_device
from text2sql.decoding import (DECODE_MODES, DEFAULT_BEAM_WIDTH, DEFAULT_DECODE, check_mode, decode_sql_batch,
                               sql_context)
from text2sql.prompt import (DEFAULT_MAX_SQL_TOKENS, check_prompt_version, fit_and_encode_prompt,
                             special_token_ids)
from text2sql.baseline import LookupBaseline
from text2sql.schema import Schema
from train.checkpoint import load_checkpoint, load_for_inference


@torch.no_grad()
def generate_sql_batch(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
                       batch_size: int = 32, seed: int = 0, on_done=None, decode: str = "greedy", contexts=None,
                       beam_width: int = DEFAULT_BEAM_WIDTH) -> list[str]:
    """SQL text for each prompt (token ids ending in <|sql|>), decoded by text2sql.decoding.decode_sql_batch
    (batches of similar length, left-padded; each prompt gets the SQL it gets alone); on_done(n) reports
    progress. Modes other than greedy need contexts: the schema, question and database per prompt."""
    return decode_sql_batch(model, tokenizer, prompts, contexts, check_mode(decode), max_new_tokens, beam_width,
                            batch_size, temperature, seed, on_done=on_done)


def evaluate(model, tokenizer, examples, block_size: int, max_sql_tokens: int, max_new_tokens: int = 128,
             temperature: float = 0.0, batch_size: int = 32, timeout_s: float = 2.0, progress: bool = True,
             decode: str = "greedy", beam_width: int = DEFAULT_BEAM_WIDTH,
             baseline=None) -> dict:
    """Generate SQL for each example and score it; returns {"summary": ..., "examples": [...]}. With a
    fitted `baseline` (text2sql/baseline.py) its execution match is scored on the same examples."""
    from text2sql.metrics import score_example, summarize

    runnable = [e for e in examples if e.db_path]
    prompts = [fit_and_encode_prompt(tokenizer, e.schema, e.question, block_size, max_sql_tokens, e.db_path)
               for e in runnable]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(prompts), desc="generating SQL", unit="q", file=sys.stderr)
    t0 = time.perf_counter()
    preds = generate_sql_batch(model, tokenizer, prompts, max_new_tokens, temperature, batch_size,
                               on_done=bar.update if bar else None, decode=check_mode(decode),
                               contexts=[sql_context(e) for e in runnable],
                               beam_width=beam_width)
    decode_seconds = time.perf_counter() - t0
    if bar:
        bar.close()
    scored, records = [], []
    for e, pred in zip(runnable, preds):
        s = score_example(e.db_path, e.sql, pred, timeout_s=timeout_s)
        if baseline is not None and isinstance(e.schema, Schema):
            guess = baseline.predict(e.question, e.schema)
            s.baseline_match = score_example(e.db_path, e.sql, guess, timeout_s=timeout_s,
                                             gold_result=s.gold_result).exec_match
        scored.append(s)
        records.append({"db_id": e.db_id, "db_path": e.db_path, "question": e.question, "gold": e.sql, "pred": pred,
                        "shape": s.shape, "hardness": s.hardness, "baseline_match": s.baseline_match,
                        "exec_match": s.exec_match, "exact_match": s.exact_match,
                        "valid": s.valid, "error": s.pred_result.error, "gold_error": s.gold_result.error})
    summary = summarize(scored)
    summary["n_without_database"] = len(examples) - len(runnable)
    summary["decode"] = decode
    summary["seconds_per_question"] = decode_seconds / max(len(runnable), 1)
    return {"summary": summary, "examples": records, "_scored": scored}


def show_examples(report: dict, n: int, file=None) -> None:
    """Print n examples (spread over the split) with the generated SQL and its result rows."""
    from text2sql.sql_exec import format_rows

    file = file or sys.stdout
    records, scored = report["examples"], report["_scored"]
    if n <= 0 or not records:
        return
    step = max(1, len(records) // n)
    for r, s in list(zip(records, scored))[::step][:n]:
        mark = "correct" if r["exec_match"] else "WRONG"
        print(f"\nQ: {r['question']}   [{r['db_id']}, {r['shape']}, {mark}]", file=file)
        print(f"generated: {r['pred']}", file=file)
        if not r["exec_match"]:
            print(f"gold:      {r['gold']}", file=file)
        print("  " + format_rows(s.pred_result, limit=5).replace("\n", "\n  "), file=file)


def tokenizer_override(checkpoint, data_dir: Path, meta: dict) -> Path | None:
    """The tokenizer to load instead of the checkpoint's: None while the checkpoint's recorded one exists, else
    the data folder's (a moved run)."""
    recorded = load_checkpoint(checkpoint).get("tokenizer")
    if recorded and Path(recorded).is_file():
        return None
    return data_dir / meta["tokenizer"] if meta.get("tokenizer") else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m text2sql.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a ckpt_*.pt file or a run folder (its newest checkpoint)")
    p.add_argument("--data", required=True, help="a folder prepared by python -m text2sql.prepare")
    p.add_argument("--split", default="test", help="split to evaluate (test, val, ...)")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N examples (0: all)")
    p.add_argument("--out", default=None, help="JSON report path (default: <run>/eval_<split>.json)")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="also write PNG charts and an HTML page of wrong answers to DIR (text2sql/report.py); "
                        "evaluating several checkpoints into one DIR adds accuracy against training step")
    p.add_argument("--show", type=int, default=5, help="print N examples with generated SQL and result rows")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy decoding")
    p.add_argument("--decode", default=DEFAULT_DECODE, choices=DECODE_MODES,
                   help="greedy | constrained (only SQL this database accepts) | beam (constrained) | beam+exec "
                        "(constrained beam, then the best hypothesis that runs): text2sql/decoding.py")
    p.add_argument("--beam-width", type=int, default=DEFAULT_BEAM_WIDTH)
    p.add_argument("--ablation", action="store_true",
                   help="also print each decode mode on the same examples: execution accuracy, valid SQL, s/question")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--timeout", type=float, default=2.0, help="seconds allowed per query")
    p.add_argument("--tokenizer", default=None, help="tokenizer file (default: the checkpoint's)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-baseline", action="store_true", help="do not score the lookup baseline beside the model")
    p.add_argument("--no-progress", action="store_true")
    return p


def evaluate_checkpoint(checkpoint, data_dir, split: str = "test", *, limit: int = 0, out=None, show: int = 5,
                        temperature: float = 0.0, max_new_tokens: int = 128, batch_size: int = 32,
                        timeout_s: float = 2.0, tokenizer=None, device: str = "auto", progress: bool = True,
                        decode: str = DEFAULT_DECODE, beam_width: int = DEFAULT_BEAM_WIDTH, ablation: bool = False,
                        with_baseline: bool = True, compare: Sequence[str] = ()) -> dict:
    """Evaluate a checkpoint on a prepared split: print examples and the table, write the JSON report
    (default <run>/eval_<split>.json), and return it. ValueError for a user mistake (paths, splits).
    ablation: also every decode mode on the same examples (payload["ablation"]); compare: only these modes
    (payload["compare"], what the main job prints beside its default)."""
    from text2sql.metrics import format_table
    from text2sql.prepare import load_examples

    data_dir = Path(data_dir)
    examples, meta = load_examples(data_dir, split)
    if limit > 0:
        examples = examples[:limit]
    # the tokenizer falls back to the data folder's when the run was moved
    model, tok, state, ckpt_path = load_for_inference(checkpoint, pick_device(device),
                                                      tokenizer or tokenizer_override(checkpoint, data_dir, meta))
    special_token_ids(tok)  # a clear error if the checkpoint's tokenizer lacks the prompt tokens
    # the prompt is cut as in training: the checkpoint's block size and the SQL budget it was trained with
    trained_on = state.get("data_meta", {})
    check_prompt_version(trained_on)
    max_sql = int(trained_on.get("max_sql_tokens", meta.get("max_sql_tokens", DEFAULT_MAX_SQL_TOKENS)))
    baseline = None
    if with_baseline and (data_dir / "examples" / "train.jsonl").is_file():
        baseline = LookupBaseline().fit(load_examples(data_dir, "train")[0])
    t0 = time.time()
    report = evaluate(model, tok, examples, model.config.block_size, max_sql, max_new_tokens, temperature,
                      batch_size, timeout_s, progress=progress, baseline=baseline, decode=decode,
                      beam_width=beam_width)
    summary = report["summary"]
    out = Path(out) if out else ckpt_path.parent.parent / f"eval_{split}.json"
    payload = {"checkpoint": str(ckpt_path), "step": state.get("step"), "data": str(data_dir), "split": split,
               "temperature": temperature, "decode": decode, "seconds": round(time.time() - t0, 1),
               "summary": summary,
               "examples": report["examples"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, default=str))
    show_examples(report, show)
    print(f"\n{format_table(summary)}")
    if summary.get("n_without_database"):
        print(f"({summary['n_without_database']} examples without a database were not evaluated)")
    lo, hi = summary["ci95"]
    beside = f" (lookup baseline {summary['baseline_accuracy']:.1%})" if "baseline_accuracy" in summary else ""
    print(f"execution accuracy {summary['execution_accuracy']:.1%} [95% CI {lo:.1%}-{hi:.1%}]{beside} on "
          f"{summary['n']} {split} examples -> {out}")
    for key, modes in (("ablation", DECODE_MODES if ablation else ()), ("compare", [check_mode(m) for m in compare])):
        if modes:
            payload[key] = run_ablation(model, tok, examples, model.config.block_size, max_sql, max_new_tokens,
                                        batch_size, timeout_s, beam_width, modes)
            print(f"\n{format_ablation(payload[key], split, beam_width)}")
            out.write_text(json.dumps(payload, indent=1, default=str))
    payload["out"] = str(out)
    return payload


def run_ablation(model, tokenizer, examples, block_size: int, max_sql_tokens: int, max_new_tokens: int = 128,
                 batch_size: int = 32, timeout_s: float = 2.0, beam_width: int = DEFAULT_BEAM_WIDTH,
                 modes: Sequence[str] = DECODE_MODES) -> list[dict]:
    """Each decode mode on the same examples: [{decode, execution_accuracy, ci95, valid_sql_rate,
    seconds_per_question, n}]."""
    rows = []
    for mode in modes:
        s = evaluate(model, tokenizer, examples, block_size, max_sql_tokens, max_new_tokens, 0.0, batch_size,
                     timeout_s, progress=False, decode=mode, beam_width=beam_width)["summary"]
        rows.append({"decode": mode, "execution_accuracy": s["execution_accuracy"], "ci95": s["ci95"],
                     "valid_sql_rate": s["valid_sql_rate"], "seconds_per_question": s["seconds_per_question"],
                     "n": s["n"]})
    return rows


def format_ablation(rows: list[dict], split: str = "", beam_width: int = DEFAULT_BEAM_WIDTH) -> str:
    lines = [f"decode ablation{' on ' + split if split else ''} (same examples, beam width {beam_width}):",
             f"  {'mode':<12} {'exec acc':>8} {'valid SQL':>9} {'s/question':>10}"]
    for r in rows:
        lines.append(f"  {r['decode']:<12} {r['execution_accuracy']:8.1%} {r['valid_sql_rate']:9.1%} "
                     f"{r['seconds_per_question']:10.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        payload = evaluate_checkpoint(args.checkpoint, args.data, args.split, limit=args.limit, out=args.out, show=args.show,
                            temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                            batch_size=args.batch_size, timeout_s=args.timeout, tokenizer=args.tokenizer,
                            device=args.device, progress=not args.no_progress,
                            decode=args.decode, beam_width=args.beam_width, ablation=args.ablation,
                            with_baseline=not args.no_baseline)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.report:
        from text2sql.report import add_evaluation

        try:
            files = add_evaluation(payload, args.report, timeout_s=args.timeout)
        except (ValueError, OSError) as e:
            print(f"error: the report could not be written: {e}", file=sys.stderr)
            return 2
        print(f"report: {files['html']} (and {len(files) - 1} more files in {args.report})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
