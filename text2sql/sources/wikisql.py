"""WikiSQL's own format, converted to SQL text over SQLite tables built from it.

Input folder: `<split>.jsonl` (records {table_id, question, sql: {sel, agg, conds: [[col, op, value]]}})
and `<split>.tables.jsonl` (tables {id, header, types, rows}), for split in train/dev/test (dev -> val).

Each split's tables go into one SQLite file, `<out>/wikisql/<split>.sqlite`, one SQLite table per
WikiSQL table, so every converted query can be executed. An example's schema is its own table only
(WikiSQL questions are about one table). Names: the table is `t_<id>` (dashes to underscores); column
headers become identifiers (lower case, runs of other characters to `_`, `c_` before a leading digit,
`_2` suffixes for duplicates, `_col` after an SQL keyword), so no identifier needs quoting.

The conversion follows WikiSQL's own definition: aggregation ['', MAX, MIN, COUNT, SUM, AVG], condition
operators ['=', '>', '<'], conditions joined by AND. Values compared with a numeric column are written as
numbers when they parse as numbers, else as quoted strings.
"""
from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from text2sql.sources import Example, RecordErrors
from text2sql.schema import Column, Schema, Table

AGG_OPS = ["", "MAX", "MIN", "COUNT", "SUM", "AVG"]
COND_OPS = ["=", ">", "<"]
_KEYWORDS = {"select", "from", "where", "group", "order", "by", "limit", "and", "or", "not", "in", "is", "as",
             "on", "join", "union", "values", "table", "index", "having", "distinct", "case", "when", "then",
             "else", "end", "null", "like", "between", "all", "to", "into", "set", "default", "primary", "key",
             "check", "references", "create", "drop", "insert", "update", "delete", "exists", "desc", "asc"}


def table_name(table_id: str) -> str:
    return "t_" + re.sub(r"[^0-9a-zA-Z]+", "_", table_id).strip("_").lower()


def column_names(header: list[str]) -> list[str]:
    names, seen = [], {}
    for h in header:
        n = re.sub(r"[^0-9a-z]+", "_", str(h).lower()).strip("_") or "col"
        if n[0].isdigit():
            n = "c_" + n
        if n in _KEYWORDS:
            n += "_col"
        seen[n] = seen.get(n, 0) + 1
        names.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return names


def _number(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    try:
        return float(str(v).replace(",", "")) if str(v).strip() else None
    except ValueError:
        return None


def _literal(value, numeric: bool) -> str:
    if numeric:
        n = _number(value)
        if n is not None:
            return repr(int(n)) if float(n).is_integer() and abs(n) < 2 ** 53 else repr(float(n))
    return "'" + str(value).replace("'", "''") + "'"


def to_sql(sql: dict, table: dict) -> str:
    """SQL text of a WikiSQL `sql` dict on `table`; raises ValueError when indexes are out of range."""
    cols = column_names(table["header"])
    types = table.get("types") or ["text"] * len(cols)
    try:
        sel, agg = cols[int(sql["sel"])], AGG_OPS[int(sql["agg"])]
        select = f"{agg}({sel})" if agg else sel
        where = []
        for col, op, value in sql.get("conds", []):
            where.append(f"{cols[int(col)]} {COND_OPS[int(op)]} {_literal(value, types[int(col)] == 'real')}")
    except (IndexError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"sql {sql} does not fit table {table.get('id')} ({type(e).__name__})") from None
    return f"SELECT {select} FROM {table_name(table['id'])}" + (f" WHERE {' AND '.join(where)}" if where else "")


def table_schema(table: dict) -> Schema:
    types = table.get("types") or ["text"] * len(table["header"])
    return Schema([Table(table_name(table["id"]), [Column(n, t) for n, t in zip(column_names(table["header"]), types)])])


def build_database(tables: list[dict], path: Path, errors: RecordErrors, where: str) -> set[str]:
    """Write every table into a fresh SQLite file; returns the ids of the tables written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    conn = sqlite3.connect(path)
    written = set()
    try:
        for i, t in enumerate(tables):
            try:
                cols = column_names(t["header"])
                types = t.get("types") or ["text"] * len(cols)
                defs = ", ".join(f"{c} {'REAL' if ty == 'real' else 'TEXT'}" for c, ty in zip(cols, types))
                name = table_name(t["id"])
                conn.execute(f"CREATE TABLE {name} ({defs})")
                rows = [tuple(r) for r in t.get("rows", [])]
                if any(len(r) != len(cols) for r in rows):
                    raise ValueError("a row has the wrong number of cells")
                conn.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(cols))})", rows)
                written.add(t["id"])
            except (KeyError, TypeError, ValueError, sqlite3.Error) as e:
                errors.add(f"{where}: table {i}", f"cannot build it ({type(e).__name__}: {e})")
        conn.commit()
    finally:
        conn.close()
    return written


def convert(records, tables: list[dict], db_path: Path, errors: RecordErrors, where: str) -> list[Example]:
    """Examples from WikiSQL records (dicts with table_id, question, sql) and their tables."""
    by_id = {}
    for t in tables:
        if isinstance(t, dict) and "id" in t:
            by_id[t["id"]] = t
    built = build_database(list(by_id.values()), db_path, errors, where)
    out = []
    for i, rec in enumerate(records):
        try:
            table = by_id.get(rec["table_id"])
            if table is None or rec["table_id"] not in built:
                raise ValueError(f"unknown table_id {rec['table_id']!r}")
            question = str(rec["question"]).strip()
            if not question:
                raise ValueError("empty question")
            sql = to_sql(rec["sql"], table)
        except (KeyError, TypeError, ValueError) as e:
            errors.add(f"{where}: record {i}", str(e) if isinstance(e, ValueError) else f"missing field {e}")
            continue
        out.append(Example(f"wikisql/{db_path.stem}", question, sql, table_schema(table), str(db_path.resolve())))
    return out


def _read_jsonl(path: Path, errors: RecordErrors) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    errors.add(f"{path}: line {n}", f"not valid JSON ({e.msg})")
    return out


def load_wikisql(folder: str | Path, out_dir: str | Path, errors: RecordErrors | None = None) -> dict[str, list[Example]]:
    """{"train", "val"[, "test"]} from a WikiSQL folder; SQLite files are written under out_dir/wikisql."""
    errors = errors if errors is not None else RecordErrors()
    folder = Path(folder)
    if not (folder / "train.jsonl").is_file():
        raise ValueError(f"{folder} has no train.jsonl (WikiSQL format: <split>.jsonl + <split>.tables.jsonl)")
    out = {}
    for split, name in (("train", "train"), ("val", "dev"), ("test", "test")):
        data, tables = folder / f"{name}.jsonl", folder / f"{name}.tables.jsonl"
        if not data.is_file():
            continue
        if not tables.is_file():
            raise ValueError(f"{data} has no tables file {tables}")
        out[split] = convert(_read_jsonl(data, errors), _read_jsonl(tables, errors),
                             Path(out_dir) / "wikisql" / f"{split}.sqlite", errors, str(data))
    return out
