"""One synthetic database: pick a domain's table and column variants, fill the rows, write SQLite.

`build_database` turns a domain of domains.py into `BuiltTable`s (the chosen names and the rows, in
memory); `write_sqlite` writes them to a .sqlite file and `spider_tables_entry` describes them in
Spider's tables.json format. All randomness comes from the `random.Random` passed in, in a fixed order.
"""
from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from text2sql.synthetic.domains import DOMAINS, ColumnSpec


@dataclass
class BuiltColumn:
    name: str
    kind: str  # pk, fk, label, text, int, real
    parent: "BuiltTable | None" = None  # the table a foreign key points at

    @property
    def words(self) -> str:  # how questions name the column
        return self.name.replace("_", " ")


@dataclass
class BuiltTable:
    name: str
    singular: str
    plural: str
    columns: list[BuiltColumn]
    rows: list[dict] = field(default_factory=list)

    def of_kind(self, *kinds) -> list[BuiltColumn]:
        return [c for c in self.columns if c.kind in kinds]

    @property
    def label(self) -> BuiltColumn | None:
        """The column that names a row (a person's name, a book's title), if the table has one."""
        labels = self.of_kind("label")
        return labels[0] if labels else None

    def foreign_keys(self) -> list[BuiltColumn]:
        return self.of_kind("fk")


def random_number(rng: random.Random, spec: ColumnSpec):
    """A value of a numeric column: a multiple of `step` above `lo`, at most `hi`."""
    lo, hi, step = spec.values
    n = rng.randint(0, int(round((hi - lo) / step)))
    v = lo + n * step
    return round(v, 2) if spec.kind == "real" else int(v)


def build_database(domain: str, rng: random.Random) -> list[BuiltTable]:
    """Pick table/column variants and fill rows; parents come before children."""
    specs = DOMAINS[domain]
    tables: dict[str, BuiltTable] = {}
    for key, spec in specs.items():
        name, singular, plural = rng.choice(spec.names)
        cols = [BuiltColumn("id", "pk")]
        for cs in spec.columns:
            if cs.optional and rng.random() < 0.2:
                continue
            cols.append(BuiltColumn(rng.choice(cs.names), cs.kind))
        for parent_key in spec.parents:
            parent = tables[parent_key]
            cols.append(BuiltColumn(f"{parent.name}_id", "fk", parent))
        table = BuiltTable(name, singular, plural, cols)
        n_rows = rng.randint(6, 10) if not spec.parents else rng.randint(12, 22)
        label_spec = next(cs for cs in spec.columns if cs.kind == "label") if any(
            cs.kind == "label" for cs in spec.columns) else None
        labels = rng.sample(label_spec.values, n_rows) if label_spec else []
        by_name = {n: cs for cs in spec.columns for n in cs.names}
        # children point at a subset of the parents, so "which X have no Y" has answers
        # each category column uses its own subset of the pool in this database
        categories = {c.name: rng.sample(by_name[c.name].values, rng.randint(3, len(by_name[c.name].values)))
                      for c in cols if c.kind == "text"}
        parent_pools = {c.name: rng.sample(c.parent.rows, max(1, len(c.parent.rows) - rng.randint(1, 2)))
                        for c in cols if c.kind == "fk"}
        for i in range(n_rows):
            row = {}
            for c in cols:
                if c.kind == "pk":
                    row[c.name] = i + 1
                elif c.kind == "fk":
                    row[c.name] = rng.choice(parent_pools[c.name])["id"]
                elif c.kind == "label":
                    row[c.name] = labels[i]
                elif c.kind == "text":
                    row[c.name] = rng.choice(categories[c.name])
                else:
                    row[c.name] = random_number(rng, by_name[c.name])
            table.rows.append(row)
        tables[key] = table
    return list(tables.values())


SQL_TYPES = {"pk": "INT", "fk": "INT", "label": "TEXT", "text": "TEXT", "int": "INT", "real": "REAL"}


def write_sqlite(tables: list[BuiltTable], path: Path) -> None:
    """Write the tables (schema with keys, then rows) to a fresh SQLite file at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    conn = sqlite3.connect(path)
    try:
        for t in tables:
            defs = []
            for c in t.columns:
                d = f"{c.name} {SQL_TYPES[c.kind]}" + (" PRIMARY KEY" if c.kind == "pk" else "")
                defs.append(d)
            for c in t.foreign_keys():
                defs.append(f"FOREIGN KEY ({c.name}) REFERENCES {c.parent.name}(id)")
            conn.execute(f"CREATE TABLE {t.name} ({', '.join(defs)})")
            names = [c.name for c in t.columns]
            conn.executemany(f"INSERT INTO {t.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                             [tuple(r[n] for n in names) for r in t.rows])
        conn.commit()
    finally:
        conn.close()


def spider_tables_entry(db_id: str, tables: list[BuiltTable]) -> dict:
    """The database's schema in Spider's tables.json format."""
    column_names, column_types, pks, fks = [[-1, "*"]], ["text"], [], []
    index = {}
    for ti, t in enumerate(tables):
        for c in t.columns:
            index[(t.name, c.name)] = len(column_names)
            column_names.append([ti, c.name])
            column_types.append("number" if c.kind in ("pk", "fk", "int", "real") else "text")
            if c.kind == "pk":
                pks.append(index[(t.name, c.name)])
    for t in tables:
        for c in t.foreign_keys():
            fks.append([index[(t.name, c.name)], index[(c.parent.name, "id")]])
    return {"db_id": db_id, "table_names_original": [t.name for t in tables],
            "table_names": [t.name.replace("_", " ") for t in tables],
            "column_names_original": column_names,
            "column_names": [[i, n.replace("_", " ")] for i, n in column_names],
            "column_types": column_types, "primary_keys": pks, "foreign_keys": fks}
