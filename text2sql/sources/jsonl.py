"""The user's own examples: a JSONL file, one record per line:

    {"question": "How many singers are there?", "sql": "SELECT COUNT(*) FROM singer",
     "db": "dbs/concert.sqlite"}                       # a SQLite file (relative to the JSONL file's folder)
    {"question": "...", "sql": "...", "schema": "CREATE TABLE singer (id INT PRIMARY KEY, name TEXT)"}
    {"question": "...", "sql": "...", "schema": "singer: id int pk, name text"}   # already compact text

Optional fields: "db_id" (default: the db file's stem, or "custom"), "split" ("train", "val" or "test";
records without one are split by database: see `split_by_database`). "query" is accepted for "sql".
A schema given as CREATE TABLE statements is parsed by SQLite itself (in memory); any other string is
used as the schema text as it is. With a "db" the queries can be executed (evaluation); with only a
"schema" the example trains but is not executed.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from text2sql.sources import Example, RecordErrors, require_text
from text2sql.schema import Schema, read_schema, schema_from_ddl


def example_from_record(rec: dict, base_dir: Path, schemas: dict) -> tuple[Example, str | None]:
    """(Example, its split or None); raises ValueError saying what is wrong with the record."""
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    question = require_text(rec, "question")
    sql = require_text(rec, "sql" if "sql" in rec else "query")
    split = rec.get("split")
    if split is not None and split not in ("train", "val", "test"):
        raise ValueError(f"split {split!r} is not train, val or test")
    if rec.get("db"):
        path = Path(rec["db"])
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise ValueError(f"database {path} does not exist")
        key = str(path.resolve())
        if key not in schemas:
            schemas[key] = read_schema(path)
        return Example(rec.get("db_id") or path.stem, question, sql, schemas[key], key), split
    schema = rec.get("schema")
    if isinstance(schema, dict):
        return Example(rec.get("db_id") or "custom", question, sql, Schema.from_dict(schema)), split
    if not isinstance(schema, str) or not schema.strip():
        raise ValueError("needs a 'db' (SQLite file) or a 'schema' (CREATE TABLE statements or text)")
    if "create table" in schema.lower():
        if schema not in schemas:
            schemas[schema] = schema_from_ddl(schema)
        return Example(rec.get("db_id") or "custom", question, sql, schemas[schema]), split
    return Example(rec.get("db_id") or "custom", question, sql, schema.strip()), split


def split_by_database(examples: list[Example], val_fraction: float, seed: int = 0) -> tuple[list, list]:
    """Hold out whole databases (db_id) for val: about val_fraction of them, at least one when there are two.
    With a single database there is nothing to hold out: everything trains."""
    dbs = sorted({e.db_id for e in examples})
    n_val = int(round(len(dbs) * val_fraction))
    if len(dbs) >= 2 and val_fraction > 0:
        n_val = min(max(n_val, 1), len(dbs) - 1)
    random.Random(seed).shuffle(dbs)
    held = set(dbs[:n_val])
    return [e for e in examples if e.db_id not in held], [e for e in examples if e.db_id in held]


def load_jsonl(path: str | Path, errors: RecordErrors | None = None, val_fraction: float = 0.1,
               seed: int = 0) -> dict[str, list[Example]]:
    """{"train", "val"[, "test"]} Examples of a JSONL file; bad records are reported and skipped."""
    errors = errors if errors is not None else RecordErrors()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"JSONL file {path} does not exist")
    schemas: dict = {}
    out: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    unsplit: list[Example] = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}: line {line_no}"
            try:
                example, split = example_from_record(json.loads(line), path.parent, schemas)
            except json.JSONDecodeError as e:
                errors.add(where, f"not valid JSON ({e.msg})")
                continue
            except ValueError as e:
                errors.add(where, str(e))
                continue
            (out[split] if split else unsplit).append(example)
    train, val = split_by_database(unsplit, val_fraction, seed)
    out["train"] += train
    out["val"] += val
    return {k: v for k, v in out.items() if v or k != "test"}
