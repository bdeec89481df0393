"""The synthetic generator: deterministic by seed, split by database, every gold query executes and
returns rows, the issue's SQL shapes are all present, and the output is a valid Spider-format folder."""
import json
import sqlite3
from collections import Counter

import pytest
import sqlglot

from text2sql import synthetic
from text2sql.schema import read_schema
from text2sql.sql_exec import execute_sql


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    counts = synthetic.generate(out, seed=3, num_databases=30, train_per_db=60, eval_per_db=12, progress=False)
    return out, counts


def load(out, split):
    return json.loads((out / f"{split}.json").read_text())


def test_deterministic_by_seed(small, tmp_path):
    out, _ = small
    again = tmp_path / "again"
    synthetic.generate(again, seed=3, num_databases=30, train_per_db=60, eval_per_db=12, progress=False)
    for name in ["train.json", "dev.json", "test.json", "tables.json"]:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    for db in sorted((out / "database").iterdir()):
        a = sqlite3.connect(db / f"{db.name}.sqlite")
        b = sqlite3.connect(again / "database" / db.name / f"{db.name}.sqlite")
        assert list(a.iterdump()) == list(b.iterdump()), db.name
        a.close(), b.close()
    other = tmp_path / "other"
    synthetic.generate(other, seed=4, num_databases=30, train_per_db=60, eval_per_db=12, progress=False)
    assert (out / "train.json").read_bytes() != (other / "train.json").read_bytes()


def test_split_by_database(small):
    out, counts = small
    dbs = {split: {r["db_id"] for r in load(out, split)} for split in ["train", "dev", "test"]}
    assert dbs["train"] and dbs["dev"] and dbs["test"]
    assert not dbs["train"] & dbs["dev"] and not dbs["train"] & dbs["test"] and not dbs["dev"] & dbs["test"]
    assert len(dbs["test"]) == len(dbs["dev"]) == len(synthetic.DOMAINS)  # one per domain
    assert counts["train"] == len(load(out, "train"))
    # examples are unique within a database
    train = load(out, "train")
    assert len({(r["db_id"], r["question"]) for r in train}) == len(train)


def test_every_gold_query_executes_and_returns_rows(small):
    out, _ = small
    for split in ["train", "dev", "test"]:
        for r in load(out, split):
            db = out / "database" / r["db_id"] / f"{r['db_id']}.sqlite"
            res = execute_sql(db, r["query"])
            assert res.ok, (r, res.error)
            assert res.rows, r
            sqlglot.parse_one(r["query"], read="sqlite")  # and it parses


def test_all_issue_shapes_are_covered(small):
    out, _ = small
    train = load(out, "train")
    shapes = Counter(r["shape"] for r in train)
    assert set(shapes) == {name for name, _, _ in synthetic.SHAPES}
    text = " ".join(r["query"] for r in train)
    for keyword in ["WHERE", " AND ", " OR ", " > ", " < ", " >= ", " <= ", " LIKE ", " BETWEEN ", " IN (",
                    "ORDER BY", " DESC", "LIMIT", "DISTINCT", "COUNT(*)", "AVG(", "SUM(", "MIN(", "MAX(",
                    "GROUP BY", "HAVING", " JOIN ", "NOT IN (SELECT", "(SELECT AVG(", " UNION ", " INTERSECT ",
                    " EXCEPT "]:
        assert keyword in text, keyword
    # several phrasings per shape: more distinct question openings than shapes
    openings = {" ".join(r["question"].split()[:2]) for r in train}
    assert len(openings) > 2 * len(shapes)


def test_schemas_vary_and_match_tables_json(small):
    out, _ = small
    tables = {t["db_id"]: t for t in json.loads((out / "tables.json").read_text())}
    texts = set()
    for db_id, entry in tables.items():
        schema = read_schema(out / "database" / db_id / f"{db_id}.sqlite")
        assert [t.name for t in schema.tables] == entry["table_names_original"]
        n_cols = sum(len(t.columns) for t in schema.tables)
        assert n_cols == len(entry["column_names_original"]) - 1  # minus "*"
        assert len(entry["foreign_keys"]) >= 1 and entry["primary_keys"]
        fk_cols = [c for t in schema.tables for c in t.columns if c.references]
        assert fk_cols and all(c.references[1] == "id" for c in fk_cols)
        texts.add(schema.to_text())
        with sqlite3.connect(out / "database" / db_id / f"{db_id}.sqlite") as conn:
            for t in schema.tables:
                assert conn.execute(f"SELECT COUNT(*) FROM {t.name}").fetchone()[0] >= 5
    assert len(texts) == len(tables)  # no two databases share a schema


def test_limit_queries_have_no_tie_at_the_cut(small):
    out, _ = small
    checked = 0
    for r in load(out, "train"):
        q = r["query"]
        if r["shape"] != "limit":
            continue
        k = int(q.rsplit("LIMIT", 1)[1])
        db = out / "database" / r["db_id"] / f"{r['db_id']}.sqlite"
        col = q.split("ORDER BY ")[1].split()[0]
        table = q.split("FROM ")[1].split()[0]
        order = " DESC" if " DESC" in q else ""
        values = [v for (v,) in execute_sql(db, f"SELECT {col} FROM {table} ORDER BY {col}{order}").rows]
        if len(values) > k:
            assert values[k - 1] != values[k], r
        checked += 1
    assert checked > 5


def test_cli_writes_folder_and_reports_bad_arguments(tmp_path, capsys):
    assert synthetic.main(["--out", str(tmp_path / "s"), "--databases", "3", "--train-per-db", "5",
                           "--eval-per-db", "3"]) == 0
    assert "train" in capsys.readouterr().out
    assert (tmp_path / "s" / "tables.json").exists()
    assert synthetic.main(["--out", str(tmp_path / "t"), "--databases", "2"]) == 2
    assert "at least 3" in capsys.readouterr().err
