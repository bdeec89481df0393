"""Text-to-SQL sources for `python -m data.prepare` (found automatically: the module name ends in _sources).

    --source synthetic   the built-in synthetic databases (generated on first use; no download)
    --source spider      a Spider-format folder (e.g. ../shared/data/spider)
    --source wikisql     a WikiSQL folder (<split>.jsonl + <split>.tables.jsonl)
    --source jsonl       your own JSONL records {question, sql, db | schema}
    --source hf          a Hugging Face dataset (needs network, or local files with --hf-data-files)
    --source sqltext     unlabeled pretraining text: .txt/.sql files, plus the schemas and SQL of a
                         Spider folder's training databases

Labelled examples become documents laid out by gpt/prompt.py (`<|schema|> ... <|question|> ...
<|sql|> SQL <|end|>`, loss mask on the SQL and <|end|>), the schema cut to fit --block-size. With
--questions-per-schema K, up to K question/SQL pairs of one database follow a single copy of its schema
(fewer tokens spent on schemas; see ExampleDocument). User text is tokenized with encode_ordinary, so a
literal "<|sql|>" in a question stays text.

Packing: the trainer cuts each split's token stream into windows of block_size tokens (data/shards.py).
An example that straddled two windows would have its SQL learned without its schema and question in
view, so each example is placed whole inside one window: when it would cross a window boundary, the gap
up to the boundary is filled with <|endoftext|> tokens that are never learned (mask 0). Examples
longer than a window are skipped and counted. (This relies on windows starting at multiples of
block_size, which holds while the shard size is a multiple of it: the default 2^26 is, for any
power-of-two block size.)

For evaluation, load() also writes `<out>/examples/<split>.jsonl` (db path, question, gold SQL, schema)
and `<out>/text2sql.json` (block size and SQL budget), which `python -m train.evaluate` reads, so it
sees the same splits and the same schema cut as training.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from data.prepare import Source, register_source
from data.sources import Example, RecordErrors
from gpt.prompt import (DEFAULT_MAX_SQL_TOKENS, END_TOKEN, ENDOFTEXT_TOKEN, QUESTION_TOKEN, SPECIAL_TOKENS,
                        SQL_TOKEN, Schema, fit_and_encode_prompt, normalize_sql_text, special_token_ids)

DEFAULT_BLOCK_SIZE = 256
EXAMPLES_DIR = "examples"
META_FILE = "text2sql.json"


class WindowPacker:
    """The position in one split's token stream, so that examples are laid out window by window."""

    def __init__(self, block_size: int, split: str):
        self.block_size, self.split = block_size, split
        self.offset = 0     # tokens emitted so far in this split
        self.skipped = 0    # examples longer than a window
        self.padding = 0    # filler tokens emitted

    def room(self) -> int:
        """Tokens left in the current window (block_size when a new window starts)."""
        return self.block_size - self.offset % self.block_size

    def skip(self, n_tokens: int) -> None:
        self.skipped += 1
        if self.skipped <= 5:
            print(f"warning: {self.split}: an example of {n_tokens} tokens is longer than the block size "
                  f"{self.block_size}; skipped", file=sys.stderr)
        elif self.skipped == 6:
            print(f"warning: {self.split}: more examples are too long and skipped (not listed; a larger "
                  f"--block-size or --max-sql-tokens keeps them)", file=sys.stderr)


class ExampleDocument:
    """Labelled examples of one database as a data.prepare document: `text` for tokenizer training,
    `tokenize` for the shards. With several examples, the schema is written once and the question/SQL
    pairs follow it (`<|schema|> S <|question|> Q1 <|sql|> A1 <|end|><|question|> Q2 <|sql|> A2 <|end|>`)
    while they fit in the current window; the next pair starts a new `<|schema|>` piece. The first pair
    of a piece has exactly the layout of an inference prompt; later pairs do not repeat the schema."""

    def __init__(self, examples: list[Example], packer: WindowPacker, max_sql_tokens: int):
        self.examples, self.packer, self.max_sql_tokens = examples, packer, max_sql_tokens

    @property
    def text(self) -> str:
        e = self.examples[0]
        schema = e.schema.to_text() if isinstance(e.schema, Schema) else e.schema
        return schema + "\n" + "".join(f"{x.question}\n{normalize_sql_text(x.sql)}\n" for x in self.examples)

    def tokenize(self, tokenizer) -> tuple[list[int], list[int]]:
        sp = special_token_ids(tokenizer)
        packer, block = self.packer, self.packer.block_size
        ids: list[int] = []
        mask: list[int] = []

        def emit(new_ids, new_mask):
            ids.extend(new_ids)
            mask.extend(new_mask)
            packer.offset += len(new_ids)

        piece_open = False  # a schema of this document is in view in the current window
        for e in self.examples:
            target = tokenizer.encode_ordinary(normalize_sql_text(e.sql)) + [sp[END_TOKEN]]
            if piece_open and packer.room() < block:
                pair = [sp[QUESTION_TOKEN]] + tokenizer.encode_ordinary(e.question.strip()) + [sp[SQL_TOKEN]]
                if len(pair) + len(target) <= packer.room():
                    emit(pair + target, [0] * len(pair) + [1] * len(target))
                    continue
            prompt = fit_and_encode_prompt(tokenizer, e.schema, e.question, block, self.max_sql_tokens)
            n = len(prompt) + len(target)
            if n > block:
                packer.skip(n)
                continue
            if n > packer.room():  # fill the rest of this window with never-learned end tokens
                pad = packer.room()
                packer.padding += pad
                emit([sp[ENDOFTEXT_TOKEN]] * pad, [0] * pad)
            emit(prompt + target, [0] * len(prompt) + [1] * len(target))
            piece_open = True
        return ids, mask


class TextDocument:
    """Unlabeled text (pretraining): every token learned, <|endoftext|> after it, never a control token inside."""

    def __init__(self, text: str):
        self.text = text

    def tokenize(self, tokenizer) -> tuple[list[int], list[int]]:
        ids = tokenizer.encode_ordinary(self.text) + [special_token_ids(tokenizer)[ENDOFTEXT_TOKEN]]
        return ids, [1] * len(ids)


def group_examples(examples: list[Example], per_group: int, seed: int) -> list[list[Example]]:
    """Groups of up to per_group examples of the same database, in a seeded random order."""
    rng = random.Random(seed)
    by_db: dict[str, list[Example]] = {}
    for e in examples:
        by_db.setdefault(f"{e.db_id}\0{e.db_path}", []).append(e)
    groups = []
    for key in sorted(by_db):
        items = by_db[key]
        rng.shuffle(items)
        groups += [items[i:i + per_group] for i in range(0, len(items), per_group)]
    rng.shuffle(groups)
    return groups


# ----------------------------------------------------------------------------------------------------
# Shared options and the step every labelled source ends with


def add_common_arguments(group) -> None:
    group.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE,
                       help="(all text-to-SQL sources) the model's context: examples are cut and packed for it")
    group.add_argument("--max-sql-tokens", type=int, default=DEFAULT_MAX_SQL_TOKENS,
                       help="(all text-to-SQL sources) context kept free for the SQL when a schema is cut")
    group.add_argument("--questions-per-schema", type=int, default=1,
                       help="(all text-to-SQL sources) question/SQL pairs written after one copy of a schema "
                            "(more: fewer tokens spent on schemas; the first pair is always prompt-shaped)")
    group.add_argument("--holdout-databases", type=int, default=0,
                       help="(spider, jsonl, hf) databases held out of train for val when the data has no "
                            "val split (0: about 10%%)")
    group.add_argument("--split-seed", type=int, default=0, help="(all) seed of the database hold-out")


def finish(args, splits: dict[str, list[Example]], errors: RecordErrors, source: str) -> dict[str, list]:
    """Write the evaluation files, report problems, and wrap examples as packed documents."""
    if args.block_size < 32 or args.max_sql_tokens >= args.block_size - 8:
        raise ValueError(f"--block-size {args.block_size} must be >= 32 and larger than --max-sql-tokens "
                         f"{args.max_sql_tokens} + 8")
    shard_tokens = getattr(args, "shard_tokens", 0)
    if shard_tokens and shard_tokens % args.block_size:
        raise ValueError(f"--shard-tokens {shard_tokens} must be a multiple of --block-size {args.block_size} "
                         f"(so that training windows line up with the packed examples)")
    out = Path(args.out)
    (out / EXAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    for split, examples in splits.items():
        with open(out / EXAMPLES_DIR / f"{split}.jsonl", "w") as f:
            for e in examples:
                f.write(json.dumps(e.to_dict()) + "\n")
    (out / META_FILE).write_text(json.dumps({"source": source, "block_size": args.block_size,
                                             "max_sql_tokens": args.max_sql_tokens,
                                             "splits": {k: len(v) for k, v in splits.items()}}, indent=2))
    if errors:
        print(f"[prepare] {errors.summary()}", file=sys.stderr)
    docs = {}
    for split, examples in splits.items():
        packer = WindowPacker(args.block_size, split)
        per_group = max(1, args.questions_per_schema)
        docs[split] = [ExampleDocument(g, packer, args.max_sql_tokens)
                       for g in group_examples(examples, per_group, args.split_seed)]
    return docs


def load_examples(data_dir: str | Path, split: str) -> tuple[list[Example], dict]:
    """(examples, meta) of a split prepared by one of these sources (for train.evaluate)."""
    d = Path(data_dir)
    meta_path, path = d / META_FILE, d / EXAMPLES_DIR / f"{split}.jsonl"
    if not meta_path.is_file():
        raise ValueError(f"{d} was not prepared by a text-to-SQL source (no {META_FILE}); run "
                         f"`python -m data.prepare --source synthetic --out {d}` or another text-to-SQL source")
    meta = json.loads(meta_path.read_text())
    if not path.is_file():
        raise ValueError(f"{d} has no split {split!r} (it has {', '.join(meta.get('splits', {}))})")
    with open(path) as f:
        return [Example.from_dict(json.loads(line)) for line in f if line.strip()], meta


# ----------------------------------------------------------------------------------------------------
# The sources


def _synthetic_args(group) -> None:
    add_common_arguments(group)
    group.add_argument("--synthetic-dir", default=None,
                       help="where the synthetic databases are written (default: <out>/synthetic)")
    group.add_argument("--synthetic-seed", type=int, default=0)
    group.add_argument("--synthetic-databases", type=int, default=60)
    group.add_argument("--synthetic-train-per-db", type=int, default=200)
    group.add_argument("--synthetic-eval-per-db", type=int, default=25)


def _load_synthetic(args):
    from data import synthetic
    from data.sources.spider import SpiderFolder

    folder = Path(args.synthetic_dir or Path(args.out) / "synthetic")
    params = {"seed": args.synthetic_seed, "num_databases": args.synthetic_databases,
              "train_per_db": args.synthetic_train_per_db, "eval_per_db": args.synthetic_eval_per_db}
    stamp = folder / "synthetic.json"
    if not stamp.is_file() or json.loads(stamp.read_text()) != params:
        print(f"[prepare] generating synthetic databases in {folder}", file=sys.stderr)
        synthetic.generate(folder, **params)
        stamp.write_text(json.dumps(params))
    errors = RecordErrors()
    return finish(args, SpiderFolder(folder, errors).splits(), errors, "synthetic")


def _spider_args(group) -> None:
    group.add_argument("--spider-dir", default=None, help="Spider-format folder (train.json, tables.json, database/)")


def _load_spider(args):
    from data.sources.spider import SpiderFolder

    if not args.spider_dir:
        raise ValueError("--source spider needs --spider-dir FOLDER")
    errors = RecordErrors()
    splits = SpiderFolder(args.spider_dir, errors).splits(args.holdout_databases, args.split_seed)
    return finish(args, splits, errors, "spider")


def _wikisql_args(group) -> None:
    group.add_argument("--wikisql-dir", default=None, help="folder with train.jsonl, train.tables.jsonl, dev.*")


def _load_wikisql(args):
    from data.sources.wikisql import load_wikisql

    if not args.wikisql_dir:
        raise ValueError("--source wikisql needs --wikisql-dir FOLDER")
    errors = RecordErrors()
    return finish(args, load_wikisql(args.wikisql_dir, args.out, errors), errors, "wikisql")


def _jsonl_args(group) -> None:
    group.add_argument("--jsonl", default=None, help="JSONL file of {question, sql, db | schema} records")


def _load_jsonl(args):
    from data.sources.jsonl import load_jsonl

    if not args.jsonl:
        raise ValueError("--source jsonl needs --jsonl FILE")
    errors = RecordErrors()
    n_dbs = args.holdout_databases
    splits = load_jsonl(args.jsonl, errors, val_fraction=0.1, seed=args.split_seed)
    if n_dbs:
        from data.sources.jsonl import split_by_database

        everything = splits["train"] + splits["val"]
        dbs = len({e.db_id for e in everything})
        splits["train"], splits["val"] = split_by_database(everything, n_dbs / max(dbs, 1), args.split_seed)
    return finish(args, splits, errors, "jsonl")


def _hf_args(group) -> None:
    group.add_argument("--hf-dataset", default=None, help="dataset name on the hub, or 'json' with --hf-data-files")
    group.add_argument("--hf-config", default=None, help="dataset configuration name")
    group.add_argument("--hf-data-files", nargs="+", default=None, help="local files (with --hf-dataset json)")
    group.add_argument("--hf-spider-dir", default=None, help="Spider folder for Spider-style records' schemas")


def _load_hf(args):
    from data.sources.huggingface import load_hf

    if not args.hf_dataset:
        raise ValueError("--source hf needs --hf-dataset NAME")
    errors = RecordErrors()
    splits = load_hf(args.hf_dataset, args.out, args.hf_config, args.hf_data_files, args.hf_spider_dir, errors,
                     seed=args.split_seed)
    return finish(args, splits, errors, "hf")


def _sqltext_args(group) -> None:
    group.add_argument("--corpus", nargs="+", default=[], metavar="PATH",
                       help="(sqltext) .txt/.sql files or folders of them")
    group.add_argument("--corpus-spider-dir", default=None,
                       help="(sqltext) also learn the schemas and gold SQL of this Spider folder's training "
                            "databases (the databases held out for val are left out)")
    group.add_argument("--corpus-chunk-chars", type=int, default=20_000,
                       help="(sqltext) long files are cut into documents of about this many characters")


def _chunks(text: str, size: int):
    start = 0
    while start < len(text):
        end = text.rfind("\n", start, start + size) if start + size < len(text) else len(text)
        end = end + 1 if end > start else min(len(text), start + size)
        yield text[start:end]
        start = end


def _load_sqltext(args):
    from data.sources.spider import SpiderFolder

    if not args.corpus and not args.corpus_spider_dir:
        raise ValueError("--source sqltext needs --corpus PATH... and/or --corpus-spider-dir FOLDER")
    files = []
    for raw in args.corpus:
        p = Path(raw)
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.suffix in (".txt", ".sql") and q.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"--corpus {p} does not exist")
    train, val = [], []
    for f in files:
        try:
            chunks = list(_chunks(f.read_text(encoding="utf-8"), args.corpus_chunk_chars))
        except UnicodeDecodeError:
            raise ValueError(f"{f} is not UTF-8 text") from None
        for i, chunk in enumerate(chunks):  # every 20th chunk of each file is validation text
            (val if i % 20 == 19 else train).append(TextDocument(chunk))
    if args.corpus_spider_dir:
        errors = RecordErrors()
        splits = SpiderFolder(args.corpus_spider_dir, errors).splits(args.holdout_databases, args.split_seed)
        by_db: dict[str, list[Example]] = {}
        for e in splits["train"]:
            by_db.setdefault(e.db_id, []).append(e)
        for db_id, examples in sorted(by_db.items()):
            schema = examples[0].schema
            text = (schema.to_text() if isinstance(schema, Schema) else schema) + "\n"
            text += "".join(normalize_sql_text(e.sql) + "\n" for e in examples)
            train.append(TextDocument(text))
    if not val and len(train) > 1:
        val.append(train.pop())
    return {"train": train, "val": val}


register_source(Source("synthetic", "built-in synthetic text-to-SQL databases (no download)", _load_synthetic,
                       _synthetic_args, special_tokens=tuple(SPECIAL_TOKENS)))
register_source(Source("spider", "Spider-format folder (text-to-SQL)", _load_spider, _spider_args,
                       special_tokens=tuple(SPECIAL_TOKENS)))
register_source(Source("wikisql", "WikiSQL folder (text-to-SQL)", _load_wikisql, _wikisql_args,
                       special_tokens=tuple(SPECIAL_TOKENS)))
register_source(Source("jsonl", "your own text-to-SQL JSONL records", _load_jsonl, _jsonl_args,
                       special_tokens=tuple(SPECIAL_TOKENS)))
register_source(Source("hf", "a Hugging Face text-to-SQL dataset (needs `datasets`)", _load_hf, _hf_args,
                       special_tokens=tuple(SPECIAL_TOKENS)))
register_source(Source("sqltext", "unlabeled text and SQL for pretraining (text-to-SQL tokens)", _load_sqltext,
                       _sqltext_args, special_tokens=tuple(SPECIAL_TOKENS)))
