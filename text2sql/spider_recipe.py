"""`python -m text2sql.spider_recipe`: pretrain on unlabeled text + SQL, fine-tune on Spider, evaluate.

    python -m text2sql.spider_recipe --spider-dir ../shared/data/spider          # 93 min on 2 CPU cores

The five steps (each is an ordinary command, called here through its Python function; run them
yourself to change anything):

  1. python -m text2sql.prepare --source sqltext --out data/processed/spider-pretrain --vocab-size 4096 \\
         --corpus ../shared/data/text/tinyshakespeare.txt ../shared/data/text/warpeace.txt \\
         --corpus-spider-dir ../shared/data/spider --holdout-databases 14
     English text plus, for every *training* database, its schema text and its gold SQL (unlabeled:
     no questions); the 14 held-out databases are left out.
  2. python -m train --config configs/spider_pretrain.json
  3. python -m text2sql.prepare --source spider --spider-dir ../shared/data/spider --holdout-databases 14 \\
         --tokenizer data/processed/spider-pretrain/tokenizer.tiktoken --out data/processed/spider \\
         --block-size 512 --questions-per-schema 4 --spider-augment-per-db 200
     The same tokenizer as pretraining; whole databases held out (same seed, same 14) for val; train adds up
     to 200 generated questions per training database (text2sql/synthetic/from_sqlite.py).
  4. python -m train --config configs/spider_finetune.json          (init_from: the pretraining run)
  5. python -m text2sql.evaluate --checkpoint runs/spider --data data/processed/spider --split val

Spider's own dev split is never used (it is the held-out evaluation of the benchmark). Both training
stages run a fixed number of steps, so the result does not depend on how busy the machine is.

`--scale h100` takes configs/spider_h100_{pretrain,finetune}.json instead: GPT-2 small's shape (12 layers,
768 wide, 85M parameters without the embedding), 64 x 512 tokens a step, 20000 pretraining steps (655M
tokens) and 5000 fine-tuning steps (164M tokens), bf16 and torch.compile. That is sized, not measured,
for one H100 hour: 6 * 85M * 820M ~ 4.2e17 FLOPs, ~45 minutes at the 33.7% MFU this trainer measured for
GPT-2 124M on an H200 (README, GPU status). On the recipe's own corpus (~3M tokens) 655M tokens are ~200
epochs: at that scale the pretraining corpus must grow first (generated SQL over many schemas), or the
steps come down.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Training takes every core with OpenMP threads that sleep rather than spin while they wait (as the main
# job, text2sql/demo.py); this must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m text2sql.spider_recipe", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--spider-dir", default=str(SHARED / "spider"), help="Spider-format folder (training split)")
    p.add_argument("--text", nargs="*", default=[str(SHARED / "text" / "tinyshakespeare.txt"),
                                                 str(SHARED / "text" / "warpeace.txt")],
                   help="unlabeled English text files for pretraining")
    p.add_argument("--holdout-databases", type=int, default=14, help="training databases held out for val")
    p.add_argument("--work", default="data/processed", help="folder for the prepared data")
    p.add_argument("--runs", default="runs", help="folder for the training runs")
    p.add_argument("--scale", choices=("cpu", "h100"), default="cpu",
                   help="cpu: configs/spider_{pretrain,finetune}.json (93 min on 2 cores); h100: the "
                        "spider_h100_* configs, sized for one H100 hour")
    p.add_argument("--pretrain-steps", type=int, default=0, help="0: the config's")
    p.add_argument("--finetune-steps", type=int, default=0, help="0: the config's")
    p.add_argument("--augment-per-db", type=int, default=200,
                   help="generated question/SQL pairs added per training database (0: Spider's gold pairs only)")
    p.add_argument("--pretrain-generated-per-db", type=int, default=0, metavar="N",
                   help="pretraining also reads up to N generated queries per training database (unlabeled); "
                        "0 as in the measured run (bench/results/spider-recipe-cpu.md)")
    p.add_argument("--pretrain-synthetic-databases", type=int, default=0, metavar="N",
                   help="pretraining also reads the schemas and SQL of N synthetic databases (0, or >= 4); "
                        "0 as in the measured run")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides for both training stages (e.g. model.n_layer=2 for a smoke test)")
    p.add_argument("--eval-limit", type=int, default=0, help="evaluate only the first N val examples")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted recipe in the same --work/--runs folders: prepared data made with "
                        "the same options is reused, each training stage continues from its newest checkpoint")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_recipe(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _newest_step(run_dir: Path) -> int | None:
    """The step of a run's newest checkpoint (None: none yet)."""
    from train.checkpoint import list_checkpoints

    found = list_checkpoints(run_dir)
    return int(found[-1].stem.split("_")[-1]) if found else None


def run_recipe(args) -> int:
    import text2sql.prepare  # noqa: F401  (registers the text-to-SQL sources that the steps below name)
    from data.prepare import TOKENIZER_FILE, prepare
    from text2sql import synthetic
    from text2sql.prompt import PROMPT_VERSION
    from text2sql.evaluate import evaluate_checkpoint
    from train.config import load_config
    from train.loop import TrainingDiverged, run

    # every input checked before an hour of work starts
    if not (Path(args.spider_dir) / "train.json").is_file():
        raise ValueError(f"--spider-dir {args.spider_dir} has no train.json (give a Spider-format folder: "
                         f"train.json, tables.json, database/)")
    for text in args.text:
        if not Path(text).exists():
            raise ValueError(f"--text {text} does not exist (give English text files, or --text with none)")
    work, runs = Path(args.work), Path(args.runs)
    pre_data, ft_data = work / "spider-pretrain", work / "spider"
    pre_run, ft_run = runs / "spider-pretrain", runs / "spider"
    quiet = ["train.progress=false"] if args.no_progress else []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    # --resume: a step whose folder was made by the same step with the same options (a stamp file, written
    # when a prepare step ends and when a training stage starts) is reused or continued; once one step has to
    # run again, or a training stage trains more steps, every later stage starts fresh (it was made from what
    # came before)
    fresh = [not args.resume]
    versions = {"prompt": PROMPT_VERSION, "generator": synthetic.GENERATOR_VERSION}

    def same_as_before(stamp: Path, wanted: dict) -> bool:
        try:
            return not fresh[0] and json.loads(stamp.read_text()) == wanted
        except (OSError, ValueError):  # no stamp, or a damaged one: not the same
            return False

    def prepared(source: str, out: Path, **options) -> None:
        stamp, wanted = out / "recipe_prepare.json", json.loads(json.dumps({"source": source, **options, **versions}))
        if same_as_before(stamp, wanted) and (out / "meta.json").is_file():
            print(f"[spider] --resume: reusing {out}", file=sys.stderr)
            return
        fresh[0] = True
        stamp.unlink(missing_ok=True)  # (a crash inside prepare leaves no stamp: the step runs again)
        prepare(source, out, **options)
        out.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(wanted))

    def train(config_name: str, out_dir: Path, overrides: list[str]) -> None:
        overrides = [f"train.out_dir={out_dir}"] + overrides
        stamp = out_dir / "recipe_train.json"
        settings = [f"train.threads={cores}"] + overrides + quiet + args.overrides
        wanted = {"config": config_name, "settings": settings, **versions}
        resume = same_as_before(stamp, wanted)
        before = _newest_step(out_dir) if resume else None
        config = load_config(config_name, settings + ["train.resume=true" if resume else "train.overwrite=true"])
        # The stamp goes down before training, not after: a stage that is interrupted (killed, out of time)
        # then continues from its newest checkpoint on --resume. Written after, an interrupted stage had no
        # stamp, so --resume started it over and deleted its checkpoints.
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(wanted))
        try:
            run(config)
        except TrainingDiverged as e:
            raise ValueError(str(e)) from None
        if not resume or _newest_step(out_dir) != before:
            fresh[0] = True  # this stage trained: the stages after it start over

    prefix = "spider_h100_" if args.scale == "h100" else "spider_"

    def step_overrides(n: int) -> list[str]:
        return [f"train.max_steps={n}", f"train.lr_decay_steps={n}"] if n > 0 else []

    steps = [
        ("prepare the pretraining corpus", lambda: prepared(
            "sqltext", pre_data, vocab_size=args.vocab_size, corpus=args.text, corpus_spider_dir=args.spider_dir,
            holdout_databases=args.holdout_databases, corpus_generated_per_db=args.pretrain_generated_per_db,
            corpus_synthetic_databases=args.pretrain_synthetic_databases)),
        ("pretrain", lambda: train(prefix + "pretrain", pre_run, [
            f"data.dir={pre_data}", f"model.block_size={args.block_size}"]
            + step_overrides(args.pretrain_steps))),
        ("prepare Spider (databases held out for val)", lambda: prepared(
            "spider", ft_data, spider_dir=args.spider_dir, holdout_databases=args.holdout_databases,
            tokenizer=str(pre_data / TOKENIZER_FILE), block_size=args.block_size, questions_per_schema=4,
            spider_augment_per_db=args.augment_per_db)),
        ("fine-tune", lambda: train(prefix + "finetune", ft_run, [
            f"data.dir={ft_data}", f"train.init_from={pre_run}"]
            + step_overrides(args.finetune_steps))),
        ("evaluate on the held-out databases", lambda: evaluate_checkpoint(
            ft_run, ft_data, "val", limit=args.eval_limit, show=3, progress=not args.no_progress)),
    ]
    t0 = time.time()
    for i, (what, step) in enumerate(steps, 1):
        print(f"[spider] {i}/5 {what}", file=sys.stderr)
        step()
    print(f"[spider] done in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
