"""The built-in synthetic text-to-SQL data: SQLite databases with varied schemas, and question/SQL pairs.

    python -m text2sql.synthetic --out data/synthetic --seed 0

writes a Spider-format folder (so one loader, text2sql/sources/spider.py, reads it and Spider alike):

    data/synthetic/database/<db_id>/<db_id>.sqlite
    data/synthetic/tables.json               # Spider's schema format
    data/synthetic/{train,dev,test}.json     # [{db_id, question, query, shape}]

How it varies: each database instantiates one of ten domains (company, school, library, ...). A domain
has two or three tables linked by foreign keys; every database picks its own table names (e.g.
`employee` or `worker`), its own subset of columns, its own column-name variants and its own rows. The
questions come from about 25 SQL shapes (SELECT, WHERE with AND/OR, comparisons, LIKE, BETWEEN, IN,
ORDER BY, LIMIT, DISTINCT, COUNT/AVG/SUM/MIN/MAX, GROUP BY, HAVING, JOIN over foreign keys, nested
subqueries, UNION/INTERSECT/EXCEPT), each with several English phrasings.

Guarantees (tested): the output depends only on the arguments (seeded `random.Random`, no clock, no
hash order); every gold query executes and returns at least one row; a query with LIMIT has no tie at
its cut-off (so the gold answer is well defined); the split is by database: the first database of
each domain goes to test, the second to dev, the rest to train, so every test schema is unseen.

The modules: domains.py (the ten domains and their word lists), database.py (one database: variants,
rows, SQLite, tables.json entry), questions.py (the SQL shapes and their wordings); this file ties them
together (`generate`, the command line).

The language is deliberately regular (column names read as words: `hire_year` -> "hire year", a small
value vocabulary): a model of a few million parameters trained for minutes on a CPU can learn it.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

from text2sql.synthetic.database import BuiltColumn, BuiltTable, build_database, spider_tables_entry, write_sqlite
from text2sql.synthetic.domains import DOMAINS, ColumnSpec, TableSpec, column_spec
from text2sql.synthetic.questions import SHAPES, QuestionMaker, generate_questions

__all__ = ["generate", "main", "DOMAINS", "SHAPES", "ColumnSpec", "TableSpec", "column_spec", "BuiltColumn",
           "BuiltTable", "build_database", "write_sqlite", "spider_tables_entry", "QuestionMaker",
           "generate_questions"]


def generate(out_dir: str | Path, seed: int = 0, num_databases: int = 60, train_per_db: int = 200,
             eval_per_db: int = 25, progress: bool = True) -> dict:
    """Write the synthetic Spider-format folder; returns {split: number of examples}."""
    out = Path(out_dir)
    domains = list(DOMAINS)
    if num_databases < 3:
        raise ValueError("num_databases must be at least 3 (one each for train, dev and test)")
    splits: dict[str, list] = {"train": [], "dev": [], "test": []}
    tables = []
    per_domain = Counter()
    for i in range(num_databases):
        domain = domains[i % len(domains)]
        k = per_domain[domain]
        per_domain[domain] += 1
        # small runs (fewer databases than 3 per domain) still get all three splits
        if num_databases < 3 * len(domains):
            split = ["test", "dev"][i] if i < 2 else "train"
        else:
            split = "test" if k == 0 else "dev" if k == 1 else "train"
        db_id = f"{domain}_{i:03d}"
        rng = random.Random(f"text2sql-synthetic/{seed}/{i}")
        built = build_database(domain, rng)
        db_path = out / "database" / db_id / f"{db_id}.sqlite"
        write_sqlite(built, db_path)
        tables.append(spider_tables_entry(db_id, built))
        n = train_per_db if split == "train" else eval_per_db
        for rec in generate_questions(built, db_path, n, rng):
            splits[split].append({"db_id": db_id, **rec})
        if progress:
            print(f"\rsynthetic: database {i + 1}/{num_databases}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    (out / "tables.json").write_text(json.dumps(tables, indent=1))
    for split, recs in splits.items():
        (out / f"{split}.json").write_text(json.dumps(recs, indent=1))
    return {split: len(recs) for split, recs in splits.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m text2sql.synthetic", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/synthetic", help="output folder (Spider format)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--databases", type=int, default=60, help="number of databases (split by database)")
    ap.add_argument("--train-per-db", type=int, default=200, help="questions per training database")
    ap.add_argument("--eval-per-db", type=int, default=25, help="questions per dev/test database")
    args = ap.parse_args(argv)
    try:
        counts = generate(args.out, args.seed, args.databases, args.train_per_db, args.eval_per_db)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v} examples" for k, v in counts.items()))
    return 0
