"""The built-in synthetic text-to-SQL data: SQLite databases with varied schemas, and question/SQL pairs.

    python -m text2sql.synthetic --out data/synthetic --seed 0

writes a Spider-format folder (so one loader, text2sql/sources/spider.py, reads it and Spider alike):

    data/synthetic/database/<db_id>/<db_id>.sqlite
    data/synthetic/tables.json                       # Spider's schema format, with readable names
    data/synthetic/{train,dev,test_domains,test_wordings}.json   # [{db_id, question, query, shape}]

How it varies: each database composes two or three entities of one of 40 themes (a hospital's doctors
and patients, a port's ships and captains, ...) into tables linked by foreign keys, with a label column
and a few of ~80 attributes each, named in one of several styles (snake_case, camelCase, PascalCase,
plural tables, abbreviations); rows are drawn from value pools (vocabulary.py, database.py). The questions
come from about 25 SQL shapes (SELECT, WHERE with AND/OR, comparisons, LIKE, BETWEEN, IN, ORDER BY,
LIMIT, DISTINCT, COUNT/AVG/SUM/MIN/MAX, GROUP BY, HAVING, JOIN over foreign keys, nested subqueries,
UNION/INTERSECT/EXCEPT), each with 10 or more English wordings composed from phrase parts (verb synonyms,
word order, terse and polite forms) and typed in several surface forms (questions.py).

The splits measure generalisation, not recall:
  train           databases of the 30 training themes, training attributes, training wordings
  dev             new databases of the training themes (validation loss)
  test_domains    databases of the 10 held-out themes with the held-out attributes: no table or column
                  name of these databases occurs in any training database
  test_wordings   new databases of the training themes, asked only with the held-out template of every
                  shape: no such phrasing occurs in training

Guarantees (tested): the output depends only on the arguments (seeded `random.Random`, no clock, no
hash order); every gold query executes and returns at least one row; a query with LIMIT has no tie at
its cut-off (so the gold answer is well defined).

The modules: vocabulary.py (themes, attributes, value pools, what is held out), database.py (one
database: composition, naming style, rows, SQLite, tables.json entry), questions.py (the SQL shapes,
their wordings and surface forms); this file ties them together (`generate`, the command line).
from_sqlite.py points the same question maker at ANY SQLite database (`questions_for_database`; the
training source `python -m text2sql.prepare --source sqlite --db F.sqlite`, text2sql/sources/sqlite.py).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

from text2sql.synthetic.database import BuiltColumn, BuiltTable, build_database, spider_tables_entry, write_sqlite
from text2sql.synthetic.questions import SHAPES, QuestionMaker, generate_questions
from text2sql.synthetic.vocabulary import ATTRIBUTES, HELD_OUT_ATTRIBUTES, HELD_OUT_THEMES, THEMES, themes_for

__all__ = ["generate", "main", "SPLITS", "SHAPES", "THEMES", "ATTRIBUTES", "HELD_OUT_THEMES", "HELD_OUT_ATTRIBUTES",
           "BuiltColumn", "BuiltTable", "build_database", "write_sqlite", "spider_tables_entry", "QuestionMaker",
           "generate_questions", "split_of"]

SPLITS = ("train", "dev", "test_domains", "test_wordings")
INVENTED_SHARE = 0.4  # of the training databases
GENERATOR_VERSION = 4  # bumped whenever the same arguments would give different data (prepared data is remade)


def split_of(i: int, num_databases: int) -> str:
    """The split of the i-th database: the first twentieth (at least one) of the databases for each
    evaluation split, the rest for training."""
    n_eval = max(1, num_databases // 20)
    return ("test_domains", "test_wordings", "dev")[i // n_eval] if i < 3 * n_eval else "train"


def generate(out_dir: str | Path, seed: int = 0, num_databases: int = 60, train_per_db: int = 200,
             eval_per_db: int = 25, progress: bool = True) -> dict:
    """Write the synthetic Spider-format folder; returns {split: number of examples}."""
    out = Path(out_dir)
    if num_databases < 4:
        raise ValueError("num_databases must be at least 4 (one each for train, dev, test_domains, test_wordings)")
    train_themes, held_out_themes = themes_for(held_out=False), themes_for(held_out=True)
    splits: dict[str, list] = {name: [] for name in SPLITS}
    tables = []
    seen_by_split = Counter()
    tty = sys.stderr.isatty()
    for i in range(num_databases):
        split = split_of(i, num_databases)
        k = seen_by_split[split]
        seen_by_split[split] += 1
        held_out_domain = split == "test_domains"
        pool = held_out_themes if held_out_domain else train_themes
        theme = pool[k % len(pool)]
        rng = random.Random(f"text2sql-synthetic/{seed}/{i}")
        # a share of the training databases use made-up names, so that names must be read off the schema
        invented = split == "train" and rng.random() < INVENTED_SHARE
        built = build_database(theme, rng, held_out=held_out_domain, invented=invented)
        if invented:
            theme = "invented"
        db_id = f"{theme}_{i:03d}"
        db_path = out / "database" / db_id / f"{db_id}.sqlite"
        write_sqlite(built, db_path)
        tables.append(spider_tables_entry(db_id, built))
        n = train_per_db if split == "train" else eval_per_db
        wordings = "held_out" if split == "test_wordings" else "train"
        for rec in generate_questions(built, db_path, n, rng, wordings=wordings):
            splits[split].append({"db_id": db_id, **rec})
        if progress and tty:  # a terminal redraws one line; a log file gets a line every 10%
            print(f"\rsynthetic: database {i + 1}/{num_databases}", end="", file=sys.stderr, flush=True)
        elif progress and ((i + 1) % max(1, num_databases // 10) == 0 or i + 1 == num_databases):
            print(f"synthetic: database {i + 1}/{num_databases}", file=sys.stderr, flush=True)
    if progress and tty:
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
