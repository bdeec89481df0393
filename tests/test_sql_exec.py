"""Safe SQL execution: reads work, every kind of write or escape fails with a clear error within the time
limit, and the database file is byte-identical afterwards (the hostile-SQL suite)."""
import hashlib
import sqlite3
import time

import pytest

from text2sql.schema import read_schema
from text2sql.sql_exec import ExecResult, execute_sql, execute_sql_or_raise, format_rows, open_readonly


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "shop.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE customer (id INT PRIMARY KEY, name TEXT, city TEXT);
        CREATE TABLE purchase (id INT PRIMARY KEY, amount REAL, customer_id INT,
                               FOREIGN KEY (customer_id) REFERENCES customer(id));
    """)
    conn.executemany("INSERT INTO customer VALUES (?, ?, ?)", [(i, f"name{i}", ["Oslo", "Lima"][i % 2])
                                                              for i in range(1, 51)])
    conn.executemany("INSERT INTO purchase VALUES (?, ?, ?)", [(i, i * 1.5, i % 50 + 1) for i in range(1, 201)])
    conn.commit()
    conn.close()
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_select_returns_rows_and_columns(db):
    r = execute_sql(db, "SELECT city, COUNT(*) FROM customer GROUP BY city ORDER BY city")
    assert r.ok and r.columns == ["city", "COUNT(*)"] and r.rows == [("Lima", 25), ("Oslo", 25)]
    r = execute_sql(db, "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5) "
                        "SELECT SUM(x) FROM n")
    assert r.ok and r.rows == [(15,)]  # a bounded recursive CTE is a read and is allowed


def test_row_cap_truncates(db):
    r = execute_sql(db, "SELECT * FROM purchase", max_rows=7)
    assert r.ok and len(r.rows) == 7 and r.truncated
    r = execute_sql(db, "SELECT * FROM purchase", max_rows=200)
    assert r.ok and len(r.rows) == 200 and not r.truncated


HOSTILE = [
    ("DROP TABLE customer", "authoriz"),
    ("DELETE FROM customer", "authoriz"),
    ("INSERT INTO customer VALUES (999, 'x', 'y')", "authoriz"),
    ("UPDATE customer SET name = 'x'", "authoriz"),
    ("CREATE TABLE evil (x)", "authoriz"),
    ("CREATE TEMP TABLE evil (x)", "authoriz"),
    ("ATTACH DATABASE '{tmp}/other.sqlite' AS other", "authoriz"),
    ("VACUUM INTO '{tmp}/copy.sqlite'", "authoriz"),
    ("PRAGMA writable_schema = 1", "authoriz"),
    ("PRAGMA journal_mode = WAL", "authoriz"),
    ("PRAGMA table_info(customer)", "authoriz"),
    ("SELECT load_extension('/tmp/evil.so')", "authoriz"),
    ("BEGIN; DROP TABLE customer", ""),
    ("SELECT 1; DROP TABLE customer", "one statement"),
    ("REINDEX", "authoriz"),
    ("ANALYZE", "authoriz"),
    ("SELECT * FROM nonexistent", "no such table"),
    ("SELEC name FROM customer", "syntax error"),
    ("SELECT length(randomblob(2000000000))", "too big"),
]


@pytest.mark.parametrize("sql,expected", HOSTILE)
def test_hostile_sql_fails_and_changes_nothing(db, tmp_path, sql, expected):
    before = digest(db)
    files_before = sorted(p.name for p in tmp_path.iterdir())
    r = execute_sql(db, sql.format(tmp=tmp_path), timeout_s=2.0)
    assert not r.ok and r.rows == []
    assert expected.lower() in r.error.lower(), r.error
    assert r.seconds < 2.5
    assert digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files_before  # no copy, no journal, no attach target
    # the database still reads normally afterwards
    assert execute_sql(db, "SELECT COUNT(*) FROM customer").rows == [(50,)]


@pytest.mark.parametrize("sql", [
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r",
    "SELECT COUNT(*) FROM purchase a, purchase b, purchase c, purchase d",  # 1.6e9 rows
])
def test_endless_queries_time_out(db, sql):
    before = digest(db)
    t0 = time.perf_counter()
    r = execute_sql(db, sql, timeout_s=0.3)
    elapsed = time.perf_counter() - t0
    assert not r.ok and "timed out" in r.error
    assert elapsed < 1.5, elapsed
    assert digest(db) == before


def test_missing_database_is_an_error_not_a_new_file(tmp_path):
    missing = tmp_path / "nope.sqlite"
    r = execute_sql(missing, "SELECT 1")
    assert not r.ok and "does not exist" in r.error
    assert not missing.exists()


def test_odd_path_characters_do_not_inject_uri_parameters(tmp_path, db):
    odd = tmp_path / "a?mode=rwc&x#y.sqlite"
    odd.write_bytes(db.read_bytes())
    before = digest(odd)
    assert execute_sql(odd, "SELECT COUNT(*) FROM customer").rows == [(50,)]
    assert not execute_sql(odd, "DELETE FROM customer").ok
    assert digest(odd) == before


def test_connection_reuse_and_raise_helper(db):
    conn = open_readonly(db)
    try:
        assert execute_sql(db, "SELECT MAX(id) FROM purchase", conn=conn).rows == [(200,)]
        assert not execute_sql(db, "DROP TABLE purchase", conn=conn).ok
        assert execute_sql(db, "SELECT MIN(id) FROM purchase", conn=conn).rows == [(1,)]
    finally:
        conn.close()
    with pytest.raises(ValueError, match="authoriz"):
        execute_sql_or_raise(db, "DROP TABLE purchase")


def test_read_schema(db):
    schema = read_schema(db)
    assert [t.name for t in schema.tables] == ["customer", "purchase"]
    purchase = schema.table("purchase")
    assert [c.name for c in purchase.columns] == ["id", "amount", "customer_id"]
    assert purchase.columns[0].primary_key and purchase.columns[1].type == "REAL"
    assert purchase.columns[2].references == ("customer", "id")
    assert schema.to_text() == ("customer: id int pk, name text, city text | "
                                "purchase: id int pk, amount real, customer_id int fk customer.id")


def test_format_rows():
    text = format_rows(ExecResult(rows=[(1, None), (2, "x")], columns=["a", "b"]), limit=1)
    assert text.splitlines() == ["a | b", "1 | NULL", "... (2 rows)"]
    assert format_rows(ExecResult(error="boom")) == "error: boom"
