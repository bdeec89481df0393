"""Database schemas: tables, columns, declared types, primary and foreign keys.

`Schema` is the plain description every text-to-SQL source produces (SQLite files, Spider's tables.json,
WikiSQL tables, a user's DDL) and the prompt serialises (text2sql/prompt.py). There is ONE reader of a
live schema, `schema_from_connection`: a SQLite file (`read_schema`) and user DDL (`schema_from_ddl`, run
in an in-memory database first) both go through it, so both resolve a foreign key that names no column
(`REFERENCES t`) to t's real primary key, as SQLite itself does.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path



def compact_type(declared: str) -> str:
    """A short type word from a declared SQL type, by SQLite's affinity rules: VARCHAR(255) -> text."""
    t = declared.upper()
    if not t:
        return ""
    if "INT" in t:
        return "int"
    if any(k in t for k in ("CHAR", "CLOB", "TEXT", "STRING")):
        return "text"
    if any(k in t for k in ("REAL", "FLOA", "DOUB", "DEC", "NUM", "NUMBER")):
        return "real"
    if "DATE" in t or "TIME" in t or "YEAR" in t:
        return "time"
    if "BOOL" in t or "BIT" in t:
        return "bool"
    return t.split("(")[0].strip().lower()[:12]


@dataclass
class Column:
    name: str
    type: str = ""
    primary_key: bool = False
    references: tuple[str, str] | None = None  # (table, column) this foreign key points to
    readable: str = ""  # the name in words where a source gives one (Spider's tables.json: StuID -> "student id")

    def to_text(self, with_type: bool = True, marked: bool = False) -> str:
        parts = [self.name + ("*" if marked else "")]
        if with_type and self.type:
            parts.append(compact_type(self.type))
        if self.primary_key:
            parts.append("pk")
        if self.references:
            parts.append(f"fk {self.references[0]}.{self.references[1]}")
        return " ".join(parts)


@dataclass
class Table:
    name: str
    columns: list[Column] = field(default_factory=list)
    readable: str = ""  # as Column.readable

    def to_text(self, with_types: bool = True, marked: frozenset = frozenset()) -> str:
        """`name: col type pk, ...`; a column (or the table) in `marked` is written with a `*` after its
        name: the question names it (schema linking, text2sql/linking.py)."""
        head = self.name + ("*" if self.name in marked else "")
        return f"{head}: " + ", ".join(c.to_text(with_types, (self.name, c.name) in marked) for c in self.columns)


@dataclass
class Schema:
    tables: list[Table] = field(default_factory=list)

    def to_text(self, with_types: bool = True, marked: frozenset = frozenset()) -> str:
        """The compact serialisation: `table: col type [pk] [fk t.c], ... | table2: ...`; names in
        `marked` (table names and (table, column) pairs) get a `*`."""
        return " | ".join(t.to_text(with_types, marked) for t in self.tables)

    def table(self, name: str) -> Table:
        for t in self.tables:
            if t.name.lower() == name.lower():
                return t
        raise KeyError(name)

    def to_dict(self) -> dict:
        def named(d: dict, readable: str) -> dict:  # "readable" only where a source gave one
            return {**d, "readable": readable} if readable else d

        return {"tables": [named({"name": t.name, "columns": [named(
            {"name": c.name, "type": c.type, "primary_key": c.primary_key,
             "references": list(c.references) if c.references else None}, c.readable) for c in t.columns]},
            t.readable) for t in self.tables]}

    @classmethod
    def from_dict(cls, d: dict) -> "Schema":
        """Inverse of `to_dict`; raises ValueError on a malformed dict."""
        try:
            return cls([Table(t["name"], [Column(c["name"], c.get("type") or "", bool(c.get("primary_key")),
                                                 tuple(c["references"]) if c.get("references") else None,
                                                 c.get("readable") or "")
                                          for c in t["columns"]], t.get("readable") or "") for t in d["tables"]])
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed schema dict (expected tables[].name/columns[].name): {e}") from e


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def schema_from_connection(conn: sqlite3.Connection) -> Schema:
    """The Schema of every user table of an open SQLite connection (trusted code: PRAGMAs allowed)."""
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
    tables = []
    for name in names:
        fks = {}
        for row in conn.execute(f"PRAGMA foreign_key_list({_quote(name)})"):
            # (id, seq, table, from, to, ...); `to` is NULL when the key points at the primary key
            fks[row[3]] = (row[2], row[4])
        cols = []
        for _, cname, ctype, _, _, pk in conn.execute(f"PRAGMA table_info({_quote(name)})"):
            ref = fks.get(cname)
            if ref and ref[1] is None:
                pk_cols = [r[1] for r in conn.execute(f"PRAGMA table_info({_quote(ref[0])})") if r[5]]
                ref = (ref[0], pk_cols[0] if pk_cols else "rowid")
            cols.append(Column(cname, ctype or "", bool(pk), ref))
        tables.append(Table(name, cols))
    return Schema(tables)


def read_schema(db_path: str | Path) -> Schema:
    """The Schema of a SQLite file, read on its own read-only connection (no model output runs here)."""
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"SQLite database {path} does not exist")
    # immutable=1: SQLite neither locks nor creates -shm/-wal files beside a WAL-mode database
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
    try:
        return schema_from_connection(conn)
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{path} is not a readable SQLite database: {e}") from e
    finally:
        conn.close()


def schema_from_ddl(ddl: str) -> Schema:
    """Run CREATE TABLE statements in an in-memory SQLite database and read the schema back."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(ddl)
        return schema_from_connection(conn)
    except sqlite3.Error as e:
        raise ValueError(f"schema DDL does not run in SQLite: {e}") from None
    finally:
        conn.close()
