"""The question maker over any SQLite file (text2sql/synthetic/from_sqlite.py) and `--source sqlite`:
on a database built here (camelCase and snake_case names, a foreign key, an id-like code, free text,
NULLs) every generated query runs and returns rows, nouns read as English, id columns are never asked
about; the source holds out whole databases; the CLI reports user mistakes without a traceback; and, when
../shared is present, it runs over Spider training databases."""
import json
import random
import re
import sqlite3

import pytest

from text2sql.sources.sqlite import load_sqlite
from text2sql.sql_exec import execute_sql
from text2sql.synthetic import from_sqlite, questions
from tests.conftest import shared_path

CITIES = ["Paris", "Oslo", "Lima", "Kyoto", "Cairo"]
STATUSES = ["open", "shipped", "returned"]
NAMES = ["Ada Byron", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov", "Donald Knuth",
         "Frances Allen", "John Backus", "Niklaus Wirth", "Radia Perlman", "Tony Hoare", "Ken Thompson",
         "Margaret Hamilton", "Dennis Ritchie"]
ID_COLUMNS = ["accountId", "order_id", "account_id", "memberCode"]


def make_shop(path, seed=0, n_customers=14, n_orders=40):
    """CustomerAccounts (camelCase) and purchase_orders (snake_case, foreign key to CustomerAccounts)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE CustomerAccounts (accountId INTEGER PRIMARY KEY, fullName TEXT, homeCity TEXT, "
                 "creditLimit REAL, joinedYear INTEGER, memberCode TEXT, notes TEXT)")
    conn.execute("CREATE TABLE purchase_orders (order_id INTEGER PRIMARY KEY, order_title TEXT, "
                 "account_id INTEGER REFERENCES CustomerAccounts(accountId), total_amount REAL, status TEXT, "
                 "quantity INTEGER)")
    for i in range(n_customers):
        conn.execute("INSERT INTO CustomerAccounts VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (100 + i, NAMES[i], rng.choice(CITIES) if i % 5 else None, round(rng.uniform(100, 900), 2),
                      rng.randint(1995, 2024), f"MC-{rng.randint(1000, 9999)}", "a long free text note " * 4))
    for i in range(n_orders):
        conn.execute("INSERT INTO purchase_orders VALUES (?, ?, ?, ?, ?, ?)",
                     (i + 1, f"Order {chr(65 + i % 26)}{i}", 100 + rng.randrange(n_customers - 3),
                      round(rng.uniform(5, 500), 2), rng.choice(STATUSES), rng.randint(1, 30) if i % 7 else None))
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return make_shop(tmp_path_factory.mktemp("shop") / "shop.sqlite")


def test_roles_and_nouns(shop):
    tables = {t.name: t for t in from_sqlite.read_tables(shop)}
    customers, orders = tables["CustomerAccounts"], tables["purchase_orders"]
    kinds = {c.name: c.kind for c in customers.columns}
    assert kinds == {"accountId": "pk", "fullName": "label", "homeCity": "text", "creditLimit": "real",
                     "joinedYear": "int", "memberCode": "other", "notes": "other"}
    assert {c.name: c.kind for c in orders.columns} == {"order_id": "pk", "order_title": "label", "account_id": "fk",
                                                        "total_amount": "real", "status": "text", "quantity": "int"}
    assert (customers.singular, customers.plural) == ("customer account", "customer accounts")
    assert (orders.singular, orders.plural) == ("purchase order", "purchase orders")
    assert customers.label.words == "full name" and orders.foreign_keys()[0].parent is customers
    assert [c.words for c in customers.columns][:4] == ["account id", "full name", "home city", "credit limit"]
    assert len(customers.rows) == 14 and customers.rows[0]["fullName"] == "Ada Byron"


def test_nouns_from_identifiers():
    assert from_sqlite.table_nouns("Student")[1:] == ("student", "students")
    assert from_sqlite.table_nouns("fire_stations")[1:] == ("fire station", "fire stations")
    assert from_sqlite.table_nouns("people")[1:] == ("person", "people")
    assert from_sqlite.table_nouns("Courses")[1:] == ("course", "courses")
    assert from_sqlite.table_nouns("city")[1:] == ("city", "cities")
    assert from_sqlite.column_words("singer_name", ["singer"]) == ["name"]
    assert from_sqlite.column_words("LName", ["student"]) == ["last", "name"]
    assert from_sqlite.is_id_like(["stuid"]) and from_sqlite.is_id_like(["zip", "code"])
    assert not from_sqlite.is_id_like(["paid"]) and not from_sqlite.is_id_like(["age"])
    assert from_sqlite.sql_identifier("Order") == '"Order"' and from_sqlite.sql_identifier("home city") == '"home city"'
    assert from_sqlite.sql_identifier("homeCity") == "homeCity"


def strip_key_uses(sql: str) -> str:
    """The SQL without the places keys belong: JOIN ... ON T1.fk = T2.pk and pk [NOT] IN (SELECT fk ..."""
    sql = re.sub(r"ON T1\.\w+ = T2\.\w+", "", sql)
    return re.sub(r"\w+ (NOT )?IN \(SELECT \w+ FROM", "", sql)


def test_questions_run_return_rows_and_never_ask_about_ids(shop):
    recs = from_sqlite.questions_for_database(shop, 150, seed=1)
    assert len(recs) >= 120
    shapes = {r["shape"] for r in recs}
    assert {"join", "nested", "where", "aggregate", "group_by", "limit"} <= shapes, shapes
    for r in recs:
        res = execute_sql(shop, r["query"])
        assert res.ok and res.rows and not all(v is None for row in res.rows for v in row), r
        assert not any(c in strip_key_uses(r["query"]) for c in ID_COLUMNS), r
        assert "notes" not in r["query"] and "MC-" not in r["question"], r
        assert "_" not in r["question"] and not re.search(r"[a-z][A-Z]", r["question"]), r  # read as words
    text = " ".join(r["question"].lower() for r in recs)
    for noun in ["customer accounts", "purchase orders", "full name", "home city", "credit limit"]:
        assert noun in text, noun
    # LIMIT questions have no tie at the cut-off and no NULL in the order column (quantity has NULLs)
    for r in recs:
        if r["shape"] in ("limit", "order_by"):
            assert "quantity" not in r["query"], r
    assert recs == from_sqlite.questions_for_database(shop, 150, seed=1)  # deterministic


def test_held_out_wordings_over_a_database(shop):
    train = from_sqlite.questions_for_database(shop, 80, seed=2)
    held = from_sqlite.questions_for_database(shop, 40, seed=2, wordings="held_out")
    assert held and not {r["question"] for r in held} & {r["question"] for r in train}
    counts = questions.check_held_out_wordings()
    assert min(counts.values()) >= 10


def test_source_holds_out_whole_databases(tmp_path):
    dbs = [make_shop(tmp_path / f"shop{i}.sqlite", seed=i) for i in range(4)]
    splits = load_sqlite(dbs, per_db=30, holdout_databases=1)
    train_dbs, val_dbs = {e.db_id for e in splits["train"]}, {e.db_id for e in splits["val"]}
    assert len(val_dbs) == 1 and len(train_dbs) == 3 and not train_dbs & val_dbs
    assert all(e.db_path and e.schema.tables for e in splits["train"])
    one = load_sqlite(dbs[:1], per_db=30)  # one database: val asks it in the held-out wordings
    assert one["val"] and not {e.question for e in one["val"]} & {e.question for e in one["train"]}


def test_cli_reports_user_mistakes_without_traceback(tmp_path, capsys):
    from text2sql import prepare

    out = str(tmp_path / "o")
    assert prepare.main(["--source", "sqlite", "--out", out, "--db", str(tmp_path / "missing.sqlite")]) == 2
    err = capsys.readouterr().err
    assert "missing.sqlite" in err and "no such file" in err and "Traceback" not in err
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).execute("PRAGMA user_version = 1").connection.close()
    assert prepare.main(["--source", "sqlite", "--out", out, "--db", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "has no tables" in err and "Traceback" not in err
    (tmp_path / "text.sqlite").write_text("not a database")
    assert prepare.main(["--source", "sqlite", "--out", out, "--db", str(tmp_path / "text.sqlite")]) == 2
    assert "not a readable SQLite database" in capsys.readouterr().err
    assert prepare.main(["--source", "sqlite", "--out", out]) == 2
    assert "--db" in capsys.readouterr().err


def test_prepare_source_sqlite_writes_shards(tmp_path, shop):
    from text2sql import prepare
    from text2sql.prepare import load_examples

    out = tmp_path / "prepared"
    assert prepare.main(["--source", "sqlite", "--out", str(out), "--db", str(shop), "--sqlite-per-db", "40",
                         "--vocab-size", "400", "--block-size", "128"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"] == "sqlite" and meta["examples"]["train"] == 40 and meta["examples"]["val"] >= 1
    examples, _ = load_examples(out, "train")
    assert all(execute_sql(e.db_path, e.sql).rows for e in examples)


def test_spider_training_databases():
    spider = shared_path("data", "spider")
    paths, missing = from_sqlite.spider_train_databases(spider)
    train_ids = {r["db_id"] for r in json.loads((spider / "train.json").read_text())}
    assert len(paths) >= 100 and {p.parent.name for p in paths} <= train_ids
    assert all(db in train_ids for db in missing)
    for path in paths[:3]:
        recs = from_sqlite.questions_for_database(path, 25)
        assert recs, path
        for r in recs:
            res = execute_sql(path, r["query"])
            assert res.ok and res.rows, (path, r)


def test_source_over_spider_holds_out_the_spider_validation_databases():
    from text2sql.sources import RecordErrors
    from text2sql.sources.spider import SpiderFolder

    spider = shared_path("data", "spider")
    errors = RecordErrors(quiet=True)
    splits = load_sqlite([], per_db=3, holdout_databases=14, spider_dir=spider, errors=errors)
    spider_val = {e.db_id for e in SpiderFolder(spider, RecordErrors(quiet=True)).splits(14)["val"]}
    val = {e.db_id for e in splits["val"]}
    assert val and val <= spider_val and not val & {e.db_id for e in splits["train"]}
    assert len({e.db_id for e in splits["train"]}) >= 100
    assert any("missing" in m for m in errors.messages)  # baseball_1 and soccer_1 are not in ../shared
