"""Questions over ANY SQLite database: the synthetic question maker pointed at a real file.

    python -m text2sql.synthetic.from_sqlite --db shop.sqlite [--db g.sqlite ...] [--per-db 200] [--out q.jsonl]
    python -m text2sql.synthetic.from_sqlite --spider-dir ../shared/data/spider    # every Spider TRAIN database

prints how many (question, SQL) pairs each database gives (and why a database gives none); --out writes
them as JSONL records {question, sql, db, db_id, shape} that `--source jsonl` reads. To train on them use
`python -m text2sql.prepare --source sqlite --db shop.sqlite --out DIR` (text2sql/sources/sqlite.py).

How a database becomes `BuiltTable`s (the objects the synthetic generator builds, so every SQL shape and
every wording of questions.py applies):
  rows        at most MAX_ROWS rows of each table are read (values for questions come from them)
  roles       pk     the table's single declared primary key (else the column other tables' keys point at)
              fk     a column whose foreign key points at another table's key column (joins come from these)
              label  the column that names a row: the first text column whose name says name or title,
                     else the first text column with (nearly) all values distinct, else a text primary key
              text   other short text columns (values in questions: "whose city is Paris")
              int    numeric columns with integer values, real: with fractional ones
              other  never asked about: id-like names (id, code, key, ...), dates, long or mixed values,
                     columns with no values, composite keys
  nouns       identifiers read as words (camelCase, PascalCase and snake_case split, a few abbreviations
              spelled out: fname -> first name), the table's last word in the singular and the plural;
              a column named after its table loses the table's words (singer_name in singer -> "name")
  SQL         identifiers that are not plain words (spaces, keywords) are double-quoted

Every pair is executed on the database (read-only) and kept only if it returns rows; a query on a big
table that runs too long is dropped; ORDER BY / LIMIT questions are kept only when the order column has
no NULL and, with LIMIT, no tie at the cut-off.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import sqlite3
import sys
from collections import Counter
from pathlib import Path

from text2sql.linking import identifier_words
from text2sql.schema import Schema, compact_type, read_schema
from text2sql.synthetic.database import BuiltColumn, BuiltTable
from text2sql.synthetic.questions import generate_questions

MAX_ROWS = 1000            # rows read per table
MAX_TEXT_CHARS = 40        # a text column whose values are longer on average is free text, not asked about
MAX_QUERY_STEPS = 20_000_000  # SQLite VM steps one generated query may take
ID_WORDS = {"id", "ids", "key", "code", "uuid", "guid", "pk", "fk"}
NAME_WORDS = {"name", "title"}
ABBREVIATIONS = {"fname": "first name", "lname": "last name", "dob": "date of birth", "qty": "quantity",
                 "amt": "amount", "addr": "address", "num": "number", "no": "number", "yr": "year",
                 "dept": "department", "emp": "employee", "stu": "student", "prof": "professor",
                 "mgr": "manager", "cust": "customer", "avg": "average", "pct": "percent", "tel": "telephone",
                 "loc": "location", "cnt": "count", "org": "organization", "info": "information",
                 "temp": "temperature", "dist": "distance", "cap": "capacity", "dur": "duration",
                 "enrl": "enrollment", "mfr": "manufacturer", "disc": "discount", "alt": "altitude",
                 "rel": "release", "tkts": "tickets", "bal": "balance", "prio": "priority", "rnk": "ranking",
                 "vol": "volume", "pop": "population", "cal": "calories", "exp": "experience", "tot": "total",
                 "hr": "hour", "hrs": "hours", "cred": "credits", "descr": "description", "crs": "course",
                 "init": "initial"}
NOT_IDS = {"paid", "said", "valid", "solid", "rapid", "humid", "liquid", "avoid", "void", "acid", "grid", "bid"}
PREPOSITIONS = {"in", "of", "by", "to", "for", "on", "at", "with", "from"}
UNCOUNTABLE = {"staff", "data", "information", "equipment", "news", "series", "species", "music", "media",
               "personnel", "software", "aircraft", "sheep", "fish", "deer", "furniture", "feedback"}
IRREGULAR = {"person": "people", "man": "men", "woman": "women", "child": "children", "mouse": "mice",
             "foot": "feet", "tooth": "teeth", "goose": "geese", "datum": "data", "medium": "media",
             "criterion": "criteria", "phenomenon": "phenomena", "analysis": "analyses", "index": "indices"}
SINGULAR_OF = {v: k for k, v in IRREGULAR.items()}
IE_NOUNS = {"movie", "cookie", "calorie", "rookie", "genie", "prairie", "selfie", "zombie", "tie", "pie", "lie"}
SQL_KEYWORDS = set("""ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE BEGIN
BETWEEN BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE CROSS CURRENT CURRENT_DATE
CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT DEFERRABLE DEFERRED DELETE DESC DETACH DISTINCT DO DROP EACH ELSE
END ESCAPE EXCEPT EXCLUDE EXCLUSIVE EXISTS EXPLAIN FAIL FILTER FIRST FOLLOWING FOR FOREIGN FROM FULL GENERATED GLOB
GROUP GROUPS HAVING IF IGNORE IMMEDIATE IN INDEX INDEXED INITIALLY INNER INSERT INSTEAD INTERSECT INTO IS ISNULL
JOIN KEY LAST LEFT LIKE LIMIT MATCH MATERIALIZED NATURAL NO NOT NOTHING NOTNULL NULL NULLS OF OFFSET ON OR ORDER
OTHERS OUTER OVER PARTITION PLAN PRAGMA PRECEDING PRIMARY QUERY RAISE RANGE RECURSIVE REFERENCES REGEXP REINDEX
RELEASE RENAME REPLACE RESTRICT RETURNING RIGHT ROLLBACK ROW ROWS SAVEPOINT SELECT SET TABLE TEMP TEMPORARY THEN
TIES TO TRANSACTION TRIGGER UNBOUNDED UNION UNIQUE UPDATE USING VACUUM VALUES VIEW VIRTUAL WHEN WHERE WINDOW WITH
WITHOUT T1 T2""".split())


# ----------------------------------------------------------------------------------------------------
# Nouns from identifiers


def singular_word(w: str) -> str:
    if w in UNCOUNTABLE or w in IRREGULAR or w in PREPOSITIONS:
        return w
    if w in SINGULAR_OF:
        return SINGULAR_OF[w]
    if w.endswith("ies") and len(w) > 4:
        return w[:-1] if w[:-1] in IE_NOUNS else w[:-3] + "y"
    if w.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3:
        return w[:-1]
    return w


def plural_word(w: str) -> str:
    if w in UNCOUNTABLE or w in PREPOSITIONS:
        return w
    if w in IRREGULAR:
        return IRREGULAR[w]
    if w.endswith("y") and w[-2:-1] not in "aeiou":
        return w[:-1] + "ies"
    if w.endswith("is") and len(w) > 4:
        return w[:-2] + "es"
    return w + ("es" if w.endswith(("s", "x", "z", "ch", "sh")) else "s")


def readable_words(name: str) -> list[str]:
    """'StuID' -> ['stu', 'id']; 'LName' -> ['last', 'name']; 'Song_release_year' -> ['song', 'release', 'year']."""
    words = []
    for w in identifier_words(name):
        words += ABBREVIATIONS.get(w, w).split()
    return words or [name.lower()]


def table_nouns(name: str) -> tuple[list[str], str, str]:
    """(words with the last one singular, singular noun, plural noun) of a table identifier."""
    words = readable_words(name)
    words = words[:-1] + [singular_word(words[-1])]
    return words, " ".join(words), " ".join(words[:-1] + [plural_word(words[-1])])


def column_words(name: str, table_words: list[str]) -> list[str]:
    """A column's words, without its table's words in front ('singer_name' in singer -> ['name'])."""
    words = readable_words(name)
    n = len(table_words)
    if len(words) > n and [singular_word(w) for w in words[:n]] == table_words:
        return words[n:]
    return words


def is_id_like(words: list[str]) -> bool:
    """Words of a key or code column: 'id', 'code', 'key', ... or a short word ending in id ('stuid', 'aid')."""
    last = words[-1] if words else ""
    return bool(ID_WORDS & set(words)) or (last.endswith("id") and len(last) <= 6 and last not in NOT_IDS)


def sql_identifier(name: str) -> str:
    """The identifier as SQL may write it: bare when it is a plain word, else double-quoted."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name.upper() not in SQL_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


# ----------------------------------------------------------------------------------------------------
# Column roles


def value_kind(values: list) -> str | None:
    """int, real or text when every non-NULL value is of that kind (int counts as real), else None."""
    if not values:
        return None
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "real"
    if all(isinstance(v, str) for v in values):
        return "text"
    return None


def is_free_text(values: list[str]) -> bool:
    """Long or multi-line values (descriptions, notes): not asked about."""
    return sum(len(v) for v in values) / len(values) > MAX_TEXT_CHARS or any("\n" in v for v in values)


def read_tables(db_path: str | Path, max_rows: int = MAX_ROWS, schema: Schema | None = None) -> list[BuiltTable]:
    """The database's non-empty tables as BuiltTables with column roles, nouns and up to max_rows rows each.
    Raises ValueError for a file that is not a SQLite database or has no tables."""
    path = Path(db_path)
    try:
        schema = schema or read_schema(path)
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None
    if not schema.tables:
        raise ValueError(f"{path} has no tables")
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
    try:
        raw_rows = {}
        for t in schema.tables:
            cols = ", ".join(sql_identifier(c.name) for c in t.columns)
            try:
                raw_rows[t.name] = conn.execute(f"SELECT {cols} FROM {sql_identifier(t.name)} LIMIT {int(max_rows)}"
                                                ).fetchall()
            except sqlite3.Error:  # e.g. a virtual table whose module is missing
                raw_rows[t.name] = []
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{path} is not a readable SQLite database: {e}") from None
    finally:
        conn.close()
    tables = [t for t in schema.tables if raw_rows[t.name]]
    names = {t.name.lower(): t for t in tables}
    # the key column of each table: its single declared primary key, else the one column others point at
    key_of: dict[str, str] = {}
    for t in tables:
        pks = [c.name for c in t.columns if c.primary_key]
        if len(pks) == 1:
            key_of[t.name] = pks[0]
    for t in tables:
        for c in t.columns:
            if c.references and c.references[0].lower() in names:
                parent = names[c.references[0].lower()]
                index = next((i for i, pc in enumerate(parent.columns) if pc.name == c.references[1]), None)
                if parent.name not in key_of and index is not None:
                    values = [r[index] for r in raw_rows[parent.name]]
                    if None not in values and len(set(values)) == len(values):  # a key only if unique
                        key_of[parent.name] = c.references[1]
    built: dict[str, BuiltTable] = {}
    fk_targets: list[tuple[BuiltColumn, str]] = []
    for t in tables:
        twords, singular, plural = table_nouns(t.name)
        rows = raw_rows[t.name]
        columns: list[BuiltColumn] = []
        texts: list[tuple[BuiltColumn, list]] = []
        for i, c in enumerate(t.columns):
            words = column_words(c.name, twords)
            values = [r[i] for r in rows if r[i] is not None]
            col = BuiltColumn(sql_identifier(c.name), "other", " ".join(words))
            kind = value_kind(values)
            ref = c.references
            if key_of.get(t.name) == c.name:
                col.kind = "pk"
            elif ref and ref[0].lower() in names and names[ref[0].lower()].name != t.name:
                fk_targets.append((col, names[ref[0].lower()].name))
                col.kind = "fk" if key_of.get(names[ref[0].lower()].name) == ref[1] else "other"
            elif c.primary_key or is_id_like(words) or compact_type(c.type) == "time" or kind is None:
                col.kind = "other"
            elif kind in ("int", "real"):
                col.kind = kind if len(set(values)) >= 2 else "other"
            elif not is_free_text(values):
                col.kind = "text"
                texts.append((col, values))
            columns.append(col)
        # the label: a name-like text column, else a (nearly) unique one, else a text primary key
        label = next((c for c, v in texts if NAME_WORDS & set(c.words.split()) and len(set(v)) >= 0.5 * len(v)),
                     None)
        if label is None:
            label = next((c for c, v in texts if len(v) >= 2 and len(set(v)) >= 0.9 * len(v)
                          and len(v) >= 0.8 * len(rows)), None)
        if label is not None:
            label.kind = "label"
        else:
            pk_index = next((i for i, c in enumerate(columns) if c.kind == "pk"), None)
            if pk_index is not None:
                pk_values = [r[pk_index] for r in rows if r[pk_index] is not None]
                if (value_kind(pk_values) == "text" and not is_free_text(pk_values)
                        and not is_id_like(columns[pk_index].words.split())):
                    pk = columns[pk_index]  # the same SQL column, seen twice: as the key and as the label
                    columns.append(BuiltColumn(pk.name, "label", pk.words))
        table = BuiltTable(sql_identifier(t.name), singular, plural, columns)
        table.rows = [{col.name: v for col, v in zip(columns, r)} for r in rows]
        built[t.name] = table
    for col, parent in fk_targets:
        if col.kind == "fk":
            col.parent = built[parent]
    return list(built.values())


def order_is_well_defined(conn: sqlite3.Connection, shape: str, sql: str) -> bool:
    """For ORDER BY (and LIMIT) questions: no NULL in the order column and no tie at a LIMIT's cut-off,
    checked on the whole table (the rows read are only a sample of a big one)."""
    if shape not in ("order_by", "limit"):
        return True
    base, k = sql, 0
    if shape == "limit":
        base, _, limit = sql.rpartition(" LIMIT ")
        k = int(limit)
    head, _, order = base.rpartition(" ORDER BY ")
    table = head.split(" FROM ", 1)[1]
    col = order[:-len(" DESC")] if order.endswith(" DESC") else order
    if conn.execute(f"SELECT 1 FROM {table} WHERE {col} IS NULL LIMIT 1").fetchone():
        return False
    if k:
        values = [r[0] for r in conn.execute(f"SELECT {col} FROM {table} ORDER BY {order} LIMIT {k + 1}")]
        if len(values) > k and values[k - 1] == values[k]:
            return False
    return True


def questions_for_database(db_path: str | Path, n: int = 200, seed: int = 0, wordings: str = "train",
                           skipped: Counter | None = None, max_rows: int = MAX_ROWS) -> list[dict]:
    """Up to `n` distinct {question, query, shape} records over one SQLite file, each executed and kept only
    if it returns rows. `wordings`: train, held_out or all (questions.py). Raises ValueError for a file
    that is missing, not SQLite, or has no tables. The result depends only on the file and the arguments."""
    path = Path(db_path)
    if not path.is_file():
        raise ValueError(f"SQLite database {path} does not exist")
    tables = read_tables(path, max_rows)
    if not tables:
        raise ValueError(f"{path} has no rows in any table")
    rng = random.Random(f"text2sql-from-sqlite/{seed}/{path.name}/{wordings}")
    return generate_questions(tables, path, n, rng, wordings=wordings, strict=False,
                              accept=order_is_well_defined, skipped=skipped, max_steps=MAX_QUERY_STEPS)


def spider_train_databases(spider_dir: str | Path) -> tuple[list[Path], dict[str, str]]:
    """(existing SQLite files of the db_ids in <spider_dir>/train.json, {db_id: why it is missing})."""
    folder = Path(spider_dir)
    train = folder / "train.json"
    if not train.is_file():
        raise ValueError(f"{train} does not exist (give a Spider folder with train.json and database/)")
    try:
        records = json.loads(train.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{train} is not a Spider train.json ({e})") from None
    if not isinstance(records, list):
        raise ValueError(f"{train} is not a Spider train.json (not a JSON list)")
    # records without a db_id are skipped here as the Spider source skips (and reports) them
    db_ids = sorted({r["db_id"] for r in records if isinstance(r, dict) and isinstance(r.get("db_id"), str)})
    paths, missing = [], {}
    for db_id in db_ids:
        p = folder / "database" / db_id / f"{db_id}.sqlite"
        if p.is_file():
            paths.append(p)
        else:
            missing[db_id] = f"{p} is missing"
    return paths, missing


def survey(db_paths: list[Path], per_db: int, seed: int = 0, out=None, progress: bool = True) -> dict:
    """Make questions over each database; {db: count} plus failures {db: reason} and skip reasons."""
    counts, failures, skipped, shapes = {}, {}, Counter(), Counter()
    for i, p in enumerate(db_paths):
        try:
            recs = questions_for_database(p, per_db, seed, skipped=skipped)
        except ValueError as e:
            failures[str(p)] = str(e)
            continue
        if not recs:
            failures[str(p)] = "no question whose SQL returns rows (no table with a usable column)"
        counts[str(p)] = len(recs)
        shapes.update(r["shape"] for r in recs)
        if out is not None:
            for r in recs:
                out.write(json.dumps({"question": r["question"], "sql": r["query"], "db": str(p.resolve()),
                                      "db_id": p.stem, "shape": r["shape"]}) + "\n")
        if progress:
            print(f"\rfrom_sqlite: database {i + 1}/{len(db_paths)}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return {"counts": counts, "failures": failures, "skipped": dict(skipped), "shapes": dict(shapes)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m text2sql.synthetic.from_sqlite", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", action="append", default=[], metavar="F.sqlite", help="a SQLite file (repeatable)")
    ap.add_argument("--spider-dir", default=None, help="also every database of this Spider folder's train.json")
    ap.add_argument("--per-db", type=int, default=200, help="questions per database (at most)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the pairs as JSONL ({question, sql, db, db_id, shape})")
    args = ap.parse_args(argv)
    try:
        paths, missing = [Path(p) for p in args.db], {}
        if args.spider_dir:
            spider_paths, missing = spider_train_databases(args.spider_dir)
            paths += spider_paths
        if not paths:
            raise ValueError("give --db F.sqlite (repeatable) and/or --spider-dir FOLDER")
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w") if args.out else contextlib.nullcontext() as f:
            result = survey(paths, args.per_db, args.seed, f)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failures = {**missing, **result["failures"]}
    total = sum(result["counts"].values())
    handled = sum(1 for v in result["counts"].values() if v)
    print(f"{total} (question, SQL) pairs from {handled} of {len(paths) + len(missing)} databases "
          f"(per database at most {args.per_db}); shapes: "
          + ", ".join(f"{k} {v}" for k, v in sorted(result["shapes"].items())))
    print("dropped while generating: " + ", ".join(f"{k} {v}" for k, v in sorted(result["skipped"].items())))
    for db, why in sorted(failures.items()):
        print(f"failed: {db}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
