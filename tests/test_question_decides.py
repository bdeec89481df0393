"""The constraint's `question_decides` rule (on when SQL is decoded, text2sql/decoding.py).

A question that writes one of a column's stored values ("performers from Asia") or writes numbers ("over
1690") says which literals it means. With the rule, the decoder may then not swap in another stored value
or another number from the column's range, which is what a small model did on held-out domains ('America'
for the question's 'Asia', 590 for 1690). Without it (checking people's gold SQL), both stay allowed.
"""
import sqlite3

import pytest

from text2sql.schema import read_schema
from text2sql.sql_constraint import SQLPrefixChecker


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("decides") / "p.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE performer (id INTEGER PRIMARY KEY, name TEXT, continent TEXT, height INT);
        INSERT INTO performer VALUES (1, 'Ann', 'Asia', 150), (2, 'Bo', 'America', 1690), (3, 'Cy', 'Europe', 590);
    """)
    conn.commit()
    conn.close()
    return path


def check(db, question, sql, decides):
    return SQLPrefixChecker(read_schema(db), question, db, question_decides=decides).accepts(sql)


@pytest.mark.parametrize("decides", [False, True])
def test_the_questions_own_value_and_number_are_always_allowed(db, decides):
    q = "Which performers from Asia are taller than 1690?"
    assert check(db, q, "SELECT name FROM performer WHERE continent = 'Asia' AND height > 1690", decides)
    assert check(db, q, "SELECT COUNT(*) FROM performer WHERE continent = 'Asia' LIMIT 3", decides)  # small ints


def test_a_question_that_names_a_value_decides_the_value(db):
    q = "Which performers from Asia are there?"
    sql = "SELECT name FROM performer WHERE continent = 'America'"
    assert check(db, q, sql, decides=False)       # another stored value: allowed when checking gold SQL
    assert not check(db, q, sql, decides=True)    # ...but not when decoding
    # a question that names no stored value of the column leaves every stored value open
    assert check(db, "Which performers are from the new world?", sql, decides=True)


def test_a_question_that_writes_numbers_decides_the_number(db):
    q = "Which performers are taller than 1690?"
    sql = "SELECT name FROM performer WHERE height > 590"
    assert check(db, q, sql, decides=False)       # 590 is inside the column's range
    assert not check(db, q, sql, decides=True)
    assert not check(db, q, "SELECT name FROM performer WHERE height > 169", decides=True)  # a cut-off 1690
    # no number in the question: the column's range still offers numbers
    assert check(db, "Which performers are very tall?", sql, decides=True)
