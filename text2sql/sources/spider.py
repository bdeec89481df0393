"""A Spider-format folder: `<split>.json` files of {db_id, question, query}, `tables.json` (schemas) and
`database/<db_id>/<db_id>.sqlite`.

Schemas come from the SQLite file when it exists (declared types, keys as the database has them), else
from tables.json (a database that is absent, such as Spider's baseball_1 in ../shared: its examples still
train, but cannot be executed, so evaluation skips them).

Splits: `train.json` is train; `dev.json` (if present) is val and `test.json` (if present) is test. When a
folder has only train.json (as ../shared/data/spider), whole databases are held out of it for val:
`holdout_databases` of them, chosen by a seeded shuffle of the sorted db_ids, so an example's split
depends only on its database, never on the example.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from text2sql.sources import Example, RecordErrors, require_text
from text2sql.schema import read_schema
from text2sql.schema import Column, Schema, Table


def attach_readable_names(schema: Schema, entry: dict) -> Schema:
    """Set each table's and column's `readable` to its tables.json wording (`table_names`, `column_names`:
    'StuID' -> 'student id', 'Fname' -> 'first name'), matched by original name, case-insensitively.
    Names tables.json does not list keep their own words (the prompt splits the identifier)."""
    try:
        tables = {o.lower(): r for o, r in zip(entry["table_names_original"], entry["table_names"])}
        columns = {(entry["table_names_original"][ti].lower(), o.lower()): r
                   for (ti, o), (_, r) in zip(entry["column_names_original"], entry["column_names"]) if ti >= 0}
    except (KeyError, IndexError, TypeError, ValueError):
        return schema  # an entry without wordings (or a malformed one): names only
    for t in schema.tables:
        t.readable = tables.get(t.name.lower(), "") or ""
        for c in t.columns:
            c.readable = columns.get((t.name.lower(), c.name.lower()), "") or ""
    return schema


def readable_names_beside(db_path: str | Path, schema: Schema) -> Schema:
    """A database inside a Spider-format folder (<folder>/database/<db_id>/<db_id>.sqlite, with
    <folder>/tables.json) gets its tables.json wordings, as its examples had when a model trained on them;
    any other database keeps its identifier words."""
    path = Path(db_path)
    tables = path.parent.parent.parent / "tables.json"
    if path.parent.parent.name != "database" or not tables.is_file():
        return schema
    if (tables.parent / "synthetic.json").is_file():  # the main job's generated folder: trained without them
        return schema
    try:
        entry = next((e for e in json.loads(tables.read_text()) if e.get("db_id") == path.stem), None)
    except (OSError, ValueError, AttributeError):
        return schema
    return attach_readable_names(schema, entry) if entry else schema


def schema_from_tables_json(entry: dict, readable_names: bool = True) -> Schema:
    """A Spider tables.json entry as a Schema (types number/text/time/others/boolean, keys by index)."""
    tables = [Table(name) for name in entry["table_names_original"]]
    cols: list[tuple[int, Column]] = []
    for (ti, name), ctype in zip(entry["column_names_original"], entry["column_types"]):
        col = Column(name, {"number": "real", "others": ""}.get(ctype, ctype))
        cols.append((ti, col))
        if ti >= 0:
            tables[ti].columns.append(col)
    pk_ids = entry.get("primary_keys", [])
    for pk in pk_ids:
        for i in (pk if isinstance(pk, list) else [pk]):  # newer Spider lists composite keys as lists
            cols[i][1].primary_key = True
    for src, dst in entry.get("foreign_keys", []):
        ti = cols[dst][0]
        cols[src][1].references = (tables[ti].name, cols[dst][1].name)
    return attach_readable_names(Schema(tables), entry) if readable_names else Schema(tables)


class SpiderFolder:
    """Reads one Spider-format folder; `load_split(file)` returns its Examples."""

    def __init__(self, folder: str | Path, errors: RecordErrors | None = None, readable_names: bool = True):
        """readable_names: give schemas tables.json's wordings (`column_names`), as Spider's annotators wrote
        them; the synthetic generator's folders say False (their wordings drop the table from a column,
        `actor_name` -> "name", which the main job's prompt has never shown)."""
        self.folder = Path(folder)
        self.readable_names = readable_names
        self.errors = errors if errors is not None else RecordErrors()
        if not self.folder.is_dir():
            raise ValueError(f"Spider folder {self.folder} does not exist")
        self.tables: dict[str, dict] = {}
        tables_file = self.folder / "tables.json"
        if tables_file.is_file():
            try:
                for entry in json.loads(tables_file.read_text()):
                    self.tables[entry["db_id"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                self.errors.add(str(tables_file), f"unreadable ({e}); schemas will come from the databases")
        self._schemas: dict[str, tuple[Schema | None, str | None]] = {}

    def db_path(self, db_id: str) -> Path:
        return self.folder / "database" / db_id / f"{db_id}.sqlite"

    def schema(self, db_id: str, where: str) -> tuple[Schema | None, str | None]:
        """(schema, db path or None) of a database, reporting a missing one once."""
        if db_id not in self._schemas:
            path = self.db_path(db_id)
            schema, db = None, None
            if path.is_file():
                try:
                    schema, db = read_schema(path), str(path.resolve())
                    if db_id in self.tables and self.readable_names:
                        attach_readable_names(schema, self.tables[db_id])
                except ValueError as e:
                    self.errors.add(where, f"database {path} is unreadable ({e})")
            if schema is None and db_id in self.tables:
                try:
                    schema = schema_from_tables_json(self.tables[db_id], self.readable_names)
                except (KeyError, IndexError, TypeError) as e:
                    self.errors.add(where, f"tables.json entry for {db_id!r} is malformed ({e})")
                if db is None and schema is not None:
                    self.errors.add(where, f"database {path} is missing: examples of {db_id!r} are kept for "
                                           f"training (schema from tables.json) but cannot be executed",
                                    skipped=False)
            if schema is None:
                self.errors.add(where, f"unknown database {db_id!r} (neither {path} nor a tables.json entry)")
            self._schemas[db_id] = (schema, db)
        return self._schemas[db_id]

    def load_split(self, name: str) -> list[Example]:
        path = self.folder / name
        try:
            records = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{path} does not exist") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(records, list):
            raise ValueError(f"{path} must hold a JSON list of {{db_id, question, query}} records")
        out = []
        for i, rec in enumerate(records):
            where = f"{path}: record {i}"
            try:
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
                db_id, question = require_text(rec, "db_id"), require_text(rec, "question")
                sql = require_text(rec, "query" if "query" in rec else "sql")
            except ValueError as e:
                self.errors.add(where, str(e))
                continue
            schema, db = self.schema(db_id, where)
            if schema is None:
                continue
            out.append(Example(db_id, question, sql, schema, db))
        return out

    def splits(self, holdout_databases: int = 0, seed: int = 0) -> dict[str, list[Example]]:
        """{"train", "val"[, "test"]} as described in the module docstring."""
        train = self.load_split("train.json")
        out = {"train": train}
        if (self.folder / "dev.json").is_file():
            out["val"] = self.load_split("dev.json")
        if (self.folder / "test.json").is_file():
            out["test"] = self.load_split("test.json")
        if "val" not in out:
            dbs = sorted({e.db_id for e in train})
            if holdout_databases <= 0:
                holdout_databases = max(1, len(dbs) // 10)
            if holdout_databases >= len(dbs):
                raise ValueError(f"cannot hold out {holdout_databases} of {len(dbs)} databases for validation")
            random.Random(seed).shuffle(dbs)
            held = set(dbs[:holdout_databases])
            out["train"] = [e for e in train if e.db_id not in held]
            out["val"] = [e for e in train if e.db_id in held]
        return out
