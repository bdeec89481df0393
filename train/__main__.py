"""`python -m train --config C [--set key=value ...] [--resume]`; the same command under torchrun.

    python -m train --config small                                  # one process (CPU or one GPU)
    torchrun --standalone --nproc_per_node=8 -m train --config gpt2-124m
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        --rdzv_id=run1 -m train --config gpt2-124m                    # on each of 2 machines
"""
from __future__ import annotations

import argparse
import sys

from train.config import CONFIG_DIR, load_config


def build_parser() -> argparse.ArgumentParser:
    presets = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
    p = argparse.ArgumentParser(
        prog="python -m train",
        description="Train a GPT on token shards from `python -m data.prepare` (1 process, or N under torchrun).",
        epilog="Config fields: see train/config.py. Example: --set train.lr=3e-4 train.max_steps=2000 model.n_layer=6")
    p.add_argument("--config", default=None, help=f"a JSON file or a preset name ({presets})")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. train.batch_size=32 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in train.out_dir")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        if args.resume:
            config.train.resume = True
        if args.print_config:
            import json

            print(json.dumps(config.to_dict(), indent=2))
            return 0
        from train.loop import TrainingDiverged, run

        try:
            summary = run(config)
        except TrainingDiverged as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    except (ValueError, OSError) as e:  # user mistakes: bad config, paths, data; disk full, no permission
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume (continues from the last checkpoint)", file=sys.stderr)
        return 130
    if summary.get("is_main") and summary.get("loss") is not None:
        print(f"[train] done: step {summary['step']}, loss {summary['loss']:.4f}"
              + (f", val loss {summary['val_loss']:.4f}" if summary.get("val_loss") is not None else "")
              + f" -> {summary['out_dir']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
