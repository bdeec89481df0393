"""Schema tags (text2sql/schema_tags.py): renaming names to tags and back never changes what a query does.

The model writes SQL over tags, so every gold query is rewritten to tags for training and every decoded
query back to names for execution. A rewrite that touched a string literal, a function name or an alias,
or mixed up two names, would change results: these tests run the original and the round-tripped query on
the real databases and compare the rows, for every gold query of the generator and of Spider train.
"""
import json
import re


from tests.conftest import shared_path
from text2sql import synthetic
from text2sql.schema import read_schema
from text2sql.schema_tags import KEYWORDS, schema_tags
from text2sql.sql_constraint import SQLPrefixChecker
from text2sql.sql_exec import execute_sql

_WORD = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|([A-Za-z_][A-Za-z0-9_]*)")


def gold_items(folder, split_files):
    schemas = {}
    for split in split_files:
        for e in json.loads(split.read_text()):
            path = folder / "database" / e["db_id"] / f"{e['db_id']}.sqlite"
            if not path.is_file():
                continue
            if path not in schemas:
                schemas[path] = read_schema(path)
            yield schemas[path], e["question"], path, e["query"]


def round_trip_mismatches(items):
    """[(query, why)] of the queries whose round trip through tags returns other rows (or fails)."""
    bad, n = [], 0
    for schema, _, path, sql in items:
        gold = execute_sql(path, sql, timeout_s=5.0)
        if not gold.ok:
            continue  # a gold query the database rejects says nothing about the rewrite
        n += 1
        tags = schema_tags(schema)
        back = tags.from_tags(tags.to_tags(sql))
        again = execute_sql(path, back, timeout_s=5.0)
        if not again.ok or sorted(map(repr, again.rows)) != sorted(map(repr, gold.rows)):
            bad.append((sql, back, again.error))
    return bad, n


def test_generator_gold_round_trips_and_the_tagged_query_names_only_tags(tmp_path):
    synthetic.generate(tmp_path, seed=3, num_databases=40, train_per_db=20, eval_per_db=5, progress=False)
    items = list(gold_items(tmp_path, sorted(p for p in tmp_path.glob("*.json") if p.name != "tables.json")))
    bad, n = round_trip_mismatches(items)
    assert n > 500 and bad == []
    checked = 0
    for schema, question, path, sql in items[:300]:
        tags = schema_tags(schema)
        tagged = tags.to_tags(sql)
        names = {m.group(1).lower() for m in _WORD.finditer(tagged) if m.group(1)}
        real = {t.name.lower() for t in schema.tables} | {c.name.lower() for t in schema.tables for c in t.columns}
        assert not (names & real - set(tags.name_of)), (sql, tagged)  # no real name survives the rewrite
        # the constraint, given the tagged schema, accepts the tagged gold (values read under real names)
        assert SQLPrefixChecker(tags.tagged, question, path, tags.real_column).accepts(tagged), (sql, tagged)
        checked += 1
    assert checked == 300


def test_spider_train_gold_round_trips():
    spider = shared_path("data", "spider")
    items = list(gold_items(spider, [spider / "train.json"]))
    bad, n = round_trip_mismatches(items)
    print(f"\nSpider train: {len(bad)} of {n} runnable gold queries change under the tag round trip")
    for sql, back, err in bad[:10]:
        print(f"  {sql}\n  -> {back}  ({err})")
    assert n > 6000 and bad == []


def test_keywords_and_functions_are_never_renamed():
    from text2sql.schema import Column, Schema, Table

    s = Schema([Table("select", [Column("max"), Column("from"), Column("name")])])
    tags = schema_tags(s)
    assert "select" in KEYWORDS
    # quoted, a keyword is a name; unquoted it stays a keyword; `max(` stays a call
    assert tags.to_tags('SELECT max(name), "from" FROM "select"') == "SELECT max(col3), col2 FROM tab1"
    assert tags.from_tags("SELECT max(col3), col2, col1 FROM tab1") == 'SELECT max(name), "from", "max" FROM "select"'


def test_annotation_marks_every_linked_name():
    from text2sql.schema import Column, Schema, Table

    s = Schema([Table("FireStations", [Column("stationId", "int", True), Column("StationName", "text")]),
                Table("trucks", [Column("truck_name", "text"), Column("stationId", "int", references=("FireStations", "stationId"))])])
    tags = schema_tags(s)
    assert tags.schema_text(s.tables) == ("tab1 fire stations: col1 station id int pk, col2 station name text | "
                                          "tab2 trucks: col3 truck name text, col1 station id int fk tab1")
    assert tags.annotate("List the name of the fire stations with trucks") == \
        "List the name (col3) of the fire stations (tab1) with trucks (tab2)"
    assert tags.annotate("nothing here") == "nothing here"


def test_value_linking_tags_stored_values_with_their_column(tmp_path):
    import sqlite3

    from text2sql.linking import read_text_values

    db = tmp_path / "v.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, grade TEXT, age INT);
        INSERT INTO singer VALUES (1, 'Joe Sharp', 'France', 'A', 30), (2, 'Ann', 'United States', 'B', 41),
                                  (3, 'Rose', 'France', '2000', 25);
        CREATE TABLE city (name TEXT, country TEXT);
        INSERT INTO city VALUES ('Paris', 'France'), ('Nice', 'France');
    """)
    con.commit()
    con.close()
    schema = read_schema(db)
    values = read_text_values(db, schema)
    # short values ('A'), numbers stored as text ('2000') and ints are not indexed; a value in two columns
    # links to both
    assert "a" not in values and "2000" not in values and "30" not in values
    assert values["france"] == {("singer", "country"), ("city", "country")}
    tags = schema_tags(schema)
    q = "Which singers from France or the United States are older than 30, and is Joe Sharp from Paris?"
    assert tags.annotate(q, values) == (
        "Which singers (tab1) from France (=col3) or the United States (=col3) are older than 30, "
        "and is Joe Sharp (=col2) from Paris (=col2)?")
    # a span that names a column is not read again as a value; no database, no value links
    assert tags.annotate("What is the country of Ann", values) == "What is the country (col3) of Ann (=col2)"
    assert tags.annotate(q) == tags.annotate(q, None) == tags.annotate(q, {})
    assert read_text_values(tmp_path / "missing.sqlite", schema) == {}


def test_plural_question_words_link_singular_names():
    from text2sql.schema import Column, Schema, Table

    s = Schema([Table("Grouttrous", [Column("cargo_code", "text"), Column("class", "text")])])
    tags = schema_tags(s)
    # 'codes' -> code (the rest of cargo_code after nothing: a column phrase), 'classes' -> class, and a
    # made-up table pluralised with a bare s
    assert tags.annotate("list the cargo codes and classes of all grouttrouss") == \
        "list the cargo codes (col1) and classes (col2) of all grouttrouss (tab1)"
