"""`python -m gpt.sample`: continue a prompt with a trained checkpoint, printing tokens as they come.

    python -m gpt.sample --checkpoint runs/small --prompt "ROMEO:" --max-new-tokens 200
    echo "To be, or not" | python -m gpt.sample --checkpoint runs/small/checkpoints/ckpt_0000600.pt
    python -m gpt.sample --checkpoint runs/sql --db shop.sqlite --prompt "How many customers are there?"

--checkpoint takes a ckpt_*.pt file or a run folder (its newest checkpoint). The tokenizer is the one
the training data was prepared with (recorded in the checkpoint; --tokenizer overrides). Sampling:
temperature (0 = greedy), top-k, top-p, a seed; generation stops at the end token(s) or after
--max-new-tokens. With --db the prompt is a question: the database's schema is put in front of it in
the text-to-SQL prompt format (gpt/prompt.py), and the SQL the model writes is run read-only on the
database and its rows printed.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

from gpt.model import GPT, GPTConfig

STOP_TOKENS = ("<|endoftext|>", "<|end|>")
_CKPT = re.compile(r"^ckpt_(\d+)\.pt$")


def load_checkpoint_file(path) -> tuple[dict, Path]:
    """(state, file) of a checkpoint file or of the newest ckpt_*.pt in a run folder; ValueError with
    one line of reason when it is missing or unreadable. (The trainer writes these; see
    train/checkpoint.py. gpt/ does not import train/, so reading is repeated here.)"""
    p = Path(path)
    if p.is_dir():
        folder = p / "checkpoints" if (p / "checkpoints").is_dir() else p
        found = sorted((int(m.group(1)), q) for q in folder.iterdir() if (m := _CKPT.match(q.name)))
        if not found:
            raise ValueError(f"no checkpoint (ckpt_*.pt) in {folder}")
        p = found[-1][1]
    if not p.is_file():
        raise ValueError(f"checkpoint {p} does not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"checkpoint {p} cannot be read: truncated, or not written by `python -m train` "
                         f"({type(e).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise ValueError(f"{p} is not a text2sql-gpt checkpoint")
    return state, p


def load_model(state: dict, device) -> GPT:
    model = GPT(GPTConfig(**state["model_config"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise ValueError(f"checkpoint weights do not fit its model config: {str(e).splitlines()[0]}") from None
    return model.to(device).eval()


def load_tokenizer(path):
    from gpt.tokenizer import Tokenizer

    if not path:
        raise ValueError("the checkpoint records no tokenizer; pass --tokenizer PATH")
    if not Path(path).is_file():
        raise ValueError(f"tokenizer file {path} does not exist (moved data folder?); pass --tokenizer PATH")
    return Tokenizer.load(str(path))


class ByteStreamDecoder:
    """Text from token ids one at a time, holding back bytes of an unfinished UTF-8 character; used
    when a tokenizer has no stream_decoder() of its own."""

    def __init__(self, tokenizer):
        import codecs

        self.tokenizer = tokenizer
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        return self.utf8.decode(self.tokenizer.decode_bytes([token_id]))

    def flush(self) -> str:
        return self.utf8.decode(b"", final=True)


def stream_decoder(tokenizer):
    make = getattr(tokenizer, "stream_decoder", None)
    return make() if make is not None else ByteStreamDecoder(tokenizer)


def generate_ids(model: GPT, prompt_ids: list[int], max_new_tokens: int, temperature: float, top_k, top_p,
                 stop_ids, seed: int, device, on_token=None) -> list[int]:
    """Sample one continuation; call on_token(id) as each arrives (streaming); returns the new ids,
    the stop token excluded."""
    if not prompt_ids:
        raise ValueError("the prompt is empty; give --prompt TEXT or text on stdin")
    generator = torch.Generator(device=device).manual_seed(seed)
    idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    out = []
    use_autocast = device.type == "cuda"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
        for tok in model.generate(idx, max_new_tokens, temperature, top_k, top_p, stop_ids, generator):
            t = int(tok[0, 0])
            if t in stop_ids:
                break
            out.append(t)
            if on_token is not None:
                on_token(t)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gpt.sample", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a ckpt_*.pt file or a run folder (newest checkpoint)")
    p.add_argument("--prompt", default=None, help="prompt text (or the question, with --db); default: stdin")
    p.add_argument("--db", default=None, help="SQLite file: answer the prompt as a question about it with SQL")
    p.add_argument("--tokenizer", default=None, help="tokenizer file (default: the one the checkpoint records)")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=None,
                   help="0 = greedy (default: 0 with --db, where one best SQL query is wanted; else 0.8)")
    p.add_argument("--top-k", type=int, default=50, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling; 1.0 = off")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-stream", action="store_true", help="print each sample once it is complete")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.max_new_tokens <= 0 or args.num_samples <= 0:
            raise ValueError("--max-new-tokens and --num-samples must be positive")
        if args.temperature is None:
            args.temperature = 0.0 if args.db else 0.8
        if not 0.0 < args.top_p <= 1.0 or args.temperature < 0:
            raise ValueError("--top-p must be in (0, 1] and --temperature >= 0")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda but torch sees no CUDA GPU")
        device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                              else "cpu")
        state, ckpt_path = load_checkpoint_file(args.checkpoint)
        tok = load_tokenizer(args.tokenizer or state.get("tokenizer"))
        model = load_model(state, device)
        prompt = args.prompt if args.prompt is not None else sys.stdin.read()
        if not prompt.strip():
            raise ValueError("the prompt is empty; give --prompt TEXT or text on stdin")
        stop_ids = {tok.special_tokens[t] for t in STOP_TOKENS if t in tok.special_tokens}
        if args.db:
            from data.sql_exec import read_schema  # text-to-SQL mode only (see the report on layering)
            from gpt.prompt import fit_and_encode_prompt

            if not Path(args.db).is_file():
                raise ValueError(f"--db {args.db} does not exist")
            prompt_ids = fit_and_encode_prompt(tok, read_schema(args.db), prompt, model.config.block_size)
            stop_ids |= set(tok.special_tokens.values())  # the SQL ends at the first control token
        else:
            prompt_ids = tok.encode(prompt, allowed_special="all")
        if len(prompt_ids) >= model.config.block_size:
            print(f"[sample] the prompt has {len(prompt_ids)} tokens; keeping the last "
                  f"{model.config.block_size - 1} (block_size {model.config.block_size})", file=sys.stderr)
            prompt_ids = prompt_ids[-(model.config.block_size - 1):]
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[sample] {ckpt_path} (step {state.get('step')}), {model.num_params() / 1e6:.2f}M params, "
          f"{len(prompt_ids)} prompt tokens", file=sys.stderr)
    for i in range(args.num_samples):
        stream = not args.no_stream and not args.db
        decoder = stream_decoder(tok)
        if stream:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        on_token = (lambda t: (sys.stdout.write(decoder.feed(t)), sys.stdout.flush())) if stream else None
        ids = generate_ids(model, prompt_ids, args.max_new_tokens, args.temperature, args.top_k or None,
                           args.top_p, stop_ids, args.seed + i, device, on_token)
        if stream:
            sys.stdout.write(decoder.flush() + "\n")
        elif args.db:
            from data.sql_exec import execute_sql, format_rows

            sql = tok.decode(ids).strip()
            print(f"SQL: {sql}")
            print(format_rows(execute_sql(args.db, sql)))
        else:
            print(prompt + tok.decode(ids))
        if args.num_samples > 1:
            print("---")
    return 0


if __name__ == "__main__":
    sys.exit(main())
