"""Metrics on hand-made cases: row order, ORDER BY, duplicates, NULLs, numeric types, errors, exact match
normalisation, the shape classifier and the summary."""
import sqlite3

import pytest

from text2sql.metrics import (exact_match, format_table, has_order_by, normalize_sql, results_match,
                              score_example, sql_shape, summarize)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "t.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE person (id INT PRIMARY KEY, name TEXT, age INT, city TEXT);
        INSERT INTO person VALUES (1, 'Ann', 30, 'Oslo'), (2, 'Bob', 25, NULL), (3, 'Cid', 30, 'Lima'),
                                  (4, 'Dee', 41, 'Oslo');
        CREATE TABLE pet (id INT PRIMARY KEY, name TEXT, owner_id INT REFERENCES person(id));
        INSERT INTO pet VALUES (1, 'Rex', 1), (2, 'Tom', 1), (3, 'Kit', 3);
    """)
    conn.commit()
    conn.close()
    return path


def test_row_order_ignored_without_order_by():
    assert results_match([(1,), (2,)], [(2,), (1,)])
    assert not results_match([(1,), (2,)], [(2,), (1,)], ordered=True)
    assert results_match([(1,), (2,)], [(1,), (2,)], ordered=True)


def test_duplicates_count():
    assert not results_match([(1,), (1,), (2,)], [(1,), (2,), (2,)])
    assert not results_match([(1,), (1,)], [(1,)])


def test_nulls_and_numeric_normalisation():
    assert results_match([(None, 1)], [(None, 1)])
    assert not results_match([(None,)], [(0,)])
    assert not results_match([(None,)], [("",)])
    assert results_match([(3,)], [(3.0,)])
    assert results_match([(0.1 + 0.2,)], [(0.3,)])
    assert not results_match([(0.3,)], [(0.31,)])
    assert not results_match([("3",)], [(3,)])  # text is not a number


def test_column_permutation():
    assert results_match([("Ann", 30), ("Bob", 25)], [(25, "Bob"), (30, "Ann")])
    # one permutation must fit all rows: mixing columns row by row is not a match
    assert not results_match([("a", "b"), ("c", "d")], [("b", "a"), ("c", "d")])
    assert not results_match([(1, 2)], [(1, 2, 3)])


def test_has_order_by():
    assert has_order_by("SELECT a FROM t ORDER BY a")
    assert has_order_by("SELECT a FROM t UNION SELECT b FROM u ORDER BY 1")
    assert not has_order_by("SELECT a FROM t WHERE a IN (SELECT b FROM u ORDER BY b LIMIT 2)")
    assert not has_order_by("SELECT a FROM t")


def test_score_example_execution(db):
    gold = "SELECT name FROM person WHERE age = 30"
    assert score_example(db, gold, "SELECT name FROM person WHERE age >= 30 AND age < 31").exec_match
    s = score_example(db, gold, "SELECT name FROM person WHERE age > 29")  # Dee too
    assert s.valid and not s.exec_match
    # ORDER BY in gold: order must match
    gold = "SELECT name FROM person ORDER BY age DESC, name"
    assert score_example(db, gold, "SELECT name FROM person ORDER BY age DESC, name ASC").exec_match
    assert not score_example(db, gold, "SELECT name FROM person ORDER BY age, name").exec_match
    # duplicates: DISTINCT changes the multiset
    gold = "SELECT age FROM person"
    assert not score_example(db, gold, "SELECT DISTINCT age FROM person").exec_match
    # NULLs: a NULL city is a row; filtering it out is a different result
    gold = "SELECT city FROM person"
    assert not score_example(db, gold, "SELECT city FROM person WHERE city IS NOT NULL").exec_match
    assert score_example(db, gold, "SELECT city FROM person ORDER BY id DESC").exec_match


def test_score_example_errors(db):
    s = score_example(db, "SELECT COUNT(*) FROM pet", "SELECT COUNT(*) FROM pets")
    assert not s.valid and not s.exec_match and "no such table" in s.pred_result.error
    s = score_example(db, "SELECT COUNT(*) FROM pet", "DROP TABLE pet")
    assert not s.valid and not s.exec_match
    s = score_example(db, "SELECT COUNT(*) FROM pet", "")
    assert not s.valid and not s.exact_match
    s = score_example(db, "SELECT nope FROM pet", "SELECT nope FROM pet")
    assert not s.gold_ok and not s.exec_match


def test_exact_match_normalisation():
    assert exact_match("SELECT name FROM person WHERE age > 3", "select  NAME from Person where age>3;")
    assert exact_match("SELECT a FROM t WHERE x <> 1", "SELECT a FROM t WHERE x != 1")
    assert not exact_match("SELECT name FROM person WHERE city = 'Oslo'", "SELECT name FROM person WHERE city = 'oslo'")
    assert not exact_match("SELECT a FROM t", "SELECT b FROM t")
    assert not exact_match("SELECT a FROM t", "SELEC a FRM t")
    assert normalize_sql("SELEC a FRM t ((") is None


@pytest.mark.parametrize("sql,shape", [
    ("SELECT a FROM t", "select"),
    ("SELECT a FROM t WHERE b = 1", "where"),
    ("SELECT a FROM t WHERE b = 1 OR c < 2", "where_and_or"),
    ("SELECT a FROM t WHERE b LIKE 'x%'", "like"),
    ("SELECT a FROM t WHERE b BETWEEN 1 AND 2", "between"),
    ("SELECT a FROM t WHERE b IN (1, 2)", "in"),
    ("SELECT DISTINCT a FROM t", "distinct"),
    ("SELECT COUNT(*) FROM t WHERE b = 1", "aggregate"),
    ("SELECT a FROM t ORDER BY b", "order_by"),
    ("SELECT a FROM t ORDER BY b DESC LIMIT 1", "limit"),
    ("SELECT a, COUNT(*) FROM t GROUP BY a", "group_by"),
    ("SELECT a FROM t GROUP BY a HAVING COUNT(*) > 1", "having"),
    ("SELECT T1.a FROM t AS T1 JOIN u AS T2 ON T1.x = T2.id", "join"),
    ("SELECT a FROM t WHERE b > (SELECT AVG(b) FROM t)", "nested"),
    ("SELECT a FROM t EXCEPT SELECT a FROM u", "set_op"),
    ("SELECT a FROM t INTERSECT SELECT a FROM u", "set_op"),
    ("SELEC a FRM t ((", "unparsed"),
])
def test_sql_shape(sql, shape):
    assert sql_shape(sql) == shape


def test_summarize_and_table(db):
    cases = [("SELECT COUNT(*) FROM pet", "SELECT COUNT(*) FROM pet"),                    # exact + exec
             ("SELECT COUNT(*) FROM pet", "SELECT COUNT(id) FROM pet"),                   # exec only
             ("SELECT name FROM pet WHERE owner_id = 1", "SELECT name FROM pet WHERE owner_id = 3"),
             ("SELECT name FROM pet WHERE owner_id = 1", "SELECT nme FROM pet"),         # invalid
             ("SELECT bad FROM pet", "SELECT name FROM pet")]                             # gold error
    scored = [score_example(db, g, p) for g, p in cases]
    s = summarize(scored)
    assert s["n"] == 5 and s["n_gold_errors"] == 1
    assert s["execution_accuracy"] == pytest.approx(2 / 4)
    assert s["exact_match"] == pytest.approx(1 / 5)
    assert s["valid_sql_rate"] == pytest.approx(4 / 5)
    aggregate = s["by_shape"]["aggregate"]
    assert {k: aggregate[k] for k in ("n", "execution_accuracy", "exact_match", "valid_sql_rate")} == \
        {"n": 2, "execution_accuracy": 1.0, "exact_match": 0.5, "valid_sql_rate": 1.0}
    # Wilson 95% interval of 2/2: [z^2 / (n + z^2) ... 1] = [0.3424, 1.0]; of 2/4: [0.1500, 0.8500]
    assert aggregate["ci95"] == pytest.approx([0.342372, 1.0], abs=1e-5)
    assert s["ci95"] == pytest.approx([0.150036, 0.849964], abs=1e-5)
    assert s["by_shape"]["where"]["execution_accuracy"] == 0.0
    assert set(s["by_hardness"]) <= {"easy", "medium", "hard", "extra", "unknown"}
    assert sum(b["n"] for b in s["by_hardness"].values()) == 5
    assert "baseline_accuracy" not in s  # no baseline was scored
    for sc in scored:
        sc.baseline_match = sc.gold_ok
    with_baseline = summarize(scored)
    assert with_baseline["baseline_accuracy"] == 1.0
    table = format_table(s)
    lines = table.splitlines()
    assert "aggregate" in table and lines[-1].startswith("all") and "hardness" in table
    assert "50.0%" in lines[-1] and "15%-85%" in lines[-1]
    assert "lookup" in format_table(with_baseline) and "lookup" not in table
