"""One synthetic database: compose a theme's entities into tables, name them in a style, fill the rows.

`build_database` turns a theme of vocabulary.py into `BuiltTable`s (identifiers in one naming style, the
readable words questions use, the rows, all in memory); `write_sqlite` writes them to a .sqlite file and
`spider_tables_entry` describes them in Spider's tables.json format (with the readable names, as Spider
has). All randomness comes from the `random.Random` passed in, in a fixed order.
"""
from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from text2sql.synthetic.vocabulary import (LABEL_POOLS, THEMES, Attribute, Entity, attributes_for, invented_attributes,
                                           invented_entities)


@dataclass
class BuiltColumn:
    name: str        # the identifier in this database's naming style, e.g. "foundedYear"
    kind: str        # pk, fk, label, text, int, real
    words: str = ""  # how questions name the column, e.g. "founded year"
    parent: "BuiltTable | None" = None  # the table a foreign key points at
    attribute: Attribute | None = None  # where an attribute's values come from


@dataclass
class BuiltTable:
    name: str       # the identifier, e.g. "ships" or "Ship"
    singular: str   # how questions name one row: "ship"
    plural: str     # ... and several: "ships"
    columns: list[BuiltColumn]
    rows: list[dict] = field(default_factory=list)

    def of_kind(self, *kinds) -> list[BuiltColumn]:
        return [c for c in self.columns if c.kind in kinds]

    @property
    def pk(self) -> BuiltColumn:
        return self.of_kind("pk")[0]

    @property
    def label(self) -> BuiltColumn | None:
        """The column that names a row (a person's name, a book's title), if the table has one."""
        labels = self.of_kind("label")
        return labels[0] if labels else None

    def foreign_keys(self) -> list[BuiltColumn]:
        return self.of_kind("fk")


# ----------------------------------------------------------------------------------------------------
# Naming styles: the same words become different identifiers in different databases, as in real schemas

STYLES = ("snake", "snake", "camel", "pascal", "plural", "abbreviated")
ABBREVIATIONS = {"number": "num", "quantity": "qty", "temperature": "temp", "experience": "exp",
                 "population": "pop", "calories": "cal", "distance": "dist", "capacity": "cap",
                 "duration": "dur", "enrollment": "enrl", "manufacturer": "mfr", "laboratory": "lab",
                 "professor": "prof", "discount": "disc", "altitude": "alt", "founded": "fnd", "release": "rel",
                 "birth": "birth", "department": "dept", "observatory": "obs", "identifier": "id",
                 "tickets": "tkts", "balance": "bal", "priority": "prio", "ranking": "rnk", "volume": "vol"}


def identifier(words: list[str], style: str, table: bool = False) -> str:
    """['founded', 'year'] -> founded_year | foundedYear | FoundedYear | fnd_year, by style."""
    if style == "abbreviated":
        words = [ABBREVIATIONS.get(w, w) for w in words]
    if style == "camel" and not table:
        return words[0] + "".join(w.capitalize() for w in words[1:])
    if style == "pascal" or (style == "camel" and table):
        return "".join(w.capitalize() for w in words)
    return "_".join(words)


def table_identifier(entity: Entity, style: str) -> str:
    return identifier((entity.plural if style == "plural" else entity.singular).split("_"), style, table=True)


# ----------------------------------------------------------------------------------------------------
# Rows


def random_number(rng: random.Random, attribute: Attribute):
    """A value of a numeric column: a multiple of `step` above `lo`, at most `hi`."""
    lo, hi, step = attribute.values
    n = rng.randint(0, int(round((hi - lo) / step)))
    v = lo + n * step
    return round(v, 2) if attribute.kind == "real" else int(v)


def label_values(entity: Entity, n: int, rng: random.Random) -> list[str]:
    """n distinct labels for an entity's rows: names, titles, place names or codes like 'SH-104'."""
    if entity.label_kind == "code":
        prefix = "".join(w[0] for w in entity.singular.split("_")).upper() + entity.singular[1].upper()
        return [f"{prefix}-{k}" for k in rng.sample(range(100, 1000), n)]
    return rng.sample(LABEL_POOLS[entity.label_kind], n)


def build_database(theme: str, rng: random.Random, held_out: bool = False, invented: bool = False) -> list[BuiltTable]:
    """Two or three of the theme's entities as tables (parents before children), each with a key, a label
    and a few attributes of the split's attribute list, in one naming style; rows filled. `invented`
    names the tables and attributes with made-up words instead (vocabulary.py)."""
    style = rng.choice(STYLES)
    attributes = invented_attributes(rng, 12) if invented else attributes_for(held_out)
    numeric = [a for a in attributes if a.kind in ("int", "real")]
    textual = [a for a in attributes if a.kind == "text"]
    if not numeric or not textual:  # made-up attributes happened to miss a kind: add one of each
        attributes += [a for a in attributes_for(held_out) if a.kind in ("int", "text")][:2]
        numeric = [a for a in attributes if a.kind in ("int", "real")]
        textual = [a for a in attributes if a.kind == "text"]
    n_tables = rng.choice([2, 2, 3])
    entities = invented_entities(rng, n_tables) if invented else rng.sample(THEMES[theme], n_tables)
    parents = [None, 0] + ([rng.choice([0, 1])] if len(entities) == 3 else [])  # index of each table's parent
    tables: list[BuiltTable] = []
    for i, entity in enumerate(entities):
        words = entity.singular.split("_")
        cols = [BuiltColumn(identifier(words + ["id"], style), "pk", " ".join(words + ["id"])),
                BuiltColumn(identifier(words + [entity.label_word], style), "label", entity.label_word)]
        chosen = [rng.choice(numeric), rng.choice(textual)]
        chosen += [a for a in rng.sample(attributes, rng.randint(0, 2)) if a not in chosen]
        rng.shuffle(chosen)
        for a in chosen:
            cols.append(BuiltColumn(identifier(a.name.split("_"), style), a.kind, a.name.replace("_", " "),
                                    attribute=a))
        if parents[i] is not None:
            parent = tables[parents[i]]
            cols.append(BuiltColumn(parent.pk.name, "fk", parent.pk.words, parent))
        table = BuiltTable(table_identifier(entity, style), entity.singular.replace("_", " "),
                           entity.plural.replace("_", " "), cols)
        n_rows = rng.randint(6, 10) if parents[i] is None else rng.randint(12, 22)
        labels = label_values(entity, n_rows, rng)
        # each category column uses its own subset of the pool in this database
        categories = {c.name: rng.sample(c.attribute.values, rng.randint(3, len(c.attribute.values)))
                      for c in cols if c.kind == "text"}
        # children point at a subset of the parents, so "which X have no Y" has answers
        parent_pools = {c.name: rng.sample(c.parent.rows, max(1, len(c.parent.rows) - rng.randint(1, 2)))
                        for c in cols if c.kind == "fk"}
        for r in range(n_rows):
            row = {}
            for c in cols:
                if c.kind == "pk":
                    row[c.name] = r + 1
                elif c.kind == "fk":
                    row[c.name] = rng.choice(parent_pools[c.name])[c.parent.pk.name]
                elif c.kind == "label":
                    row[c.name] = labels[r]
                elif c.kind == "text":
                    row[c.name] = rng.choice(categories[c.name])
                else:
                    row[c.name] = random_number(rng, c.attribute)
            table.rows.append(row)
        tables.append(table)
    return tables


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
                defs.append(f"FOREIGN KEY ({c.name}) REFERENCES {c.parent.name}({c.parent.pk.name})")
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
            fks.append([index[(t.name, c.name)], index[(c.parent.name, c.parent.pk.name)]])
    return {"db_id": db_id, "table_names_original": [t.name for t in tables],
            "table_names": [t.singular for t in tables],
            "column_names_original": column_names,
            "column_names": [[-1, "*"]] + [[ti, c.words] for ti, t in enumerate(tables) for c in t.columns],
            "column_types": column_types, "primary_keys": pks, "foreign_keys": fks}
