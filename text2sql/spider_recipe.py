"""`python -m train.spider_recipe`: pretrain on unlabeled text + SQL, fine-tune on Spider, evaluate.

    python -m train.spider_recipe --spider-dir ../shared/data/spider          # ~2 h on 2 CPU cores

The five steps (each is an ordinary command; run them yourself to change anything):

  1. python -m data.prepare --source sqltext --out data/processed/spider-pretrain --vocab-size 4096 \\
         --corpus ../shared/data/text/tinyshakespeare.txt ../shared/data/text/warpeace.txt \\
         --corpus-spider-dir ../shared/data/spider --holdout-databases 14
     English text plus, for every *training* database, its schema text and its gold SQL (unlabeled:
     no questions); the 14 held-out databases are left out.
  2. python -m train --config configs/spider_pretrain.json
  3. python -m data.prepare --source spider --spider-dir ../shared/data/spider --holdout-databases 14 \\
         --tokenizer data/processed/spider-pretrain/tokenizer.tiktoken --out data/processed/spider \\
         --block-size 512 --questions-per-schema 4
     The same tokenizer as pretraining; whole databases held out (same seed, same 14) for val.
  4. python -m train --config configs/spider_finetune.json          (init_from: the pretraining run)
  5. python -m train.evaluate --checkpoint runs/spider --data data/processed/spider --split val

Spider's own dev split is never used (it is the held-out evaluation of the benchmark).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.spider_recipe", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--spider-dir", default=str(SHARED / "spider"), help="Spider-format folder (training split)")
    p.add_argument("--text", nargs="*", default=[str(SHARED / "text" / "tinyshakespeare.txt"),
                                                 str(SHARED / "text" / "warpeace.txt")],
                   help="unlabeled English text files for pretraining")
    p.add_argument("--holdout-databases", type=int, default=14, help="training databases held out for val")
    p.add_argument("--work", default="data/processed", help="folder for the prepared data")
    p.add_argument("--runs", default="runs", help="folder for the training runs")
    p.add_argument("--pretrain-seconds", type=float, default=2400)
    p.add_argument("--finetune-seconds", type=float, default=4800)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides for both training stages (e.g. model.n_layer=2 for a smoke test)")
    p.add_argument("--eval-limit", type=int, default=0, help="evaluate only the first N val examples")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from data import prepare
    from train import __main__ as train_cli
    from train import evaluate

    work, runs = Path(args.work), Path(args.runs)
    pre_data, ft_data = work / "spider-pretrain", work / "spider"
    pre_run, ft_run = runs / "spider-pretrain", runs / "spider"
    common = [f"model.block_size={args.block_size}"] + (["train.progress=false"] if args.no_progress else [])
    steps = [
        ("prepare the pretraining corpus", prepare.main,
         ["--source", "sqltext", "--out", str(pre_data), "--vocab-size", str(args.vocab_size),
          "--corpus", *args.text, "--corpus-spider-dir", args.spider_dir,
          "--holdout-databases", str(args.holdout_databases)]),
        ("pretrain", train_cli.main,
         ["--config", "spider_pretrain", "--set", f"data.dir={pre_data}", f"train.out_dir={pre_run}",
          f"train.max_seconds={args.pretrain_seconds}", *common, *args.overrides]),
        ("prepare Spider (databases held out for val)", prepare.main,
         ["--source", "spider", "--spider-dir", args.spider_dir, "--holdout-databases", str(args.holdout_databases),
          "--tokenizer", str(pre_data / prepare.TOKENIZER_FILE), "--out", str(ft_data),
          "--block-size", str(args.block_size), "--questions-per-schema", "4"]),
        ("fine-tune", train_cli.main,
         ["--config", "spider_finetune", "--set", f"data.dir={ft_data}", f"train.out_dir={ft_run}",
          f"train.init_from={pre_run}", f"train.max_seconds={args.finetune_seconds}", *common, *args.overrides]),
        ("evaluate on the held-out databases", evaluate.main,
         ["--checkpoint", str(ft_run), "--data", str(ft_data), "--split", "val", "--show", "3"]
         + (["--limit", str(args.eval_limit)] if args.eval_limit else [])
         + (["--no-progress"] if args.no_progress else [])),
    ]
    t0 = time.time()
    for i, (what, fn, fn_args) in enumerate(steps, 1):
        print(f"[spider] {i}/5 {what}: {' '.join(fn_args)}", file=sys.stderr)
        rc = fn(fn_args)
        if rc:
            print(f"[spider] step {i} failed (exit {rc})", file=sys.stderr)
            return rc
    print(f"[spider] done in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
