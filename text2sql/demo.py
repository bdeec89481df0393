"""`python -m text2sql.demo`: the main job, end to end, on the built-in synthetic data.

    python -m text2sql.demo                      # prepare -> train (a few minutes on CPU) -> evaluate -> show

It does what these three commands do, one after the other, through their Python functions (run the
commands yourself to change anything):

    python -m text2sql.prepare --source synthetic --out data/processed/text2sql --vocab-size 2048 \\
        --block-size 256 --questions-per-schema 8 --synthetic-databases 2000 --synthetic-train-per-db 15 \\
        --synthetic-eval-per-db 5
    python -m train --config configs/text2sql_cpu.json --set data.dir=data/processed/text2sql train.out_dir=runs/text2sql
    python -m text2sql.evaluate --checkpoint runs/text2sql --data data/processed/text2sql --split test_domains
    python -m text2sql.evaluate --checkpoint runs/text2sql --data data/processed/text2sql --split test_wordings

Training runs a fixed number of steps (the config's), so the result does not depend on how busy the
machine is. The two test splits hold out whole domains (no table or column name seen in training) and
question wordings (templates never used in training); see text2sql/synthetic/. Each is scored beside a
lookup baseline that learns nothing (text2sql/baseline.py).
Preparation is skipped when the data folder already holds the same preparation; training always
starts afresh.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Training takes every core, with OpenMP threads that sleep rather than spin while they wait: on the 2-core
# machine, 2 such threads trained the main job's model 1.2-1.5x faster than 1 thread on an idle machine and as
# fast beside a busy process (bench/results/threads-2core.md), while spinning ones were 2-4x slower there.
# libgomp reads this once, when torch loads it, so it is set before anything imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from text2sql import synthetic
from text2sql.decoding import DECODE_MODES, DEFAULT_DECODE
from text2sql.prompt import PROMPT_VERSION

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "text2sql_cpu.json"


TEST_SPLITS = ("test_domains", "test_wordings")
SPLIT_MEANING = {"test_domains": "themes, tables and columns never seen in training",
                 "test_wordings": "question templates never seen in training"}


def prepare_options(args) -> dict:
    """The keyword arguments of text2sql.prepare.prepare_synthetic for these command-line options."""
    return {"generator": synthetic.GENERATOR_VERSION, "prompt": PROMPT_VERSION, "vocab_size": args.vocab_size, "block_size": args.block_size,
            "questions_per_schema": args.questions_per_schema, "databases": args.databases,
            "train_per_db": args.train_per_db, "eval_per_db": args.eval_per_db, "seed": args.seed}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m text2sql.demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="data/processed/text2sql", help="prepared data folder")
    p.add_argument("--out", default="runs/text2sql", help="training run folder")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config (JSON)")
    p.add_argument("--max-steps", type=int, default=0, help="stop training after N steps (0: the config's)")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="more training config overrides, e.g. model.n_layer=2")
    # 2000 schemas x 15 questions, not 1000 x 30: the same 25,500 training questions over twice the schemas
    # (bench/results/data-diversity-2core: +1.9 points on held-out domains on average over six paired
    # trainings, within their spread)
    p.add_argument("--databases", type=int, default=2000,
                   help="synthetic databases (a twentieth each for dev, test_domains, test_wordings; the rest train)")
    p.add_argument("--train-per-db", type=int, default=15)
    p.add_argument("--eval-per-db", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--questions-per-schema", type=int, default=8)
    p.add_argument("--eval-limit", type=int, default=0, help="evaluate only the first N test examples (0: all)")
    p.add_argument("--show", type=int, default=5, help="examples to print with their SQL and result rows")
    p.add_argument("--decode", default=DEFAULT_DECODE, choices=DECODE_MODES,
                   help="how SQL is decoded (text2sql.decoding; see text2sql.evaluate); unless it is beam+exec, "
                        "beam+exec is also scored and printed beside it")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_demo(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run_demo(args) -> int:
    from text2sql.evaluate import evaluate_checkpoint
    from text2sql.report import add_evaluation
    from text2sql.prepare import prepare_synthetic
    from train.config import load_config
    from train.loop import TrainingDiverged, run

    t0 = time.time()
    data = Path(args.data)
    stamp = data / "demo_prepare.json"
    wanted = prepare_options(args)
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted and (data / "meta.json").is_file():
        print(f"[demo] 1/3 data: reusing {data}", file=sys.stderr)
    else:
        print(f"[demo] 1/3 data: prepare_synthetic({data}, {wanted})", file=sys.stderr)
        prepare_synthetic(data, **{k: v for k, v in wanted.items() if k not in ("generator", "prompt")})
        stamp.write_text(json.dumps(wanted))
    # a fresh run each time: the trainer removes this run folder's old checkpoints (train.overwrite)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    overrides = [f"data.dir={data}", f"train.out_dir={args.out}", "train.overwrite=true", f"train.threads={cores}"]
    if args.max_steps:
        overrides.append(f"train.max_steps={args.max_steps}")
    if args.no_progress:
        overrides.append("train.progress=false")
    config = load_config(args.config, overrides + args.overrides)
    print(f"[demo] 2/3 train: {args.config} with {' '.join(overrides + args.overrides)}", file=sys.stderr)
    t1 = time.time()
    try:
        run(config)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    train_seconds = time.time() - t1
    results, compared, held_out_db = {}, {}, None
    decode = args.decode
    # the most accurate mode beside the default, which must meet the speed target (text2sql/decoding.py)
    compare = [] if decode == "beam+exec" else ["beam+exec"]
    for split in TEST_SPLITS:
        print(f"[demo] 3/3 evaluate: {args.out} on {data} ({split})", file=sys.stderr)
        payload = evaluate_checkpoint(args.out, data, split, limit=args.eval_limit, show=args.show, decode=decode,
                                      progress=not args.no_progress, compare=compare)
        results[split] = payload["summary"]
        compared[split] = payload.get("compare", [])
        if split == "test_domains" and payload["examples"]:
            held_out_db = Path(payload["examples"][0]["db_path"])  # a database of a domain training never saw
        files = add_evaluation(payload, Path(args.out) / "report" / split)  # PNG charts + an HTML page
        print(f"[demo] report: {files['html']}", file=sys.stderr)
    print(f"\nheld-out evaluation (execution accuracy, 95% interval, decoded {decode}; the lookup baseline on the "
          f"same questions):")
    for split, summary in results.items():
        lo, hi = summary["ci95"]
        print(f"  {split:<14} model {summary['execution_accuracy']:6.1%} [{lo:.1%}-{hi:.1%}]   lookup baseline "
              f"{summary.get('baseline_accuracy', float('nan')):6.1%}   ({summary['n']} questions, "
              f"{SPLIT_MEANING[split]})")
        for row in compared[split]:
            lo, hi = row["ci95"]
            print(f"  {'':<14} {row['decode']:<9} {row['execution_accuracy']:6.1%} [{lo:.1%}-{hi:.1%}]   "
                  f"({row['seconds_per_question'] * 1000:.0f} ms a question; {decode}: "
                  f"{summary['seconds_per_question'] * 1000:.0f} ms)")
    hint = ""
    db = held_out_db
    if db is not None and db.is_file():
        from text2sql.schema import read_schema

        table = read_schema(db).tables[-1].name
        hint = (f"; ask your own question:\n  python -m text2sql.ask --checkpoint {args.out} --db {db} "
                f"\"How many {table}s are there?\"")
    print(f"[demo] done in {time.time() - t0:.0f} s (training {train_seconds:.0f} s){hint}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
