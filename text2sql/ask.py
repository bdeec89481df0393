"""`python -m text2sql.ask`: ask a SQLite database a question in English; prints the SQL and its rows.

    python -m text2sql.ask --checkpoint runs/text2sql --db shop.sqlite "How many customers are there?"

The database's schema is read (text2sql/schema.py) and put in front of the question in the prompt
format the model was trained on (text2sql/prompt.py, cut to the checkpoint's block size the same way
as in training); the model writes SQL until <|end|> (--decode, text2sql/decoding.py: by default a beam of
SQL the database accepts, and of those the best that runs; greedy with --decode greedy, sampled with
--temperature); the SQL runs read-only on the database (text2sql/sql_exec.py) and the first rows are printed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from gpt.device import DEVICE_CHOICES, pick_device
from gpt.generate import generate_ids
from text2sql.decoding import DECODE_MODES, DEFAULT_BEAM_WIDTH, DEFAULT_DECODE, SQLContext, decode_sql_batch
from text2sql.prompt import (DEFAULT_MAX_SQL_TOKENS, check_prompt_version, decode_sql, fit_and_encode_prompt,
                             special_token_ids)
from text2sql.schema import read_schema
from text2sql.sources.spider import readable_names_beside
from text2sql.sql_exec import DEFAULT_TIMEOUT_S, execute_sql, format_rows
from train.checkpoint import load_for_inference


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m text2sql.ask", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("question", nargs="?", default=None, help="the question (default: stdin)")
    p.add_argument("--checkpoint", required=True, help="a ckpt_*.pt file or a run folder (newest checkpoint)")
    p.add_argument("--db", required=True, help="the SQLite database to ask")
    p.add_argument("--tokenizer", default=None, help="tokenizer file (default: the one the checkpoint records)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="> 0: sample (with --decode greedy or constrained)")
    p.add_argument("--decode", default=DEFAULT_DECODE, choices=DECODE_MODES,
                   help="greedy | constrained | beam | beam+exec (see python -m text2sql.evaluate --help)")
    p.add_argument("--beam-width", type=int, default=DEFAULT_BEAM_WIDTH)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", type=int, default=10, help="result rows to print")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds the query may run")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.max_new_tokens <= 0 or args.temperature < 0:
            raise ValueError("--max-new-tokens must be positive and --temperature >= 0")
        if args.temperature > 0 and args.decode.startswith("beam"):
            raise ValueError("--temperature samples; use it with --decode greedy or constrained, not a beam")
        if not Path(args.db).is_file():
            raise ValueError(f"--db {args.db} does not exist")
        question = args.question if args.question is not None else sys.stdin.read()
        if not question.strip():
            raise ValueError("the question is empty; give it as an argument or on stdin")
        schema = readable_names_beside(args.db, read_schema(args.db))  # (Spider folders: tables.json wordings)
        if not schema.tables:
            raise ValueError(f"{args.db} has no tables")
        model, tok, state, ckpt_path = load_for_inference(args.checkpoint, pick_device(args.device), args.tokenizer)
        stop_ids = set(special_token_ids(tok).values())  # the SQL ends at <|end|> (or any control token)
        check_prompt_version(state.get("data_meta", {}))
        max_sql = int(state.get("data_meta", {}).get("max_sql_tokens", DEFAULT_MAX_SQL_TOKENS))
        prompt_ids = fit_and_encode_prompt(tok, schema, question, model.config.block_size, max_sql, args.db)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    steps = min(args.max_new_tokens, model.config.block_size - len(prompt_ids))
    if args.decode == "greedy":
        ids = generate_ids(model, prompt_ids, steps, args.temperature, stop_ids=stop_ids, seed=args.seed,
                           n_vocab=tok.n_vocab)
        sql = decode_sql(tok, ids, schema)
    else:
        sql = decode_sql_batch(model, tok, [prompt_ids], [SQLContext(schema, question, args.db)], args.decode,
                               steps, args.beam_width, temperature=args.temperature, seed=args.seed,
                               timeout_s=args.timeout)[0]
    print(f"SQL: {sql}")
    print(format_rows(execute_sql(args.db, sql, timeout_s=args.timeout), limit=args.rows))
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
