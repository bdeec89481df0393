"""`python -m train.sample`: continue a text prompt with a trained checkpoint, printing tokens as they come.

    python -m train.sample --checkpoint runs/small --prompt "ROMEO:" --max-new-tokens 200
    echo "To be, or not" | python -m train.sample --checkpoint runs/small/checkpoints/ckpt_0000600.pt

--checkpoint takes a ckpt_*.pt file or a run folder (its newest checkpoint), read by train/checkpoint.py.
The tokenizer is the one the training data was prepared with (recorded in the checkpoint; --tokenizer
overrides). Sampling: temperature (0 = greedy), top-k, top-p, a seed; generation stops at the end token
or after --max-new-tokens. (To ask a database a question in SQL: `python -m text2sql.ask`.)

It lives in train/ because the checkpoint format is the trainer's (train/checkpoint.py is its one
reader); the sampling itself is gpt/generate.py.
"""
from __future__ import annotations

import argparse
import math
import sys

import torch

from gpt.device import DEVICE_CHOICES, pick_device
from gpt.generate import generate_ids
from train.checkpoint import load_for_inference

DOCUMENT_END = "<|endoftext|>"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.sample", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a ckpt_*.pt file or a run folder (newest checkpoint)")
    p.add_argument("--prompt", default=None, help="prompt text (default: stdin)")
    p.add_argument("--tokenizer", default=None, help="tokenizer file (default: the one the checkpoint records)")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=50, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling; 1.0 = off")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--no-stream", action="store_true", help="print each sample once it is complete")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.max_new_tokens <= 0 or args.num_samples <= 0:
            raise ValueError("--max-new-tokens and --num-samples must be positive")
        if not 0.0 < args.top_p <= 1.0:  # also false for nan
            raise ValueError(f"--top-p must be in (0, 1], got {args.top_p}")
        if not 0.0 <= args.temperature < math.inf:
            raise ValueError(f"--temperature must be a finite number >= 0 (0 = greedy), got {args.temperature}")
        if args.top_k < 0:
            raise ValueError(f"--top-k must be >= 0 (0 = off), got {args.top_k}")
        model, tok, state, ckpt_path = load_for_inference(args.checkpoint, pick_device(args.device), args.tokenizer)
        prompt = args.prompt if args.prompt is not None else sys.stdin.read()
        if not prompt.strip():
            raise ValueError("the prompt is empty; give --prompt TEXT or text on stdin")
        stop_ids = {tok.special_tokens[DOCUMENT_END]} if DOCUMENT_END in tok.special_tokens else set()
        prompt_ids = tok.encode(prompt, allowed_special="all")
        block = model.config.block_size
        if len(prompt_ids) >= block:
            print(f"[sample] the prompt has {len(prompt_ids)} tokens; keeping the last {block - 1} "
                  f"(block_size {block})", file=sys.stderr)
            prompt_ids = prompt_ids[-(block - 1):]
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[sample] {ckpt_path} (step {state.get('step')}), {model.num_params() / 1e6:.2f}M params, "
          f"{len(prompt_ids)} prompt tokens", file=sys.stderr)
    for i in range(args.num_samples):
        decoder = tok.stream_decoder()
        stream = not args.no_stream
        if stream:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        on_token = (lambda t: (sys.stdout.write(decoder.feed(t)), sys.stdout.flush())) if stream else None
        ids = generate_ids(model, prompt_ids, args.max_new_tokens, args.temperature, args.top_k or None,
                           args.top_p, stop_ids, args.seed + i, on_token)
        if stream:
            sys.stdout.write(decoder.flush() + "\n")
        else:
            print(prompt + tok.decode(ids))
        if args.num_samples > 1:
            print("---")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
