"""beam+exec's execution-guided choice (text2sql.decoding.choose_by_execution): the candidate it picks is the
one the rule names (run every candidate, keep those that run, prefer rows, then fewer literals the question
lacks, then rank), while it runs as few candidates as that rule allows."""
import random
import sqlite3

import pytest

import text2sql.decoding as decoding
from text2sql.decoding import choose_by_execution, unsupported_literals
from text2sql.sql_exec import execute_sql

QUESTION = "Which singers are from France or have age 30?"
# (sql, what running it gives): rows, no rows, or an error; some name literals the question lacks
POOL = [
    ("SELECT name FROM singer WHERE country = 'France'", "rows"),
    ("SELECT name FROM singer WHERE country = 'Spain'", "rows"),       # 'Spain': not in the question
    ("SELECT name FROM singer WHERE age = 30", "rows"),
    ("SELECT name FROM singer WHERE age = 99", "rows"),                # 99: not in the question
    ("SELECT name FROM singer WHERE country = 'france'", "empty"),
    ("SELECT name FROM singer WHERE age = 12", "empty"),               # 12: not in the question
    ("SELECT nme FROM singer", "error"),
    ("SELECT name FROM singr", "error"),
    ("", "blank"),
]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("choice") / "singers.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE singer (name TEXT, country TEXT, age INTEGER)")
    con.executemany("INSERT INTO singer VALUES (?, ?, ?)",
                    [("Ann", "France", 30), ("Bo", "Spain", 41), ("Cy", "Spain", 99)])
    con.commit()
    con.close()
    return path


def rule(candidates, db_path, question):
    """The rule, spelled out: run every candidate, then the least (no rows, misses, rank)."""
    ranked = []
    for rank, sql in enumerate(candidates):
        if sql:
            r = execute_sql(db_path, sql, max_rows=1)
            if r.ok:
                misses = unsupported_literals(sql, question) if question is not None else 0
                ranked.append((not r.rows, misses, rank, sql))
    return min(ranked)[3] if ranked else (candidates[0] if candidates else "")


def test_the_pool_is_what_it_says(db):
    for sql, kind in POOL:
        if sql:
            r = execute_sql(db, sql, max_rows=1)
            assert {"rows": r.ok and bool(r.rows), "empty": r.ok and not r.rows, "error": not r.ok}[kind], sql
    assert [unsupported_literals(s, QUESTION) for s, _ in POOL[:6]] == [0, 1, 0, 1, 0, 1]


def test_the_choice_follows_the_rule_and_runs_only_what_it_must(db, monkeypatch):
    runs = []

    def counted(*args, **kwargs):
        runs.append(args[1])
        return execute_sql(*args, **kwargs)

    monkeypatch.setattr(decoding, "execute_sql", counted)
    rng = random.Random(0)
    kinds = dict(POOL)
    for _ in range(300):
        candidates = [sql for sql, _ in rng.sample(POOL, rng.randint(1, 5))]
        question = rng.choice([QUESTION, None])
        runs.clear()
        got = choose_by_execution(candidates, db, question=question)
        assert got == rule(candidates, db, question), (candidates, question)
        # what had to run: the candidates that come before the answer in (misses, rank) order, and the
        # answer; all of them when no candidate returns rows
        order = sorted((unsupported_literals(s, question) if question else 0, r, s)
                       for r, s in enumerate(candidates) if s)
        if any(kinds[s] == "rows" for s in candidates):
            first = next(i for i, (_, _, s) in enumerate(order) if kinds[s] == "rows")
            assert runs == [s for _, _, s in order[:first + 1]]
        else:
            assert runs == [s for _, _, s in order]


def test_the_best_candidate_with_rows_runs_alone(db, monkeypatch):
    runs = []
    monkeypatch.setattr(decoding, "execute_sql", lambda *a, **k: runs.append(a[1]) or execute_sql(*a, **k))
    best = POOL[0][0]
    assert choose_by_execution([best, POOL[4][0], POOL[6][0], POOL[2][0]], db, question=QUESTION) == best
    assert runs == [best]
    # a candidate that fails, then one with no rows, then one with rows: the one with rows, after all three ran
    runs.clear()
    assert choose_by_execution([POOL[6][0], POOL[4][0], POOL[2][0]], db, question=QUESTION) == POOL[2][0]
    assert runs == [POOL[6][0], POOL[4][0], POOL[2][0]]
    # none runs: the first candidate, as the beams ranked it
    assert choose_by_execution([POOL[7][0], POOL[6][0]], db, question=QUESTION) == POOL[7][0]
    assert choose_by_execution([], db) == ""
