"""Training data for your own SQLite databases: questions generated over them (no labels needed).

    python -m text2sql.prepare --source sqlite --db shop.sqlite [--db g.sqlite ...] --out data/processed/shop
    python -m text2sql.prepare --source sqlite --sqlite-spider-dir ../shared/data/spider --out data/processed/sp

Each database gets up to --sqlite-per-db (question, SQL) pairs from text2sql/synthetic/from_sqlite.py, every
one executed and returning rows. Splits hold out whole databases: about 10% of them (or
--holdout-databases) go to val. With --sqlite-spider-dir the databases are those of the folder's
train.json, and val holds exactly the databases the Spider source holds out with the same
--holdout-databases/--split-seed (so a Spider model's held-out databases never reach training). With a
single database there is nothing to hold out: val is that database asked in the held-out wordings only
(questions.py), so it still measures phrasings the training data never uses.

`load_sqlite` is the plain Python call: load_sqlite(["shop.sqlite"]) -> {"train": [Example], "val": [...]}.
"""
from __future__ import annotations

from pathlib import Path

from text2sql.schema import read_schema
from text2sql.sources import Example, RecordErrors
from text2sql.sources.jsonl import split_by_database

DEFAULT_PER_DB = 200


def add_arguments(group) -> None:
    group.add_argument("--db", action="append", default=[], metavar="F.sqlite",
                       help="(sqlite) a SQLite database to generate questions over (repeatable)")
    group.add_argument("--sqlite-spider-dir", default=None,
                       help="(sqlite) also every database of this Spider folder's train.json")
    group.add_argument("--sqlite-per-db", type=int, default=DEFAULT_PER_DB,
                       help="(sqlite) question/SQL pairs generated per database (at most)")
    group.add_argument("--sqlite-seed", type=int, default=0, help="(sqlite) seed of the question generator")


def check(args) -> None:
    """The options, checked before any work: the files exist, there is at least one."""
    if not args.db and not args.sqlite_spider_dir:
        raise ValueError("--source sqlite needs --db F.sqlite (repeatable) or --sqlite-spider-dir FOLDER")
    for db in args.db:
        if not Path(db).is_file():
            raise ValueError(f"--db {db}: no such file (give the path of a SQLite database)")
    if args.sqlite_spider_dir and not (Path(args.sqlite_spider_dir) / "train.json").is_file():
        raise ValueError(f"--sqlite-spider-dir {args.sqlite_spider_dir} has no train.json (give a Spider folder)")
    if args.sqlite_per_db < 1:
        raise ValueError(f"--sqlite-per-db must be at least 1, got {args.sqlite_per_db}")


def _examples(path: Path, db_id: str, per_db: int, seed: int, wordings: str,
              tables_entry: dict | None = None) -> list[Example]:
    """tables_entry: the database's Spider tables.json entry, for the same readable names as its gold pairs."""
    from text2sql.sources.spider import attach_readable_names
    from text2sql.synthetic.from_sqlite import questions_for_database

    records = questions_for_database(path, per_db, seed, wordings=wordings)
    schema, db = read_schema(path), str(path.resolve())
    if tables_entry is not None:
        attach_readable_names(schema, tables_entry)
    return [Example(db_id, r["question"], r["query"], schema, db) for r in records]


def load_sqlite(dbs: list[str | Path], per_db: int = DEFAULT_PER_DB, seed: int = 0, holdout_databases: int = 0,
                split_seed: int = 0, errors: RecordErrors | None = None, spider_dir: str | Path | None = None,
                strict: bool = True, train_only: bool = False) -> dict[str, list[Example]]:
    """{"train", "val"} Examples generated over the databases `dbs` (and, with spider_dir, over that Spider
    folder's training databases). A database named in `dbs` that cannot be used is a ValueError (strict)
    or, like every unusable Spider database, a reported problem in `errors`. train_only: only the databases
    a Spider model trains on are asked (the held-out ones are skipped before any question is made; val is
    empty), for adding generated pairs to Spider's own training split."""
    from text2sql.synthetic.from_sqlite import spider_train_databases

    errors = errors if errors is not None else RecordErrors()
    paths = [Path(p) for p in dbs]
    spider_val: set[str] = set()
    entries: dict[Path, dict] = {}  # Spider databases' tables.json entries (readable names)
    if spider_dir is not None:
        from text2sql.sources.spider import SpiderFolder

        spider_paths, missing = spider_train_databases(spider_dir)
        for db_id, why in missing.items():
            errors.add(f"Spider database {db_id}", why)
        paths += spider_paths
        folder = SpiderFolder(spider_dir, RecordErrors(quiet=True))
        held = folder.splits(holdout_databases, split_seed)["val"]
        spider_val = {e.db_id for e in held}
        entries = {p: folder.tables[p.stem] for p in spider_paths if p.stem in folder.tables}
    by_db: dict[str, list[Example]] = {}
    ids: dict[str, Path] = {}
    if train_only:  # (Spider augmentation: the held-out databases are not even asked)
        paths = [p for p in paths if p.stem not in spider_val]
    for path in paths:
        db_id = path.stem if path.stem not in ids else f"{path.stem}_{len(ids)}"
        ids[db_id] = path
        try:
            examples = _examples(path, db_id, per_db, seed, "train", entries.get(path))
            if not examples:
                raise ValueError(f"{path}: no question whose SQL returns rows (no table with a usable column)")
        except ValueError as e:
            if strict and path in [Path(p) for p in dbs]:
                raise ValueError(str(e)) from None
            errors.add(f"database {db_id}", str(e))
            continue
        by_db[db_id] = examples
    if not by_db:
        raise ValueError("none of the databases gave a question (see the warnings above)")
    everything = [e for db_id in sorted(by_db) for e in by_db[db_id]]
    if train_only:
        return {"train": everything, "val": []}
    if len(by_db) == 1:  # nothing to hold out: val asks the same database in the held-out wordings
        (db_id, path), = [(d, ids[d]) for d in by_db]
        return {"train": everything, "val": _examples(path, db_id, max(1, per_db // 10), seed, "held_out")}
    if spider_val:
        return {"train": [e for e in everything if e.db_id not in spider_val],
                "val": [e for e in everything if e.db_id in spider_val]}
    fraction = holdout_databases / len(by_db) if holdout_databases > 0 else 0.1
    train, val = split_by_database(everything, fraction, split_seed)
    return {"train": train, "val": val}


def load_from_args(args, errors: RecordErrors) -> dict[str, list[Example]]:
    """The `--source sqlite` loader (registered in text2sql/prepare.py)."""
    return load_sqlite(args.db, args.sqlite_per_db, args.sqlite_seed, args.holdout_databases, args.split_seed,
                       errors, args.sqlite_spider_dir)
