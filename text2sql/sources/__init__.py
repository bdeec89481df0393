"""Labelled text-to-SQL sources: each turns one input format into `Example`s.

    spider.py       a Spider-format folder (train.json/dev.json, tables.json, database/<db>/<db>.sqlite);
                    the built-in synthetic data is written in this format too (text2sql/synthetic/)
    wikisql.py      WikiSQL's own format (*.jsonl with the structured `sql`, *.tables.jsonl); builds SQLite
    jsonl.py        the user's own JSONL: {question, sql, db | schema}
    huggingface.py  a Hugging Face dataset through `datasets` (Spider-like, WikiSQL-like or DDL+SQL records)

Bad input never stops a load: each malformed record, missing database or unknown db_id is reported
(file and record number) through `RecordErrors`, and the good records are kept. They are registered
with `python -m data.prepare` in text2sql/prepare.py.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from text2sql.schema import Schema


@dataclass
class Example:
    """One labelled example. `schema` is a Schema, or already-serialised schema text (e.g. user-given).
    `db_path` is None when there is no database to run queries on (the example still trains)."""

    db_id: str
    question: str
    sql: str
    schema: Schema | str
    db_path: str | None = None

    def to_dict(self) -> dict:
        schema = self.schema.to_dict() if isinstance(self.schema, Schema) else self.schema
        return {"db_id": self.db_id, "question": self.question, "sql": self.sql, "schema": schema,
                "db_path": self.db_path}

    @classmethod
    def from_dict(cls, d: dict) -> "Example":
        schema = d["schema"] if isinstance(d["schema"], str) else Schema.from_dict(d["schema"])
        return cls(d["db_id"], d["question"], d["sql"], schema, d.get("db_path"))


@dataclass
class RecordErrors:
    """Collects problems with input records; prints each one (up to `max_printed`) as it happens."""

    max_printed: int = 20
    quiet: bool = False
    messages: list[str] = field(default_factory=list)
    n_skipped: int = 0

    def add(self, where: str, problem: str, skipped: bool = True) -> None:
        """Report a problem; skipped=False for a warning about a record that is still kept."""
        msg = f"{where}: {problem}"
        self.messages.append(msg)
        self.n_skipped += skipped
        if not self.quiet and len(self.messages) <= self.max_printed:
            print(f"warning: {msg}", file=sys.stderr)
        elif not self.quiet and len(self.messages) == self.max_printed + 1:
            print("warning: (more problems; only the count is reported from here on)", file=sys.stderr)

    def summary(self) -> str:
        if not self.messages:
            return ""
        warned = len(self.messages) - self.n_skipped
        return f"{self.n_skipped} bad record(s) skipped" + (f", {warned} warning(s) (records kept)" if warned else "")

    def __len__(self) -> int:
        return len(self.messages)


def require_text(record: dict, key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {key!r} is missing or not a non-empty string")
    return value.strip()
