"""`python -m train.text2sql_demo`: the main job, end to end, on the built-in synthetic data.

    python -m train.text2sql_demo                      # prepare -> train (<= 9 min on CPU) -> evaluate -> show

It is exactly these three commands, run one after the other (run them yourself to change anything):

    python -m data.prepare --source synthetic --out data/processed/text2sql --vocab-size 2048 \\
        --block-size 256 --questions-per-schema 8 --synthetic-databases 200 --synthetic-train-per-db 100
    python -m train --config configs/text2sql_cpu.json --set train.max_seconds=540
    python -m train.evaluate --checkpoint runs/text2sql --data data/processed/text2sql --split test --show 5

The synthetic test split holds databases never seen in training (data/synthetic.py). Preparation is
skipped when the data folder already holds the same preparation; training always starts afresh.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "text2sql_cpu.json"


def prepare_args(args) -> list[str]:
    return ["--source", "synthetic", "--out", args.data, "--vocab-size", str(args.vocab_size),
            "--block-size", str(args.block_size), "--questions-per-schema", str(args.questions_per_schema),
            "--synthetic-databases", str(args.databases), "--synthetic-train-per-db", str(args.train_per_db),
            "--synthetic-eval-per-db", str(args.eval_per_db), "--synthetic-seed", str(args.seed)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.text2sql_demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="data/processed/text2sql", help="prepared data folder")
    p.add_argument("--out", default="runs/text2sql", help="training run folder")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config (JSON)")
    p.add_argument("--seconds", type=float, default=540,
                   help="training time cap (train.max_seconds; 0: none). The config's 1500 steps take a few "
                        "minutes on an idle 2-core CPU; a busy machine stops at the cap with fewer steps")
    p.add_argument("--max-steps", type=int, default=0, help="stop training after N steps (0: the config's)")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="more training config overrides, e.g. model.n_layer=2")
    p.add_argument("--databases", type=int, default=200, help="synthetic databases (train/dev/test by database)")
    p.add_argument("--train-per-db", type=int, default=100)
    p.add_argument("--eval-per-db", type=int, default=25)
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--questions-per-schema", type=int, default=8)
    p.add_argument("--eval-limit", type=int, default=0, help="evaluate only the first N test examples (0: all)")
    p.add_argument("--show", type=int, default=5, help="examples to print with their SQL and result rows")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from data import prepare
    from train import __main__ as train_cli
    from train import evaluate

    t0 = time.time()
    stamp = Path(args.data) / "demo_prepare.json"
    wanted = prepare_args(args)
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted and (Path(args.data) / "meta.json").is_file():
        print(f"[demo] 1/3 data: reusing {args.data}", file=sys.stderr)
    else:
        print(f"[demo] 1/3 data: python -m data.prepare {' '.join(wanted)}", file=sys.stderr)
        rc = prepare.main(wanted)
        if rc:
            return rc
        stamp.write_text(json.dumps(wanted))
    overrides = [f"data.dir={args.data}", f"train.out_dir={args.out}", f"train.max_seconds={args.seconds}",
                 f"model.block_size={args.block_size}"]
    if args.max_steps:
        overrides.append(f"train.max_steps={args.max_steps}")
    if args.no_progress:
        overrides.append("train.progress=false")
    overrides += args.overrides
    # a fresh run: old checkpoints in the run folder would otherwise be evaluated if training stopped early
    ckpts = Path(args.out) / "checkpoints"
    if ckpts.is_dir():
        for old in ckpts.glob("ckpt_*.pt"):
            old.unlink()
    print(f"[demo] 2/3 train: python -m train --config {args.config} --set {' '.join(overrides)}", file=sys.stderr)
    t1 = time.time()
    rc = train_cli.main(["--config", args.config, "--set", *overrides])
    if rc:
        return rc
    train_seconds = time.time() - t1
    eval_args = ["--checkpoint", args.out, "--data", args.data, "--split", "test", "--show", str(args.show)]
    if args.eval_limit:
        eval_args += ["--limit", str(args.eval_limit)]
    if args.no_progress:
        eval_args.append("--no-progress")
    print(f"[demo] 3/3 evaluate: python -m train.evaluate {' '.join(eval_args)}", file=sys.stderr)
    rc = evaluate.main(eval_args)
    db = Path(args.data) / "synthetic" / "database" / "company_000" / "company_000.sqlite"
    hint = ""
    if db.is_file():
        from data.sql_exec import read_schema

        table = read_schema(db).tables[-1].name
        hint = (f"; ask your own question:\n  python -m gpt.sample --checkpoint {args.out} --db {db} "
                f"--prompt \"How many {table}s are there?\"")
    print(f"[demo] done in {time.time() - t0:.0f} s (training {train_seconds:.0f} s){hint}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
