"""`python -m text2sql.prepare`: text-to-SQL data -> tokenizer + token shards + meta.json (data.prepare's CLI
with the task's sources registered).

    python -m text2sql.prepare --source synthetic --out data/processed/text2sql --vocab-size 2048
    python -m text2sql.prepare --source spider --spider-dir ../shared/data/spider --out data/processed/spider

    --source synthetic   the built-in synthetic databases (generated on first use; no download)
    --source spider      a Spider-format folder (e.g. ../shared/data/spider)
    --source wikisql     a WikiSQL folder (<split>.jsonl + <split>.tables.jsonl)
    --source jsonl       your own JSONL records {question, sql, db | schema}
    --source sqlite      questions generated over your own SQLite files (--db F.sqlite ...; no labels needed)
    --source hf          a Hugging Face dataset (needs network, or local files with --hf-data-files)
    --source sqltext     unlabeled pretraining text: .txt/.sql files, plus the schemas and SQL of a
                         Spider folder's training databases
    --source text        plain text (data/text_source.py; also on `python -m data.prepare`)

Labelled examples become documents laid out by text2sql/prompt.py (`<|schema|> ... <|question|> ...
<|sql|> SQL <|end|>`, loss mask on the SQL and <|end|>), the schema cut to fit --block-size, packed
window by window (text2sql/packing.py). User text is tokenized with encode_ordinary, so a literal
"<|sql|>" in a question stays text.

For evaluation, load() also writes `<out>/examples/<split>.jsonl` (db path, question, gold SQL, schema),
and meta.json records the task, block size and SQL budget (the trainer takes the block size from it;
checkpoints carry it to `python -m text2sql.evaluate` and `python -m text2sql.ask`), so evaluation sees
the same splits and the same schema cut as training. `prepare_synthetic` is the typed call the demo uses.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import data.prepare
from data.prepare import Prepared, Source, register_source
from data.shards import read_meta
from text2sql.packing import ExampleDocument, TextDocument, WindowPacker, group_examples
from text2sql.prompt import DEFAULT_MAX_SQL_TOKENS, PROMPT_VERSION, SPECIAL_TOKENS, prompt_schema_text, prompt_sql
from text2sql.sources import Example, RecordErrors

DEFAULT_BLOCK_SIZE = 256
EXAMPLES_DIR = "examples"


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


def check_packing(args) -> None:
    """The labelled sources' own options, checked before any database is generated or read (Source.check)."""
    if args.block_size < 32 or args.max_sql_tokens >= args.block_size - 8:
        raise ValueError(f"--block-size {args.block_size} must be >= 32 and larger than --max-sql-tokens "
                         f"{args.max_sql_tokens} + 8")
    shard_tokens = getattr(args, "shard_tokens", 0)
    if shard_tokens and shard_tokens % args.block_size:
        raise ValueError(f"--shard-tokens {shard_tokens} must be a multiple of --block-size {args.block_size} "
                         f"(so that training windows line up with the packed examples)")
    if getattr(args, "synthetic_databases", 4) < 4:
        raise ValueError("--synthetic-databases must be at least 4 (train, dev, test_domains, test_wordings)")


def finish(args, splits: dict[str, list[Example]], errors: RecordErrors, source: str) -> Prepared:
    """Write the evaluation files, report problems, and wrap examples as packed documents."""
    check_packing(args)
    out = Path(args.out)
    (out / EXAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    for split, examples in splits.items():
        with open(out / EXAMPLES_DIR / f"{split}.jsonl", "w") as f:
            for e in examples:
                f.write(json.dumps(e.to_dict()) + "\n")
    if errors:
        print(f"[prepare] {errors.summary()}", file=sys.stderr)
    docs = {}
    for split, examples in splits.items():
        packer = WindowPacker(args.block_size, split)
        per_group = max(1, args.questions_per_schema)
        docs[split] = [ExampleDocument(g, packer, args.max_sql_tokens)
                       for g in group_examples(examples, per_group, args.split_seed)]
    # merged into meta.json by data.prepare; the trainer takes block_size from it, and every checkpoint
    # carries it on to text2sql.evaluate and text2sql.ask
    return Prepared(docs, {"task": "text2sql", "prompt_version": PROMPT_VERSION,
                           "block_size": args.block_size, "max_sql_tokens": args.max_sql_tokens,
                           "examples": {k: len(v) for k, v in splits.items()}})


def load_examples(data_dir: str | Path, split: str) -> tuple[list[Example], dict]:
    """(examples, meta.json) of a split prepared by one of these sources (for text2sql.evaluate)."""
    d = Path(data_dir)
    meta = read_meta(d) if (d / "meta.json").is_file() else {}
    path = d / EXAMPLES_DIR / f"{split}.jsonl"
    if meta.get("task") != "text2sql":
        raise ValueError(f"{d} was not prepared by a text-to-SQL source; run "
                         f"`python -m text2sql.prepare --source synthetic --out {d}` or another text-to-SQL source")
    if not path.is_file():
        raise ValueError(f"{d} has no split {split!r} (it has {', '.join(meta.get('examples', {}))})")
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
    from text2sql import synthetic
    from text2sql.sources.spider import SpiderFolder

    folder = Path(args.synthetic_dir or Path(args.out) / "synthetic")
    params = {"seed": args.synthetic_seed, "num_databases": args.synthetic_databases,
              "train_per_db": args.synthetic_train_per_db, "eval_per_db": args.synthetic_eval_per_db,
              "generator": synthetic.GENERATOR_VERSION}
    stamp = folder / "synthetic.json"
    if not stamp.is_file() or json.loads(stamp.read_text()) != params:
        print(f"[prepare] generating synthetic databases in {folder}", file=sys.stderr)
        synthetic.generate(folder, **{k: v for k, v in params.items() if k != "generator"})
        stamp.write_text(json.dumps(params))
    errors = RecordErrors()
    spider_format = SpiderFolder(folder, errors, readable_names=False)  # (prompts as the main job has always had)
    # dev is the validation split; the two test splits hold out domains and wordings (text2sql/synthetic/)
    splits = {("val" if name == "dev" else name): spider_format.load_split(f"{name}.json") for name in synthetic.SPLITS}
    return finish(args, splits, errors, "synthetic")


def _spider_args(group) -> None:
    group.add_argument("--spider-dir", default=None, help="Spider-format folder (train.json, tables.json, database/)")
    group.add_argument("--spider-augment-per-db", type=int, default=0, metavar="N",
                       help="(spider) add to train up to N generated question/SQL pairs per *training* database "
                            "(text2sql/synthetic/from_sqlite.py; held-out databases get none); 0: gold pairs only")


def _load_spider(args):
    from text2sql.sources.spider import SpiderFolder

    if not args.spider_dir:
        raise ValueError("--source spider needs --spider-dir FOLDER")
    if args.spider_augment_per_db < 0:
        raise ValueError(f"--spider-augment-per-db must be >= 0, got {args.spider_augment_per_db}")
    errors = RecordErrors()
    splits = SpiderFolder(args.spider_dir, errors).splits(args.holdout_databases, args.split_seed)
    if args.spider_augment_per_db:
        splits["train"] += spider_augmentation(args.spider_dir, args.spider_augment_per_db, args.holdout_databases,
                                               args.split_seed, errors, held_out={e.db_id for e in splits["val"]})
    return finish(args, splits, errors, "spider")


def spider_augmentation(spider_dir, per_db: int, holdout_databases: int, split_seed: int, errors: RecordErrors,
                        held_out: set[str]) -> list[Example]:
    """Generated pairs over the training databases of a Spider folder, for its train split only.

    Spider gives ~50 gold questions per database, too few for a small model to learn to copy schema
    items it has not seen; the question maker multiplies them. `load_sqlite` holds out the same databases
    as the Spider source (same --holdout-databases/--split-seed); `held_out` re-checks it, so a generated
    question on a validation database can never reach training even if the two hold-outs drifted apart."""
    from text2sql.sources.sqlite import load_sqlite

    print(f"[prepare] generating up to {per_db} questions per Spider training database", file=sys.stderr)
    generated = load_sqlite([], per_db=per_db, holdout_databases=holdout_databases, split_seed=split_seed,
                            errors=errors, spider_dir=spider_dir, strict=False, train_only=True)["train"]
    leaked = {e.db_id for e in generated} & held_out
    if leaked:
        raise ValueError(f"generated questions on held-out databases {sorted(leaked)}: the hold-outs disagree")
    return generated


def _wikisql_args(group) -> None:
    group.add_argument("--wikisql-dir", default=None, help="folder with train.jsonl, train.tables.jsonl, dev.*")


def _load_wikisql(args):
    from text2sql.sources.wikisql import load_wikisql

    if not args.wikisql_dir:
        raise ValueError("--source wikisql needs --wikisql-dir FOLDER")
    errors = RecordErrors()
    return finish(args, load_wikisql(args.wikisql_dir, args.out, errors), errors, "wikisql")


def _jsonl_args(group) -> None:
    group.add_argument("--jsonl", default=None, help="JSONL file of {question, sql, db | schema} records")


def _load_jsonl(args):
    from text2sql.sources.jsonl import load_jsonl

    if not args.jsonl:
        raise ValueError("--source jsonl needs --jsonl FILE")
    errors = RecordErrors()
    n_dbs = args.holdout_databases
    splits = load_jsonl(args.jsonl, errors, val_fraction=0.1, seed=args.split_seed)
    if n_dbs:
        from text2sql.sources.jsonl import split_by_database

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
    from text2sql.sources.huggingface import load_hf

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
    group.add_argument("--corpus-generated-per-db", type=int, default=0, metavar="N",
                       help="(sqltext) with --corpus-spider-dir: also up to N generated queries per training "
                            "database (text2sql/synthetic/from_sqlite.py), as unlabeled SQL")
    group.add_argument("--corpus-synthetic-databases", type=int, default=0, metavar="N",
                       help="(sqltext) also the schemas and gold SQL of N built-in synthetic databases (many "
                            "generated domains; written under <out>/synthetic)")
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
    from text2sql.sources.spider import SpiderFolder

    if not args.corpus and not args.corpus_spider_dir and not args.corpus_synthetic_databases:
        raise ValueError("--source sqltext needs --corpus PATH..., --corpus-spider-dir FOLDER and/or "
                         "--corpus-synthetic-databases N")
    if args.corpus_generated_per_db and not args.corpus_spider_dir:
        raise ValueError("--corpus-generated-per-db needs --corpus-spider-dir FOLDER")
    if args.corpus_generated_per_db < 0 or 0 < args.corpus_synthetic_databases < 4 or args.corpus_synthetic_databases < 0:
        raise ValueError("--corpus-generated-per-db must be >= 0 and --corpus-synthetic-databases 0 or >= 4")
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
    examples: list[Example] = []  # schemas and SQL (their questions are not used)
    if args.corpus_spider_dir:
        errors = RecordErrors()
        splits = SpiderFolder(args.corpus_spider_dir, errors).splits(args.holdout_databases, args.split_seed)
        examples += splits["train"]
        if args.corpus_generated_per_db:
            examples += spider_augmentation(args.corpus_spider_dir, args.corpus_generated_per_db,
                                            args.holdout_databases, args.split_seed, errors,
                                            held_out={e.db_id for e in splits["val"]})
    if args.corpus_synthetic_databases:
        from text2sql import synthetic

        folder = Path(args.out) / "synthetic"
        print(f"[prepare] generating {args.corpus_synthetic_databases} synthetic databases in {folder}", file=sys.stderr)
        synthetic.generate(folder, seed=args.split_seed, num_databases=args.corpus_synthetic_databases,
                           train_per_db=30, eval_per_db=1, progress=False)
        examples += SpiderFolder(folder, RecordErrors(), readable_names=False).load_split("train.json")
    by_db: dict[str, list[Example]] = {}
    for e in examples:
        by_db.setdefault(e.db_id, []).append(e)
    for db_id, group in sorted(by_db.items()):
        schema = group[0].schema  # written as the prompt writes it: tags, and SQL over them
        text = prompt_schema_text(schema) + "\n"
        text += "".join(prompt_sql(schema, e.sql) + "\n" for e in group)
        train.append(TextDocument(text))
    if not val and len(train) > 1:
        val.append(train.pop())
    return {"train": train, "val": val}


# Registered when imported as text2sql.prepare; run as a script (python -m), the module body is __main__ and
# hands over to the imported module below, so each source registers exactly once.
if __name__ != "__main__":
    register_source(Source("synthetic", "built-in synthetic text-to-SQL databases (no download)", _load_synthetic,
                           _synthetic_args, special_tokens=tuple(SPECIAL_TOKENS), check=check_packing))
    register_source(Source("spider", "Spider-format folder (text-to-SQL)", _load_spider, _spider_args,
                           special_tokens=tuple(SPECIAL_TOKENS), check=check_packing))
    register_source(Source("wikisql", "WikiSQL folder (text-to-SQL)", _load_wikisql, _wikisql_args,
                           special_tokens=tuple(SPECIAL_TOKENS), check=check_packing))
    register_source(Source("jsonl", "your own text-to-SQL JSONL records", _load_jsonl, _jsonl_args,
                           special_tokens=tuple(SPECIAL_TOKENS), check=check_packing))
    register_source(Source("hf", "a Hugging Face text-to-SQL dataset (needs `datasets`)", _load_hf, _hf_args,
                           special_tokens=tuple(SPECIAL_TOKENS), check=check_packing))
    register_source(Source("sqltext", "unlabeled text and SQL for pretraining (text-to-SQL tokens)", _load_sqltext,
                           _sqltext_args, special_tokens=tuple(SPECIAL_TOKENS)))


# ---- --source sqlite: questions generated over your own SQLite databases (text2sql/sources/sqlite.py) ----
def _load_sqlite(args):
    from text2sql.sources.sqlite import load_from_args

    errors = RecordErrors()
    return finish(args, load_from_args(args, errors), errors, "sqlite")


def _check_sqlite(args) -> None:
    from text2sql.sources.sqlite import check

    check_packing(args)
    check(args)


if __name__ != "__main__":
    from text2sql.sources.sqlite import add_arguments as _sqlite_args

    register_source(Source("sqlite", "questions generated over your own SQLite databases (--db F.sqlite)",
                           _load_sqlite, _sqlite_args, special_tokens=tuple(SPECIAL_TOKENS), check=_check_sqlite))
# ---- end of --source sqlite ----


def prepare_synthetic(out: str | Path, *, vocab_size: int = 2048, block_size: int = DEFAULT_BLOCK_SIZE,
                      questions_per_schema: int = 1, databases: int = 60, train_per_db: int = 200,
                      eval_per_db: int = 25, seed: int = 0, synthetic_dir: str | Path | None = None) -> dict:
    """Generate the synthetic databases (once) and write the tokenizer, shards and meta.json to `out`;
    returns the metadata. The typed form of `python -m text2sql.prepare --source synthetic ...`."""
    # data.prepare.prepare looked up when called, not bound at import: a test that replaces it while this
    # module is first imported must not leave its stand-in here
    return data.prepare.prepare("synthetic", out, vocab_size=vocab_size, block_size=block_size,
                                questions_per_schema=questions_per_schema, synthetic_databases=databases,
                                synthetic_train_per_db=train_per_db, synthetic_eval_per_db=eval_per_db,
                                synthetic_seed=seed,
                                synthetic_dir=None if synthetic_dir is None else str(synthetic_dir))


def main(argv=None) -> int:
    return data.prepare.main(argv)


if __name__ == "__main__":
    # run from the importable module (not __main__) so the sources register once, into data.prepare's registry
    import importlib

    sys.exit(importlib.import_module("text2sql.prepare").main())
