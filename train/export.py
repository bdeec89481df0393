"""`python -m train.export`: our checkpoints <-> Hugging Face `transformers` GPT-2 folders, offline.

    python -m train.export --checkpoint runs/small --out exported/small
        # then: GPT2LMHeadModel.from_pretrained("exported/small"), AutoTokenizer.from_pretrained(...)
    python -m train.export --from-hf path/to/gpt2-folder --out runs/from-hf
        # a local GPT-2-format folder (config.json, model.safetensors or pytorch_model.bin, vocab.json,
        # merges.txt) -> runs/from-hf/checkpoints/ckpt_0000000.pt + runs/from-hf/tokenizer.tiktoken,
        # usable by train.sample, text2sql.ask/evaluate and as train.init_from for fine-tuning

The conversion itself is gpt/export.py (weights, config, tokenizer files). This command lives in train/
because it reads and writes checkpoints, whose format train/checkpoint.py owns (gpt/ sits below train/
and must not know it). Nothing is downloaded: --from-hf takes a folder on disk only.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from gpt.export import read_hf_folder, write_hf_folder
from gpt.model import GPTConfig
from train.checkpoint import inference_weights, load_checkpoint, load_tokenizer, save_checkpoint

TOKENIZER_FILE = "tokenizer.tiktoken"


def export_checkpoint(checkpoint, out_dir, tokenizer=None) -> list[Path]:
    """Write a transformers GPT-2 folder for a checkpoint file or run folder (its newest checkpoint)."""
    state = load_checkpoint(checkpoint)
    config = GPTConfig(**state["model_config"])
    tok = load_tokenizer(state, tokenizer)
    return write_hf_folder(out_dir, inference_weights(state), config, tok)


def import_hf_folder(folder, out_dir) -> Path:
    """Convert a local GPT-2-format folder into a run folder holding one checkpoint (step 0)."""
    model, tok = read_hf_folder(folder)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(out / TOKENIZER_FILE)
    eos = tok.eot_token
    state = {"model": model.state_dict(), "step": 0, "model_config": dataclasses.asdict(model.config),
             "tokenizer": str((out / TOKENIZER_FILE).resolve()), "eos_id": eos,
             "special_tokens": dict(tok.special_tokens), "data_meta": {}, "source": f"hf:{Path(folder).resolve()}"}
    return save_checkpoint(out, 0, state)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a ckpt_*.pt file or a run folder (its newest checkpoint) to export")
    src.add_argument("--from-hf", metavar="DIR", help="a local GPT-2-format folder to convert into our checkpoint")
    p.add_argument("--out", required=True, help="the transformers folder to write (or, with --from-hf, a run folder)")
    p.add_argument("--tokenizer", default=None, help="tokenizer file (default: the one the checkpoint records)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.checkpoint:
            written = export_checkpoint(args.checkpoint, args.out, args.tokenizer)
            print(f"wrote {args.out}: {', '.join(p.name for p in written)}")
            print(f"load it with GPT2LMHeadModel.from_pretrained({args.out!r}) and "
                  f"AutoTokenizer.from_pretrained({args.out!r})")
        else:
            path = import_hf_folder(args.from_hf, args.out)
            print(f"wrote {path} (sample with: python -m train.sample --checkpoint {args.out})")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
