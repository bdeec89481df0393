"""text2sql/schema.py: one reader for SQLite files and user DDL; both resolve a foreign key that names
no column to the referenced table's real primary key (not a guessed "id")."""
import sqlite3

import pytest

from text2sql.schema import Column, Schema, Table, read_schema, schema_from_ddl

DDL = """
CREATE TABLE dept (code TEXT PRIMARY KEY, title VARCHAR(40));
CREATE TABLE staff (staff_no INTEGER PRIMARY KEY, name TEXT, dept_code TEXT REFERENCES dept,
                    boss INTEGER REFERENCES staff(staff_no), salary REAL);
"""

EXPECTED = Schema([
    Table("dept", [Column("code", "TEXT", True), Column("title", "VARCHAR(40)")]),
    Table("staff", [Column("staff_no", "INTEGER", True), Column("name", "TEXT"),
                    Column("dept_code", "TEXT", False, ("dept", "code")),
                    Column("boss", "INTEGER", False, ("staff", "staff_no")), Column("salary", "REAL")]),
])


def test_ddl_and_sqlite_file_give_the_same_schema(tmp_path):
    db = tmp_path / "company.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript(DDL)
    conn.close()
    assert schema_from_ddl(DDL) == EXPECTED
    assert read_schema(db) == EXPECTED
    assert "dept_code text fk dept.code" in EXPECTED.to_text()


def test_schema_round_trips_through_a_dict():
    assert Schema.from_dict(EXPECTED.to_dict()) == EXPECTED


def test_bad_input_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="does not run in SQLite"):
        schema_from_ddl("CREATE TABLE (")
    not_db = tmp_path / "notes.sqlite"
    not_db.write_text("hello, not a database" * 100)
    with pytest.raises(ValueError, match="not a readable SQLite database"):
        read_schema(not_db)
    with pytest.raises(FileNotFoundError):
        read_schema(tmp_path / "missing.sqlite")
