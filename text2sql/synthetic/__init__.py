"""The built-in synthetic text-to-SQL data: SQLite databases with varied schemas, and question/SQL pairs.

    python -m data.synthetic --out data/synthetic --seed 0

writes a Spider-format folder (so one loader, data/sources/spider.py, reads it and Spider alike):

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

The language is deliberately regular (column names read as words: `hire_year` -> "hire year", a small
value vocabulary): a model of a few million parameters trained for minutes on a CPU can learn it.
"""
from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# ----------------------------------------------------------------------------------------------------
# Value pools (small on purpose: a small vocabulary)

PEOPLE = ["Alice", "Bob", "Carla", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack", "Karen",
          "Leo", "Maria", "Nina", "Oscar", "Paul", "Quinn", "Rosa", "Sam", "Tina", "Umar", "Vera", "Walter",
          "Xena", "Yusuf", "Zoe", "Anna", "Ben", "Clara", "Dan", "Eva", "Felix", "Gina", "Hugo", "Ivan",
          "Julia", "Kevin", "Laura", "Mark", "Nora"]
CITIES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Tokyo", "Boston", "Denver", "Lima", "Oslo"]
COUNTRIES = ["France", "Spain", "Italy", "Japan", "Brazil", "Canada", "Egypt", "India", "Norway", "Peru"]
ADJECTIVES = ["Silent", "Golden", "Broken", "Hidden", "Bright", "Lost", "Frozen", "Wild", "Quiet", "Red",
              "Blue", "Dark", "Little", "Last", "Secret"]
NOUNS = ["River", "Moon", "City", "Garden", "Road", "Star", "Forest", "Dream", "Island", "Storm", "Bridge",
         "House", "Sky", "Song", "Winter"]
TITLES = [f"{a} {n}" for a in ADJECTIVES for n in NOUNS]


@dataclass
class ColumnSpec:
    names: list[str]           # name variants; a database picks one
    kind: str                  # "label" (unique text), "text" (category), "int", "real"
    values: object = None      # a list for label/text, (lo, hi, step) for numbers
    optional: bool = True      # may be left out of a database


@dataclass
class TableSpec:
    names: list[tuple[str, str, str]]  # (table name, singular noun, plural noun) variants
    columns: list[ColumnSpec]
    parents: list[str] = field(default_factory=list)  # key of the parent TableSpec for each foreign key


def C(names, kind, values=None, optional=True):
    return ColumnSpec([names] if isinstance(names, str) else list(names), kind, values, optional)


DOMAINS: dict[str, dict[str, TableSpec]] = {
    "company": {
        "department": TableSpec([("department", "department", "departments"), ("division", "division", "divisions")], [
            C("name", "label", ["Sales", "Research", "Finance", "Marketing", "Support", "Legal", "Design",
                                "Logistics", "Security", "Training"], optional=False),
            C(["city", "location"], "text", CITIES), C("budget", "int", (100, 900, 10)),
            C(["founded_year", "start_year"], "int", (1980, 2020, 1))]),
        "employee": TableSpec([("employee", "employee", "employees"), ("worker", "worker", "workers")], [
            C("name", "label", PEOPLE, optional=False), C("age", "int", (20, 65, 1)),
            C(["salary", "wage"], "int", (30, 150, 1)), C("hire_year", "int", (1995, 2024, 1)),
            C(["city", "home_city"], "text", CITIES)], ["department"]),
    },
    "school": {
        "teacher": TableSpec([("teacher", "teacher", "teachers"), ("instructor", "instructor", "instructors")], [
            C("name", "label", PEOPLE, optional=False),
            C("subject", "text", ["Math", "History", "Physics", "Music", "Art", "Biology"]),
            C("age", "int", (25, 65, 1)), C(["salary", "pay"], "int", (30, 90, 1))]),
        "student": TableSpec([("student", "student", "students"), ("pupil", "pupil", "pupils")], [
            C("name", "label", PEOPLE, optional=False), C("grade", "int", (1, 12, 1)),
            C("age", "int", (6, 18, 1)), C(["city", "hometown"], "text", CITIES),
            C(["score", "points"], "int", (40, 100, 1))], ["teacher"]),
    },
    "library": {
        "author": TableSpec([("author", "author", "authors"), ("writer", "writer", "writers")], [
            C("name", "label", PEOPLE, optional=False), C(["country", "nationality"], "text", COUNTRIES),
            C("birth_year", "int", (1900, 1990, 1))]),
        "book": TableSpec([("book", "book", "books"), ("novel", "novel", "novels")], [
            C("title", "label", TITLES, optional=False),
            C("genre", "text", ["Drama", "Mystery", "Fantasy", "Poetry", "Horror", "Romance"]),
            C(["pages", "page_count"], "int", (80, 900, 1)), C("price", "real", (5, 60, 0.5)),
            C(["publish_year", "year"], "int", (1950, 2024, 1))], ["author"]),
    },
    "music": {
        "artist": TableSpec([("artist", "artist", "artists"), ("singer", "singer", "singers")], [
            C("name", "label", PEOPLE, optional=False), C("country", "text", COUNTRIES),
            C("genre", "text", ["Rock", "Jazz", "Pop", "Blues", "Folk", "Metal"]),
            C("debut_year", "int", (1960, 2020, 1))]),
        "album": TableSpec([("album", "album", "albums"), ("record", "record", "records")], [
            C("title", "label", TITLES, optional=False), C(["release_year", "year"], "int", (1965, 2024, 1)),
            C(["sales", "copies_sold"], "int", (1, 500, 1)), C("rating", "int", (1, 10, 1))], ["artist"]),
    },
    "store": {
        "customer": TableSpec([("customer", "customer", "customers"), ("client", "client", "clients")], [
            C("name", "label", PEOPLE, optional=False), C("city", "text", CITIES), C("age", "int", (18, 80, 1))]),
        "product": TableSpec([("product", "product", "products"), ("item", "item", "items")], [
            C("name", "label", ["Lamp", "Chair", "Table", "Phone", "Camera", "Kettle", "Clock", "Radio", "Mirror",
                                "Pillow", "Blender", "Heater", "Fan", "Printer", "Speaker"], optional=False),
            C("category", "text", ["Home", "Office", "Kitchen", "Audio", "Garden"]),
            C("price", "real", (2, 400, 0.5)), C(["stock", "quantity_in_stock"], "int", (0, 300, 1))]),
        "purchase": TableSpec([("purchase", "purchase", "purchases"), ("sale", "sale", "sales")], [
            C("quantity", "int", (1, 20, 1), optional=False),
            C(["purchase_year", "year"], "int", (2015, 2024, 1))], ["customer", "product"]),
    },
    "sports": {
        "team": TableSpec([("team", "team", "teams"), ("club", "club", "clubs")], [
            C("name", "label", [f"{c} {a}" for c in CITIES for a in ["Lions", "Eagles", "Sharks", "Wolves"]],
              optional=False), C(["city", "home_city"], "text", CITIES),
            C("founded_year", "int", (1880, 2010, 1))]),
        "player": TableSpec([("player", "player", "players"), ("athlete", "athlete", "athletes")], [
            C("name", "label", PEOPLE, optional=False),
            C("position", "text", ["Goalkeeper", "Defender", "Midfielder", "Forward"]),
            C("age", "int", (17, 40, 1)), C(["goals", "points"], "int", (0, 40, 1)),
            C(["salary", "wage"], "int", (10, 300, 1))], ["team"]),
    },
    "hospital": {
        "doctor": TableSpec([("doctor", "doctor", "doctors"), ("physician", "physician", "physicians")], [
            C("name", "label", PEOPLE, optional=False),
            C("specialty", "text", ["Cardiology", "Surgery", "Pediatrics", "Neurology", "Oncology"]),
            C(["experience_years", "years_of_service"], "int", (1, 40, 1))]),
        "patient": TableSpec([("patient", "patient", "patients")], [
            C("name", "label", PEOPLE, optional=False), C("age", "int", (1, 95, 1)),
            C(["city", "hometown"], "text", CITIES), C("weight", "int", (3, 120, 1))], ["doctor"]),
    },
    "movies": {
        "director": TableSpec([("director", "director", "directors")], [
            C("name", "label", PEOPLE, optional=False), C(["country", "nationality"], "text", COUNTRIES),
            C("birth_year", "int", (1930, 1995, 1))]),
        "movie": TableSpec([("movie", "movie", "movies"), ("film", "film", "films")], [
            C("title", "label", TITLES, optional=False),
            C("genre", "text", ["Comedy", "Drama", "Action", "Horror", "Western", "Animation"]),
            C(["release_year", "year"], "int", (1960, 2024, 1)), C(["budget", "cost"], "int", (1, 250, 1)),
            C("rating", "int", (1, 10, 1))], ["director"]),
    },
    "travel": {
        "airline": TableSpec([("airline", "airline", "airlines"), ("carrier", "carrier", "carriers")], [
            C("name", "label", ["Skyway", "Aerolux", "Jetstar", "Blue Wings", "Polar Air", "Sun Express",
                                "Nordic Jet", "Cloud Line", "Swift Air", "Ocean Air"], optional=False),
            C("country", "text", COUNTRIES), C(["fleet_size", "planes"], "int", (5, 300, 1))]),
        "flight": TableSpec([("flight", "flight", "flights")], [
            C(["code", "flight_code"], "label", [f"FL{n}" for n in range(100, 200)], optional=False),
            C("origin", "text", CITIES), C("destination", "text", CITIES),
            C("distance", "int", (200, 9000, 10)), C("price", "int", (50, 1500, 1))], ["airline"]),
    },
    "zoo": {
        "keeper": TableSpec([("keeper", "keeper", "keepers"), ("caretaker", "caretaker", "caretakers")], [
            C("name", "label", PEOPLE, optional=False), C("age", "int", (20, 70, 1)),
            C(["salary", "wage"], "int", (20, 80, 1))]),
        "animal": TableSpec([("animal", "animal", "animals")], [
            C("name", "label", ["Rex", "Milo", "Luna", "Coco", "Kiwi", "Nala", "Simba", "Bubbles", "Ziggy",
                                "Pepper", "Shadow", "Mango", "Oreo", "Biscuit", "Dotty", "Rocky", "Peanut",
                                "Ginger", "Sunny", "Maple", "Olive", "Toby", "Bruno", "Daisy"], optional=False),
            C("species", "text", ["Lion", "Tiger", "Zebra", "Panda", "Koala", "Giraffe", "Penguin"]),
            C("age", "int", (1, 30, 1)), C("weight", "int", (5, 900, 1))], ["keeper"]),
    },
}

# ----------------------------------------------------------------------------------------------------
# A database instance


@dataclass
class Col:
    name: str
    kind: str  # pk, fk, label, text, int, real
    parent: "Tab | None" = None

    @property
    def words(self) -> str:  # how questions name the column
        return self.name.replace("_", " ")


@dataclass
class Tab:
    name: str
    singular: str
    plural: str
    columns: list[Col]
    rows: list[dict] = field(default_factory=list)

    def of_kind(self, *kinds) -> list[Col]:
        return [c for c in self.columns if c.kind in kinds]

    @property
    def label(self) -> Col | None:
        labels = self.of_kind("label")
        return labels[0] if labels else None

    def fks(self) -> list[Col]:
        return self.of_kind("fk")


def _value(rng: random.Random, spec: ColumnSpec):
    lo, hi, step = spec.values
    n = rng.randint(0, int(round((hi - lo) / step)))
    v = lo + n * step
    return round(v, 2) if spec.kind == "real" else int(v)


def build_database(domain: str, rng: random.Random) -> list[Tab]:
    """Pick table/column variants and fill rows; parents come before children."""
    specs = DOMAINS[domain]
    tabs: dict[str, Tab] = {}
    for key, spec in specs.items():
        name, singular, plural = rng.choice(spec.names)
        cols = [Col("id", "pk")]
        for cs in spec.columns:
            if cs.optional and rng.random() < 0.2:
                continue
            cols.append(Col(rng.choice(cs.names), cs.kind))
        for parent_key in spec.parents:
            parent = tabs[parent_key]
            cols.append(Col(f"{parent.name}_id", "fk", parent))
        tab = Tab(name, singular, plural, cols)
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
                    row[c.name] = _value(rng, by_name[c.name])
            tab.rows.append(row)
        tabs[key] = tab
    return list(tabs.values())


_SQL_TYPES = {"pk": "INT", "fk": "INT", "label": "TEXT", "text": "TEXT", "int": "INT", "real": "REAL"}


def write_sqlite(tabs: list[Tab], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    conn = sqlite3.connect(path)
    try:
        for t in tabs:
            defs = []
            for c in t.columns:
                d = f"{c.name} {_SQL_TYPES[c.kind]}" + (" PRIMARY KEY" if c.kind == "pk" else "")
                defs.append(d)
            for c in t.fks():
                defs.append(f"FOREIGN KEY ({c.name}) REFERENCES {c.parent.name}(id)")
            conn.execute(f"CREATE TABLE {t.name} ({', '.join(defs)})")
            names = [c.name for c in t.columns]
            conn.executemany(f"INSERT INTO {t.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                             [tuple(r[n] for n in names) for r in t.rows])
        conn.commit()
    finally:
        conn.close()


def spider_tables_entry(db_id: str, tabs: list[Tab]) -> dict:
    """The database's schema in Spider's tables.json format."""
    column_names, column_types, pks, fks = [[-1, "*"]], ["text"], [], []
    index = {}
    for ti, t in enumerate(tabs):
        for c in t.columns:
            index[(t.name, c.name)] = len(column_names)
            column_names.append([ti, c.name])
            column_types.append("number" if c.kind in ("pk", "fk", "int", "real") else "text")
            if c.kind == "pk":
                pks.append(index[(t.name, c.name)])
    for t in tabs:
        for c in t.fks():
            fks.append([index[(t.name, c.name)], index[(c.parent.name, "id")]])
    return {"db_id": db_id, "table_names_original": [t.name for t in tabs],
            "table_names": [t.name.replace("_", " ") for t in tabs],
            "column_names_original": column_names,
            "column_names": [[i, n.replace("_", " ")] for i, n in column_names],
            "column_types": column_types, "primary_keys": pks, "foreign_keys": fks}


# ----------------------------------------------------------------------------------------------------
# Questions: one function per SQL shape. Each returns (question, sql) or None when the database does
# not allow the shape; the caller executes the SQL and keeps it only if it returns rows.

GREATER = [">", ["greater than", "more than", "above", "over"]]
LESS = ["<", ["less than", "below", "under"]]
AT_LEAST = [">=", ["at least"]]
AT_MOST = ["<=", ["at most"]]
AGGREGATES = {"AVG": ["average", "mean"], "SUM": ["total"], "MIN": ["minimum", "smallest", "lowest"],
              "MAX": ["maximum", "largest", "highest"]}


def an(word: str) -> str:
    """'a worker', 'an instructor'."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _lit(v) -> str:
    return "'" + str(v).replace("'", "''") + "'" if isinstance(v, str) else repr(v)


class QuestionMaker:
    def __init__(self, tabs: list[Tab], rng: random.Random):
        self.tabs, self.rng = tabs, rng

    # small helpers -----------------------------------------------------------------------------------
    def pick(self, seq):
        return self.rng.choice(seq)

    def labelled(self) -> Tab | None:
        tabs = [t for t in self.tabs if t.label]
        return self.pick(tabs) if tabs else None

    def value(self, t: Tab, c: Col):
        return self.pick(t.rows)[c.name]

    def comparison(self, t: Tab, c: Col):
        op, words = self.pick([GREATER, GREATER, LESS, LESS, AT_LEAST, AT_MOST])
        return op, self.pick(words), self.value(t, c)

    def child_parent(self, child_label: bool = True):
        pairs = [(t, fk) for t in self.tabs for fk in t.fks() if fk.parent.label and (t.label or not child_label)]
        return self.pick(pairs) if pairs else (None, None)

    # shapes ------------------------------------------------------------------------------------------
    def select_one(self):
        t = self.pick(self.tabs)
        c = self.pick(t.of_kind("label", "text", "int", "real"))
        q = self.pick([f"List the {c.words} of all {t.plural}.", f"What is the {c.words} of each {t.singular}?",
                       f"Show the {c.words} of every {t.singular}."])
        return q, f"SELECT {c.name} FROM {t.name}"

    def select_two(self):
        t = self.labelled()
        c = self.pick(t.of_kind("text", "int", "real"))
        q = self.pick([f"Show the {t.label.words} and {c.words} of all {t.plural}.",
                       f"List the {t.label.words} and {c.words} of each {t.singular}."])
        return q, f"SELECT {t.label.name}, {c.name} FROM {t.name}"

    def where_eq(self):
        t = self.labelled()
        c = self.pick(t.of_kind("text"))
        v = self.value(t, c)
        q = self.pick([f"Which {t.plural} have {c.words} {v}?", f"List the {t.label.words} of {t.plural} whose "
                       f"{c.words} is {v}.", f"Find the {t.plural} with {c.words} {v}."])
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} = {_lit(v)}"

    def where_cmp(self):
        t = self.labelled()
        c = self.pick(t.of_kind("int", "real"))
        op, ow, v = self.comparison(t, c)
        q = self.pick([f"Which {t.plural} have {c.words} {ow} {v}?",
                       f"List the {t.label.words} of {t.plural} with {c.words} {ow} {v}.",
                       f"Find the {t.plural} whose {c.words} is {ow} {v}."])
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} {op} {_lit(v)}"

    def where_and_or(self):
        t = self.labelled()
        c, n = self.pick(t.of_kind("text")), self.pick(t.of_kind("int", "real"))
        v = self.value(t, c)
        op, ow, x = self.comparison(t, n)
        conj = self.pick(["and", "or"])
        q = self.pick([f"Which {t.plural} have {c.words} {v} {conj} {n.words} {ow} {x}?",
                       f"List the {t.label.words} of {t.plural} whose {c.words} is {v} {conj} whose "
                       f"{n.words} is {ow} {x}."])
        return q, (f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} = {_lit(v)} {conj.upper()} "
                   f"{n.name} {op} {_lit(x)}")

    def like(self):
        t = self.labelled()
        name = self.value(t, t.label)
        kind = self.pick(["start", "contain", "end"])
        if kind == "start":
            s = name[0]
            q = self.pick([f"Which {t.plural} have {an(t.label.words)} starting with {s}?",
                           f"List the {t.plural} whose {t.label.words} begins with {s}."])
            pattern = f"{s}%"
        elif kind == "end":
            s = name[-2:]
            q = self.pick([f"Which {t.plural} have {an(t.label.words)} ending with {s}?",
                           f"List the {t.plural} whose {t.label.words} ends with {s}."])
            pattern = f"%{s}"
        else:
            i = self.rng.randint(0, max(0, len(name) - 3))
            s = name[i:i + 3].strip()
            if len(s) < 2:
                return None
            q = self.pick([f"Which {t.plural} have {an(t.label.words)} containing {s}?",
                           f"List the {t.plural} whose {t.label.words} contains {s}."])
            pattern = f"%{s}%"
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {t.label.name} LIKE {_lit(pattern)}"

    def between(self):
        t = self.labelled()
        c = self.pick(t.of_kind("int", "real"))
        values = sorted({r[c.name] for r in t.rows})
        if len(values) < 2:
            return None
        a, b = sorted(self.rng.sample(values, 2))
        q = self.pick([f"Which {t.plural} have {c.words} between {a} and {b}?",
                       f"List the {t.label.words} of {t.plural} whose {c.words} is between {a} and {b}."])
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} BETWEEN {_lit(a)} AND {_lit(b)}"

    def in_list(self):
        t = self.labelled()
        c = self.pick(t.of_kind("text"))
        values = sorted({r[c.name] for r in t.rows})
        if len(values) < 3:
            return None
        vs = self.rng.sample(values, self.pick([2, 3]))
        words = ", ".join(vs[:-1]) + f" or {vs[-1]}"
        q = self.pick([f"Which {t.plural} have {c.words} {words}?",
                       f"List the {t.label.words} of {t.plural} whose {c.words} is one of {words}."])
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} IN ({', '.join(_lit(v) for v in vs)})"

    def order_by(self):
        t = self.labelled()
        c = self.pick(t.of_kind("int", "real"))
        desc = self.pick([True, False])
        if desc:
            q = self.pick([f"List the {t.label.words} of all {t.plural} ordered by {c.words} descending.",
                           f"Sort the {t.plural} by {c.words} from highest to lowest."])
        else:
            q = self.pick([f"List the {t.label.words} of all {t.plural} ordered by {c.words}.",
                           f"Sort the {t.plural} by {c.words} from lowest to highest."])
        return q, f"SELECT {t.label.name} FROM {t.name} ORDER BY {c.name}" + (" DESC" if desc else "")

    def top_k(self):
        t = self.labelled()
        c = self.pick(t.of_kind("int", "real"))
        desc = self.pick([True, False])
        most = "highest" if desc else "lowest"
        k = self.pick([1, 1, 2, 3])
        if k == 1:
            q = self.pick([f"Which {t.singular} has the {most} {c.words}?",
                           f"What is the {t.label.words} of the {t.singular} with the {most} {c.words}?"])
        else:
            q = self.pick([f"List the {t.label.words} of the {k} {t.plural} with the {most} {c.words}.",
                           f"Which {k} {t.plural} have the {most} {c.words}?"])
        order = " DESC" if desc else ""
        # no tie at the cut-off: the (k+1)-th value must differ from the k-th
        values = sorted((r[c.name] for r in t.rows), reverse=desc)
        if len(values) > k and values[k - 1] == values[k]:
            return None
        return q, f"SELECT {t.label.name} FROM {t.name} ORDER BY {c.name}{order} LIMIT {k}"

    def distinct(self):
        t = self.pick(self.tabs)
        cols = t.of_kind("text")
        if not cols:
            return None
        c = self.pick(cols)
        q = self.pick([f"List the distinct {c.words} values of all {t.plural}.",
                       f"What are the different {c.words} values of the {t.plural}?"])
        return q, f"SELECT DISTINCT {c.name} FROM {t.name}"

    def count(self):
        t = self.pick(self.tabs)
        kind = self.pick(["all", "eq", "cmp"])
        if kind == "all":
            return self.pick([f"How many {t.plural} are there?", f"Count the {t.plural}."]), \
                f"SELECT COUNT(*) FROM {t.name}"
        if kind == "eq" and t.of_kind("text"):
            c = self.pick(t.of_kind("text"))
            v = self.value(t, c)
            return self.pick([f"How many {t.plural} have {c.words} {v}?",
                              f"Count the {t.plural} whose {c.words} is {v}."]), \
                f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} = {_lit(v)}"
        c = self.pick(t.of_kind("int", "real"))
        op, ow, v = self.comparison(t, c)
        return self.pick([f"How many {t.plural} have {c.words} {ow} {v}?",
                          f"Count the {t.plural} whose {c.words} is {ow} {v}."]), \
            f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} {op} {_lit(v)}"

    def aggregate(self):
        t = self.pick(self.tabs)
        n = self.pick(t.of_kind("int", "real"))
        fn = self.pick(list(AGGREGATES))
        fw = self.pick(AGGREGATES[fn])
        texts = t.of_kind("text")
        if texts and self.pick([True, False]):
            c = self.pick(texts)
            v = self.value(t, c)
            q = self.pick([f"What is the {fw} {n.words} of {t.plural} whose {c.words} is {v}?",
                           f"Find the {fw} {n.words} of the {t.plural} with {c.words} {v}."])
            return q, f"SELECT {fn}({n.name}) FROM {t.name} WHERE {c.name} = {_lit(v)}"
        q = self.pick([f"What is the {fw} {n.words} of all {t.plural}?", f"Find the {fw} {n.words} of the {t.plural}."])
        return q, f"SELECT {fn}({n.name}) FROM {t.name}"

    def group_by(self):
        t = self.pick(self.tabs)
        texts = t.of_kind("text")
        if not texts:
            return None
        c = self.pick(texts)
        if self.pick([True, False]):
            q = self.pick([f"How many {t.plural} are there for each {c.words}?",
                           f"For each {c.words}, count the {t.plural}."])
            return q, f"SELECT {c.name}, COUNT(*) FROM {t.name} GROUP BY {c.name}"
        n = self.pick(t.of_kind("int", "real"))
        fn = self.pick(list(AGGREGATES))
        fw = self.pick(AGGREGATES[fn])
        q = self.pick([f"What is the {fw} {n.words} of the {t.plural} for each {c.words}?",
                       f"For each {c.words}, show the {fw} {n.words} of the {t.plural}."])
        return q, f"SELECT {c.name}, {fn}({n.name}) FROM {t.name} GROUP BY {c.name}"

    def having(self):
        t = self.pick(self.tabs)
        texts = t.of_kind("text")
        if not texts:
            return None
        c = self.pick(texts)
        counts = sorted(Counter(r[c.name] for r in t.rows).values())
        op, ow = self.pick([(">", "more than"), (">=", "at least")])
        k = self.pick(counts[:-1] or counts)
        q = self.pick([f"Which {c.words} values have {ow} {k} {t.plural}?",
                       f"List the {c.words} values that have {ow} {k} {t.plural}."])
        return q, f"SELECT {c.name} FROM {t.name} GROUP BY {c.name} HAVING COUNT(*) {op} {k}"

    def join(self):
        kind = self.pick(["pair", "where", "where", "group"])
        t, fk = self.child_parent(child_label=kind != "group")
        if t is None:
            return None
        p = fk.parent
        on = f"FROM {t.name} AS T1 JOIN {p.name} AS T2 ON T1.{fk.name} = T2.id"
        if kind == "pair":
            q = self.pick([f"Show the {t.label.words} of each {t.singular} and the {p.label.words} of its {p.singular}.",
                           f"List every {t.singular} {t.label.words} together with its {p.singular} {p.label.words}."])
            return q, f"SELECT T1.{t.label.name}, T2.{p.label.name} {on}"
        if kind == "where":
            c = self.pick(p.of_kind("label", "text"))
            v = self.value(p, c)
            q = self.pick([f"Which {t.plural} belong to {an(p.singular)} whose {c.words} is {v}?",
                           f"List the {t.label.words} of the {t.plural} whose {p.singular} has {c.words} {v}."])
            return q, f"SELECT T1.{t.label.name} {on} WHERE T2.{c.name} = {_lit(v)}"
        q = self.pick([f"How many {t.plural} does each {p.singular} have?",
                       f"For each {p.singular}, show its {p.label.words} and the number of {t.plural}."])
        return q, f"SELECT T2.{p.label.name}, COUNT(*) {on} GROUP BY T2.{p.label.name}"

    def nested(self):
        kind = self.pick(["avg", "not_in", "in"])
        if kind == "avg":
            t = self.labelled()
            n = self.pick(t.of_kind("int", "real"))
            above = self.pick([True, False])
            op, w = (">", "above") if above else ("<", "below")
            q = self.pick([f"Which {t.plural} have {n.words} {w} the average?",
                           f"List the {t.label.words} of the {t.plural} whose {n.words} is {w} the average {n.words}."])
            return q, f"SELECT {t.label.name} FROM {t.name} WHERE {n.name} {op} (SELECT AVG({n.name}) FROM {t.name})"
        t, fk = self.child_parent(child_label=False)
        if t is None:
            return None
        p = fk.parent
        if kind == "not_in":
            q = self.pick([f"Which {p.plural} have no {t.plural}?",
                           f"List the {p.label.words} of the {p.plural} without any {t.singular}."])
            return q, f"SELECT {p.label.name} FROM {p.name} WHERE id NOT IN (SELECT {fk.name} FROM {t.name})"
        n = self.pick(t.of_kind("int", "real"))
        op, ow, x = self.comparison(t, n)
        q = self.pick([f"Which {p.plural} have {an(t.singular)} with {n.words} {ow} {x}?",
                       f"List the {p.label.words} of the {p.plural} that have {an(t.singular)} whose {n.words} is {ow} {x}."])
        return q, f"SELECT {p.label.name} FROM {p.name} WHERE id IN (SELECT {fk.name} FROM {t.name} WHERE {n.name} {op} {_lit(x)})"

    def set_op(self):
        t = self.pick([t for t in self.tabs if t.of_kind("text")] or [None])
        if t is None:
            return None
        c = self.pick(t.of_kind("text"))
        n = self.pick(t.of_kind("int", "real"))
        kind = self.pick(["UNION", "INTERSECT", "EXCEPT"])
        op1, ow1, x1 = self.comparison(t, n)
        if kind == "EXCEPT":
            q = self.pick([f"Which {c.words} values have no {t.plural} with {n.words} {ow1} {x1}?",
                           f"List the {c.words} values of the {t.plural}, except those with {an(t.singular)} whose "
                           f"{n.words} is {ow1} {x1}."])
            return q, f"SELECT {c.name} FROM {t.name} EXCEPT SELECT {c.name} FROM {t.name} WHERE {n.name} {op1} {_lit(x1)}"
        op2, ow2, x2 = self.comparison(t, n)
        if kind == "INTERSECT":
            q = self.pick([f"Which {c.words} values have both {an(t.singular)} with {n.words} {ow1} {x1} and "
                           f"{an(t.singular)} with {n.words} {ow2} {x2}?"])
        else:
            q = self.pick([f"Which {c.words} values have {an(t.singular)} with {n.words} {ow1} {x1} or "
                           f"{an(t.singular)} with {n.words} {ow2} {x2}?"])
        return q, (f"SELECT {c.name} FROM {t.name} WHERE {n.name} {op1} {_lit(x1)} {kind} "
                   f"SELECT {c.name} FROM {t.name} WHERE {n.name} {op2} {_lit(x2)}")


# (shape name, method, weight): simple shapes are more frequent, as in real workloads
SHAPES = [("select", "select_one", 2), ("select", "select_two", 2), ("where", "where_eq", 3),
          ("where", "where_cmp", 3), ("where_and_or", "where_and_or", 2), ("like", "like", 2),
          ("between", "between", 2), ("in", "in_list", 2), ("order_by", "order_by", 2), ("limit", "top_k", 2),
          ("distinct", "distinct", 2), ("aggregate", "count", 3), ("aggregate", "aggregate", 3),
          ("group_by", "group_by", 3), ("having", "having", 2), ("join", "join", 4), ("nested", "nested", 3),
          ("set_op", "set_op", 2)]


def generate_questions(tabs: list[Tab], db_path: Path, n: int, rng: random.Random,
                       max_tries_factor: int = 20) -> list[dict]:
    """`n` distinct (question, SQL, shape) records whose SQL runs on db_path and returns rows."""
    maker = QuestionMaker(tabs, rng)
    names, methods, weights = zip(*SHAPES)
    conn = sqlite3.connect(db_path)
    out, seen = [], set()
    try:
        for _ in range(n * max_tries_factor):
            if len(out) >= n:
                break
            i = rng.choices(range(len(SHAPES)), weights)[0]
            try:
                made = getattr(maker, methods[i])()
            except (IndexError, AttributeError):  # the database lacks a needed column kind
                made = None
            if made is None or made[0] in seen:
                continue
            question, sql = made
            try:
                rows = conn.execute(sql).fetchall()
            except sqlite3.Error as e:  # a generator bug: fail loudly, never write broken gold SQL
                raise RuntimeError(f"generated SQL does not execute: {sql!r}: {e}") from e
            if not rows or all(v is None for r in rows for v in r):
                continue
            seen.add(question)
            out.append({"question": question, "query": sql, "shape": names[i]})
    finally:
        conn.close()
    return out


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
        tabs = build_database(domain, rng)
        db_path = out / "database" / db_id / f"{db_id}.sqlite"
        write_sqlite(tabs, db_path)
        tables.append(spider_tables_entry(db_id, tabs))
        n = train_per_db if split == "train" else eval_per_db
        for rec in generate_questions(tabs, db_path, n, rng):
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
    ap = argparse.ArgumentParser(prog="python -m data.synthetic", description=__doc__.split("\n\n")[0],
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


if __name__ == "__main__":
    sys.exit(main())
