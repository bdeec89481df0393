"""Sources on small local fixtures: Spider format, WikiSQL, custom JSONL, Hugging Face (offline, local
files), the shared Spider folder when present, and `python -m text2sql.prepare` with a text-to-SQL source
(packing: no example crosses a training window; the loss mask; the evaluation files)."""
import json
import sqlite3

import numpy as np
import pytest

from text2sql.sources import RecordErrors
from text2sql.schema import schema_from_ddl
from text2sql.sources.jsonl import load_jsonl, split_by_database
from text2sql.sources.spider import SpiderFolder
from text2sql.sources.wikisql import column_names, load_wikisql, to_sql
from text2sql.sql_exec import execute_sql
from tests.conftest import shared_path


def make_db(path, n=3):
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE singer (id INT PRIMARY KEY, name TEXT, age INT);"
                       "CREATE TABLE song (id INT PRIMARY KEY, title TEXT, singer_id INT REFERENCES singer(id));")
    conn.executemany("INSERT INTO singer VALUES (?, ?, ?)", [(i, f"s{i}", 20 + i) for i in range(n)])
    conn.commit()
    conn.close()


@pytest.fixture
def spider_dir(tmp_path):
    root = tmp_path / "spider"
    for db in ["music_1", "music_2", "music_3", "music_4"]:
        make_db(root / "database" / db / f"{db}.sqlite")
    tables = [{"db_id": "only_tables", "table_names_original": ["pet"],
               "column_names_original": [[-1, "*"], [0, "id"], [0, "kind"]], "column_types": ["text", "number", "text"],
               "primary_keys": [1], "foreign_keys": []}]
    (root / "tables.json").write_text(json.dumps(tables))
    records = [{"db_id": f"music_{i % 4 + 1}", "question": f"How many singers {i}?", "query": "SELECT COUNT(*) FROM singer"}
               for i in range(20)]
    records += [{"db_id": "only_tables", "question": "How many pets?", "query": "SELECT COUNT(*) FROM pet"},
                {"db_id": "nowhere", "question": "?", "query": "SELECT 1"},
                {"db_id": "music_1", "question": "", "query": "SELECT 1"},
                "not an object"]
    (root / "train.json").write_text(json.dumps(records))
    return root


def test_spider_folder_loads_and_reports_bad_records(spider_dir):
    errors = RecordErrors(quiet=True)
    examples = SpiderFolder(spider_dir, errors).load_split("train.json")
    assert len(examples) == 21
    assert examples[0].schema.to_text().startswith("singer: id int pk, name text, age int | song:")
    assert examples[0].schema.table("song").columns[2].references == ("singer", "id")
    pet = [e for e in examples if e.db_id == "only_tables"][0]
    assert pet.db_path is None and pet.schema.to_text() == "pet: id real pk, kind text"
    text = "\n".join(errors.messages)
    assert "record 21: unknown database 'nowhere'" in text
    assert "record 22: field 'question'" in text and "record 23: not a JSON object" in text
    assert "only_tables" in text and "cannot be executed" in text  # missing database reported, kept
    assert errors.summary() == "3 bad record(s) skipped, 1 warning(s) (records kept)"


def test_spider_holdout_is_by_database(spider_dir):
    splits = SpiderFolder(spider_dir, RecordErrors(quiet=True)).splits(holdout_databases=2, seed=1)
    train_dbs = {e.db_id for e in splits["train"]}
    val_dbs = {e.db_id for e in splits["val"]}
    assert len(val_dbs) == 2 and not train_dbs & val_dbs
    again = SpiderFolder(spider_dir, RecordErrors(quiet=True)).splits(holdout_databases=2, seed=1)
    assert {e.db_id for e in again["val"]} == val_dbs
    with pytest.raises(ValueError, match="cannot hold out"):
        SpiderFolder(spider_dir, RecordErrors(quiet=True)).splits(holdout_databases=5)
    with pytest.raises(ValueError, match="does not exist"):
        SpiderFolder(spider_dir / "nope")


def test_shared_spider_training_split():
    """The loader on the shared Spider copy, against counts read from the folder itself (records in
    train.json, their databases, the ones without a .sqlite file): a different copy of Spider is not a
    failure, a loader that drops, invents or mislabels records is."""
    folder = shared_path("data", "spider")
    records = json.loads((folder / "train.json").read_text(encoding="utf-8"))
    all_dbs = {r["db_id"] for r in records}
    unshipped = {d for d in all_dbs if not (folder / "database" / d / f"{d}.sqlite").is_file()}
    holdout = max(1, len(all_dbs) // 10)
    errors = RecordErrors(quiet=True)
    splits = SpiderFolder(folder, errors).splits(holdout_databases=holdout, seed=0)
    train_dbs, val_dbs = {e.db_id for e in splits["train"]}, {e.db_id for e in splits["val"]}
    assert train_dbs | val_dbs == all_dbs and len(val_dbs) == holdout and not train_dbs & val_dbs
    assert len(splits["train"]) + len(splits["val"]) == len(records)
    assert errors.summary().startswith("0 bad record(s) skipped")
    assert sorted(e.question for e in splits["train"] + splits["val"]) == sorted(r["question"] for r in records)
    missing = {e.db_id for e in splits["train"] + splits["val"] if e.db_path is None}
    assert missing == unshipped
    sample = [e for e in splits["val"] if e.db_path][:25]
    assert sample and all(execute_sql(e.db_path, e.sql, timeout_s=5).ok for e in sample)


WIKI_TABLES = [{"id": "1-10-1", "header": ["Player", "No.", "Position", "Years in Toronto"],
                "types": ["text", "real", "text", "text"],
                "rows": [["Ann", 4, "Guard", "1999"], ["Bob", 12, "Forward", "2001"], ["Cid", 7, "Guard", "2003"]]},
               {"id": "1-11-2", "header": ["Order", "Team"], "types": ["real", "text"], "rows": [[1, "X"], [2, "Y"]]}]
WIKI_RECORDS = [{"table_id": "1-10-1", "question": "Which player wears number 12?",
                 "sql": {"sel": 0, "agg": 0, "conds": [[1, 0, "12"]]}},
                {"table_id": "1-10-1", "question": "How many guards are there?",
                 "sql": {"sel": 0, "agg": 3, "conds": [[2, 0, "Guard"]]}},
                {"table_id": "1-10-1", "question": "Max number of a guard after 2000?",
                 "sql": {"sel": 1, "agg": 1, "conds": [[2, 0, "Guard"], [3, 1, "2000"]]}},
                {"table_id": "1-11-2", "question": "Which team has order below 2?",
                 "sql": {"sel": 1, "agg": 0, "conds": [[0, 2, 2]]}},
                {"table_id": "9-99-9", "question": "unknown table", "sql": {"sel": 0, "agg": 0, "conds": []}},
                {"table_id": "1-10-1", "question": "bad column", "sql": {"sel": 9, "agg": 0, "conds": []}}]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_wikisql_conversion_executes(tmp_path):
    folder = tmp_path / "wikisql"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", WIKI_RECORDS)
    write_jsonl(folder / "train.tables.jsonl", WIKI_TABLES)
    (folder / "train.jsonl").write_text((folder / "train.jsonl").read_text() + "{broken\n")
    errors = RecordErrors(quiet=True)
    splits = load_wikisql(folder, tmp_path / "out", errors)
    ex = splits["train"]
    assert [e.sql for e in ex] == [
        "SELECT player FROM t_1_10_1 WHERE no = 12",
        "SELECT COUNT(player) FROM t_1_10_1 WHERE position = 'Guard'",
        "SELECT MAX(no) FROM t_1_10_1 WHERE position = 'Guard' AND years_in_toronto > '2000'",
        "SELECT team FROM t_1_11_2 WHERE order_col < 2"]
    results = [execute_sql(e.db_path, e.sql).rows for e in ex]
    assert results == [[("Bob",)], [(2,)], [(7.0,)], [("X",)]]
    assert ex[0].schema.to_text() == "t_1_10_1: player text, no real, position text, years_in_toronto text"
    assert len(errors) == 3  # unknown table, bad column index, broken JSON line
    assert column_names(["A b", "a-b", "1st", "select"]) == ["a_b", "a_b_2", "c_1st", "select_col"]
    with pytest.raises(ValueError, match="does not fit"):
        to_sql({"sel": 0, "agg": 9, "conds": []}, WIKI_TABLES[0])


def test_custom_jsonl(tmp_path):
    make_db(tmp_path / "dbs" / "a.sqlite")
    make_db(tmp_path / "dbs" / "b.sqlite")
    lines = [
        {"question": "How many singers?", "sql": "SELECT COUNT(*) FROM singer", "db": "dbs/a.sqlite"},
        {"question": "Oldest singer?", "query": "SELECT name FROM singer ORDER BY age DESC LIMIT 1", "db": "dbs/b.sqlite"},
        {"question": "Count pets", "sql": "SELECT COUNT(*) FROM pet",
         "schema": "CREATE TABLE pet (id INTEGER PRIMARY KEY, kind TEXT, owner INT REFERENCES person(id))"},
        {"question": "Count toys", "sql": "SELECT COUNT(*) FROM toy", "schema": "toy: id int pk", "split": "test"},
        {"question": "no sql", "db": "dbs/a.sqlite"},
        {"question": "bad db", "sql": "SELECT 1", "db": "dbs/missing.sqlite"},
        {"question": "bad split", "sql": "SELECT 1", "schema": "x", "split": "holdout"},
        {"question": "bad ddl", "sql": "SELECT 1", "schema": "CREATE TABLE ((("},
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + "not json\n")
    errors = RecordErrors(quiet=True)
    splits = load_jsonl(path, errors, val_fraction=0.5)
    everything = splits["train"] + splits["val"] + splits["test"]
    assert len(everything) == 4 and len(errors) == 5
    assert {m.split(": line ")[1].split(":")[0] for m in errors.messages} == {"5", "6", "7", "8", "9"}
    pet = [e for e in everything if "pets" in e.question][0]
    assert pet.schema.to_text() == "pet: id int pk, kind text, owner int fk person.id" and pet.db_path is None
    assert [e.schema for e in splits["test"]] == ["toy: id int pk"]
    a = [e for e in everything if e.db_id == "a"][0]
    assert execute_sql(a.db_path, a.sql).rows == [(3,)]
    train_dbs, val_dbs = {e.db_id for e in splits["train"]}, {e.db_id for e in splits["val"]}
    assert val_dbs and not train_dbs & val_dbs
    with pytest.raises(ValueError, match="does not exist"):
        load_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="does not run"):
        schema_from_ddl("CREATE TABLE (")


def test_split_by_database_keeps_databases_whole():
    from text2sql.sources import Example

    ex = [Example(f"db{i % 7}", f"q{i}", "SELECT 1", "t: a") for i in range(70)]
    train, val = split_by_database(ex, 0.3, seed=2)
    assert len({e.db_id for e in val}) == 2 and not {e.db_id for e in train} & {e.db_id for e in val}
    train, val = split_by_database(ex[:1], 0.3)
    assert len(train) == 1 and not val


def test_huggingface_formats_offline(tmp_path, spider_dir):
    datasets = pytest.importorskip("datasets")  # noqa: F841
    from text2sql.sources.huggingface import load_hf

    # WikiSQL as the hub stores it (conds as a dict of lists, the table inline)
    hub = []
    for r in WIKI_RECORDS[:4]:
        t = next(t for t in WIKI_TABLES if t["id"] == r["table_id"])
        conds = {"column_index": [c[0] for c in r["sql"]["conds"]], "operator_index": [c[1] for c in r["sql"]["conds"]],
                 "condition": [str(c[2]) for c in r["sql"]["conds"]]}
        hub.append({"question": r["question"], "table": {**t, "rows": [[str(v) for v in row] for row in t["rows"]]},
                    "sql": {"sel": r["sql"]["sel"], "agg": r["sql"]["agg"], "conds": conds}})
    write_jsonl(tmp_path / "train.jsonl", hub)
    write_jsonl(tmp_path / "validation.jsonl", hub[:2])
    errors = RecordErrors(quiet=True)
    splits = load_hf("json", tmp_path / "out", data_files={"train": str(tmp_path / "train.jsonl"),
                                                           "validation": str(tmp_path / "validation.jsonl")},
                     errors=errors)
    assert len(splits["train"]) == 4 and len(splits["val"]) == 2 and not errors
    assert splits["train"][0].sql == "SELECT player FROM t_1_10_1 WHERE no = 12"
    assert execute_sql(splits["train"][0].db_path, splits["train"][0].sql).rows == [("Bob",)]

    # DDL + SQL records (sql-create-context style)
    write_jsonl(tmp_path / "ddl.jsonl", [{"question": f"How many heads {i}?", "answer": "SELECT COUNT(*) FROM head",
                                          "context": "CREATE TABLE head (age INTEGER)"} for i in range(4)])
    splits = load_hf("json", tmp_path / "out", data_files=[str(tmp_path / "ddl.jsonl")], errors=errors)
    assert len(splits["train"]) == 4 and splits["train"][0].schema.to_text() == "head: age int"

    # Spider-style records: schemas from a Spider folder
    write_jsonl(tmp_path / "sp.jsonl", [{"db_id": "music_1", "question": "How many?", "query": "SELECT COUNT(*) FROM singer"},
                                        {"db_id": "music_2", "question": "How many?", "query": "SELECT COUNT(*) FROM singer"}])
    splits = load_hf("json", tmp_path / "out", data_files=[str(tmp_path / "sp.jsonl")], spider_dir=str(spider_dir))
    assert {e.db_id for e in splits["train"] + splits["val"]} == {"music_1", "music_2"}
    with pytest.raises(ValueError, match="hf-spider-dir"):
        load_hf("json", tmp_path / "out", data_files=[str(tmp_path / "sp.jsonl")])
    with pytest.raises(ValueError, match="cannot load"):
        load_hf("json", tmp_path / "out", data_files=[str(tmp_path / "missing.jsonl")])


def test_prepare_synthetic_packs_whole_examples(tmp_path, capsys):
    from text2sql import prepare
    from text2sql.prepare import load_examples
    from text2sql.prompt import SCHEMA_TOKEN, SQL_END_TOKEN, SQL_TOKEN
    from gpt.tokenizer import Tokenizer

    out = tmp_path / "prepared"
    block = 128
    rc = prepare.main(["--source", "synthetic", "--out", str(out), "--vocab-size", "600", "--block-size", str(block),
                       "--questions-per-schema", "4", "--synthetic-databases", "12", "--synthetic-train-per-db", "30",
                       "--synthetic-eval-per-db", "5"])
    assert rc == 0
    meta = json.loads((out / "meta.json").read_text())
    tok = Tokenizer.load(str(out / meta["tokenizer"]))
    sp = tok.special_tokens
    ids = np.load(out / meta["splits"]["train"][0]["tokens"]).astype(np.int64)
    mask = np.load(out / meta["splits"]["train"][0]["mask"])
    n_windows = (len(ids) - 1) // block
    for w in range(n_windows):  # the trainer's windows: inputs ids[w*T:(w+1)*T], targets shifted by one
        win, learned = ids[w * block:(w + 1) * block + 1], mask[w * block:(w + 1) * block + 1]
        for j in np.flatnonzero(learned[1:]) + 1:  # every learned target has its schema and <|sql|> in view
            context = win[:j].tolist()
            assert sp[SCHEMA_TOKEN] in context and sp[SQL_TOKEN] in context
        assert learned[0] == 0 or w == 0  # no window starts in the middle of an SQL answer
    # the learned tokens are exactly SQL answers, each closed by <|end|>
    learned_text = tok.decode(ids[mask == 1].tolist())
    assert learned_text.count(SQL_END_TOKEN) == int((ids == sp[SQL_END_TOKEN]).sum())
    assert learned_text.startswith("SELECT")
    examples, info = load_examples(out, "test_domains")
    assert info["block_size"] == block and len(examples) == 5 and all(e.db_path for e in examples)
    assert sorted(meta["splits"]) == ["test_domains", "test_wordings", "train", "val"]


def test_prepare_reports_user_mistakes(tmp_path, capsys):
    from text2sql import prepare

    assert prepare.main(["--source", "spider", "--out", str(tmp_path / "o"), "--spider-dir", str(tmp_path / "no")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert prepare.main(["--source", "jsonl", "--out", str(tmp_path / "o")]) == 2
    assert "needs --jsonl" in capsys.readouterr().err
    assert prepare.main(["--source", "synthetic", "--out", str(tmp_path / "o"), "--synthetic-databases", "4",
                         "--synthetic-train-per-db", "3", "--synthetic-eval-per-db", "2", "--block-size", "128",
                         "--shard-tokens", "1000"]) == 2
    assert "multiple of --block-size" in capsys.readouterr().err


def test_prepare_sqltext_unlabeled_corpus(tmp_path, spider_dir):
    from text2sql import prepare
    from text2sql.prompt import SQL_TOKEN
    from gpt.tokenizer import Tokenizer

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "queries.sql").write_text("".join(f"SELECT name FROM singer WHERE age > {i};\n" for i in range(400))
                                        + f"-- a comment that mentions {SQL_TOKEN}\n")
    (corpus / "notes.txt").write_text("Some English text about singers and songs.\n" * 50)
    out = tmp_path / "pre"
    assert prepare.main(["--source", "sqltext", "--out", str(out), "--vocab-size", "400", "--corpus", str(corpus),
                         "--corpus-spider-dir", str(spider_dir), "--holdout-databases", "1",
                         "--corpus-chunk-chars", "2000"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    tok = Tokenizer.load(str(out / meta["tokenizer"]))
    ids = np.concatenate([np.load(out / s["tokens"]) for split in ("train", "val") for s in meta["splits"][split]])
    assert int((ids == tok.special_tokens[SQL_TOKEN]).sum()) == 0  # the literal text stayed text
    assert all(s["mask"] is None for split in meta["splits"].values() for s in split)  # every token learned
    text = tok.decode(np.load(out / meta["splits"]["train"][0]["tokens"]).tolist())
    assert "singer: col1 id int pk" in text and "SELECT COUNT(*) FROM tab1" in text  # schemas + gold SQL, over tags
    assert meta["splits"]["val"][0]["n_tokens"] > 0


def test_text2sql_prepare_runs_as_a_module(tmp_path):
    """`python -m text2sql.prepare` registers each source once (the module body runs as __main__ too)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-m", "text2sql.prepare", "--help"], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and "synthetic" in res.stdout and "spider" in res.stdout, res.stderr


def test_bad_packing_options_are_refused_before_any_database_is_written(tmp_path, capsys):
    from text2sql import prepare

    out = tmp_path / "o"
    assert prepare.main(["--source", "synthetic", "--out", str(out), "--block-size", "16"]) == 2
    assert "--block-size 16" in capsys.readouterr().err
    assert not (out / "synthetic").exists()  # checked first: nothing generated


def test_spider_readable_names_from_tables_json_reach_the_prompt_and_linking(tmp_path):
    """tables.json's wordings (`column_names`: StuID -> "student id") are the schema's readable names when
    the schema is read from the SQLite file too; the tagged prompt writes them, the question links through
    them, they survive the examples file (to_dict/from_dict), and a database without an entry keeps its
    identifier words."""
    from text2sql.schema import Schema
    from text2sql.schema_tags import schema_tags

    root = tmp_path / "spider"
    for db in ("dorm_1", "plain_1"):
        path = root / "database" / db / f"{db}.sqlite"
        path.parent.mkdir(parents=True)
        conn = sqlite3.connect(path)
        conn.executescript("CREATE TABLE Student (StuID INTEGER PRIMARY KEY, Fname TEXT, Age INTEGER);"
                           "INSERT INTO Student VALUES (1, 'Linda', 18), (2, 'Tracy', 19);")
        conn.close()
    (root / "tables.json").write_text(json.dumps([{
        "db_id": "dorm_1", "table_names_original": ["Student"], "table_names": ["student"],
        "column_names_original": [[-1, "*"], [0, "StuID"], [0, "Fname"], [0, "Age"]],
        "column_names": [[-1, "*"], [0, "student id"], [0, "first name"], [0, "age"]],
        "column_types": ["text", "number", "text", "number"], "primary_keys": [1], "foreign_keys": []}]))
    (root / "train.json").write_text(json.dumps([
        {"db_id": db, "question": "What is the first name of the student with student id 1?",
         "query": "SELECT Fname FROM Student WHERE StuID = 1"} for db in ("dorm_1", "plain_1")]))
    worded, plain = SpiderFolder(root, RecordErrors(quiet=True)).load_split("train.json")
    assert [c.readable for c in worded.schema.tables[0].columns] == ["student id", "first name", "age"]
    assert [c.readable for c in plain.schema.tables[0].columns] == ["", "", ""]
    text = schema_tags(worded.schema).schema_text(worded.schema.tables)
    assert text == "tab1 student: col1 student id int pk, col2 first name text, col3 age int"
    assert schema_tags(plain.schema).schema_text(plain.schema.tables) == \
        "tab1 student: col1 stu id int pk, col2 fname text, col3 age int"
    annotated = schema_tags(worded.schema).annotate(worded.question)
    assert "first name (col2)" in annotated and "student id (col1)" in annotated
    assert "first name (col" not in schema_tags(plain.schema).annotate(plain.question)
    assert Schema.from_dict(worded.schema.to_dict()) == worded.schema
    assert "readable" not in json.dumps(plain.schema.to_dict())  # files of other sources are unchanged


def test_prepare_sqltext_adds_generated_sql_and_synthetic_schemas(tmp_path, spider_dir, capsys):
    """Pretraining SQL beyond Spider's gold: generated queries on the training databases (never on the
    held-out one) and the schemas + SQL of synthetic databases from many generated domains."""
    from text2sql import prepare
    from gpt.tokenizer import Tokenizer

    def corpus_text(out, *extra):
        assert prepare.main(["--source", "sqltext", "--out", str(out), "--vocab-size", "400",
                             "--corpus-spider-dir", str(spider_dir), "--holdout-databases", "1", *extra]) == 0
        meta = json.loads((out / "meta.json").read_text())
        tok = Tokenizer.load(str(out / meta["tokenizer"]))
        return "".join(tok.decode(np.load(out / s["tokens"]).tolist())
                       for split in meta["splits"].values() for s in split)

    gold_only = corpus_text(tmp_path / "a")
    more = corpus_text(tmp_path / "b", "--corpus-generated-per-db", "5", "--corpus-synthetic-databases", "10")
    assert more.count("SELECT") > gold_only.count("SELECT") + 20
    import re

    def schemas(text):  # the distinct schema texts written (each starts "tab1 <words>: col1 ...")
        return set(re.findall(r"tab1 [a-z ]+: col1 [^|\n]*", text))

    assert len(schemas(more)) >= len(schemas(gold_only)) + 3  # the synthetic databases' schemas
    for bad in (["--corpus-generated-per-db", "3"], ["--corpus-synthetic-databases", "2"]):
        args = ["--source", "sqltext", "--out", str(tmp_path / "c"), "--corpus-spider-dir", str(spider_dir)]
        if bad[0] == "--corpus-generated-per-db":
            args = ["--source", "sqltext", "--out", str(tmp_path / "c"), "--corpus-synthetic-databases", "4"]
        assert prepare.main(args + bad) == 2
        assert "error:" in capsys.readouterr().err


def test_ask_finds_the_tables_json_beside_a_spider_database(tmp_path):
    """`ask --db <folder>/database/x/x.sqlite` gives the model the tables.json wordings it trained with."""
    from text2sql.sources.spider import readable_names_beside

    root = tmp_path / "spider"
    path = root / "database" / "dorm_1" / "dorm_1.sqlite"
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE Student (StuID INTEGER PRIMARY KEY, Fname TEXT);")
    conn.close()
    from text2sql.schema import read_schema

    assert readable_names_beside(path, read_schema(path)).tables[0].columns[1].readable == ""  # no tables.json
    (root / "tables.json").write_text(json.dumps([{
        "db_id": "dorm_1", "table_names_original": ["Student"], "table_names": ["student"],
        "column_names_original": [[-1, "*"], [0, "StuID"], [0, "Fname"]],
        "column_names": [[-1, "*"], [0, "student id"], [0, "first name"]],
        "column_types": ["text", "number", "text"], "primary_keys": [1], "foreign_keys": []}]))
    schema = readable_names_beside(path, read_schema(path))
    assert [c.readable for c in schema.tables[0].columns] == ["student id", "first name"]
    other = tmp_path / "elsewhere.sqlite"
    other.write_bytes(path.read_bytes())
    assert readable_names_beside(other, read_schema(other)).tables[0].columns[1].readable == ""


def test_synthetic_prompts_keep_identifier_words(tmp_path):
    """The generator's tables.json words a column without its table (`actor_name` -> "name"); the main
    job's prompts never used those wordings, so the synthetic source and `ask` on its databases leave them
    out (prompt format 6 changed only Spider-format folders of people's annotations)."""
    from text2sql import prepare
    from text2sql.schema import read_schema
    from text2sql.sources.spider import readable_names_beside

    out = tmp_path / "syn"
    assert prepare.main(["--source", "synthetic", "--out", str(out), "--vocab-size", "300",
                         "--synthetic-databases", "4", "--synthetic-train-per-db", "5",
                         "--synthetic-eval-per-db", "2"]) == 0
    text = (out / "examples" / "train.jsonl").read_text()
    assert text and '"readable"' not in text
    tables = json.loads((out / "synthetic" / "tables.json").read_text())
    assert any(r[1] != o[1].lower() for e in tables for o, r in zip(e["column_names_original"], e["column_names"]))
    db = next((out / "synthetic" / "database").glob("*/*.sqlite"))
    assert all(not c.readable for t in readable_names_beside(db, read_schema(db)).tables for c in t.columns)
