"""The synthetic generator: deterministic by seed, split by database, the held-out splits really share no
table or column name (held-out domains) and no question template (held-out wordings) with training, every
gold query executes and returns rows, the SQL shapes are all present, and the output is a valid
Spider-format folder."""
import json
import sqlite3
from collections import Counter

import re

import pytest
import sqlglot

from text2sql import linking, synthetic
from text2sql.synthetic import questions
from text2sql.baseline import slot_question
from text2sql.schema import read_schema
from text2sql.sql_exec import execute_sql


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    counts = synthetic.generate(out, seed=3, num_databases=80, train_per_db=40, eval_per_db=12, progress=False)
    return out, counts


def load(out, split):
    return json.loads((out / f"{split}.json").read_text())


def test_deterministic_by_seed(small, tmp_path):
    out, _ = small
    again = tmp_path / "again"
    synthetic.generate(again, seed=3, num_databases=80, train_per_db=40, eval_per_db=12, progress=False)
    for name in [f"{split}.json" for split in synthetic.SPLITS] + ["tables.json"]:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    for db in sorted((out / "database").iterdir()):
        a = sqlite3.connect(db / f"{db.name}.sqlite")
        b = sqlite3.connect(again / "database" / db.name / f"{db.name}.sqlite")
        assert list(a.iterdump()) == list(b.iterdump()), db.name
        a.close(), b.close()
    other = tmp_path / "other"
    synthetic.generate(other, seed=4, num_databases=80, train_per_db=40, eval_per_db=12, progress=False)
    assert (out / "train.json").read_bytes() != (other / "train.json").read_bytes()


def test_split_by_database(small):
    out, counts = small
    dbs = {split: {r["db_id"] for r in load(out, split)} for split in synthetic.SPLITS}
    assert all(dbs.values())
    for a in synthetic.SPLITS:
        for b in synthetic.SPLITS:
            assert a == b or not dbs[a] & dbs[b], (a, b)
    assert len(dbs["test_domains"]) == len(dbs["dev"]) == len(dbs["test_wordings"]) == 80 // 20
    assert counts["train"] == len(load(out, "train"))
    # examples are unique within a database
    train = load(out, "train")
    assert len({(r["db_id"], r["question"]) for r in train}) == len(train)


def test_every_gold_query_executes_and_returns_rows(small):
    out, _ = small
    for split in synthetic.SPLITS:
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
        pk = {t.name: next(c.name for c in t.columns if c.primary_key) for t in schema.tables}
        assert fk_cols and all(c.references[1] == pk[c.references[0]] for c in fk_cols)
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
    assert synthetic.main(["--out", str(tmp_path / "s"), "--databases", "4", "--train-per-db", "5",
                           "--eval-per-db", "3"]) == 0
    assert "train" in capsys.readouterr().out
    assert (tmp_path / "s" / "tables.json").exists()
    assert synthetic.main(["--out", str(tmp_path / "t"), "--databases", "3"]) == 2
    assert "at least 4" in capsys.readouterr().err


def names_of(out, db_ids) -> set[str]:
    """Every table and column identifier of these databases."""
    tables = {t["db_id"]: t for t in json.loads((out / "tables.json").read_text())}
    names = set()
    for db_id in db_ids:
        names |= set(tables[db_id]["table_names_original"])
        names |= {n for _, n in tables[db_id]["column_names_original"] if n != "*"}
    return names


def test_held_out_domains_share_no_name_with_training(small):
    out, _ = small
    train_names = names_of(out, {r["db_id"] for r in load(out, "train")})
    test_names = names_of(out, {r["db_id"] for r in load(out, "test_domains")})
    lower = {n.lower() for n in train_names}
    assert test_names and not {n.lower() for n in test_names} & lower, sorted(test_names)
    # and the words they are made of: a held-out theme's entity or attribute never appears in training
    train_words = {w for n in train_names for w in linking.identifier_words(n)}
    held_out = {w for t in synthetic.HELD_OUT_THEMES for e in synthetic.THEMES[t] for w in e.singular.split("_")}
    held_out |= {w for a in synthetic.HELD_OUT_ATTRIBUTES for w in a.split("_")}
    assert not held_out & train_words, sorted(held_out & train_words)


def test_held_out_wordings_are_never_used_in_training(small):
    """A question template is what is left when the schema's names and the values become slots (the lookup
    baseline's template): no held-out-wordings template occurs among the training templates."""
    from text2sql.sources.spider import SpiderFolder

    folder = SpiderFolder(small[0])
    train = {slot_question(e.question, e.schema)[0] for e in folder.load_split("train.json")}
    held = [slot_question(e.question, e.schema)[0] for e in folder.load_split("test_wordings.json")]
    assert held and not set(held) & train, sorted(set(held) & train)[:5]
    dev = [slot_question(e.question, e.schema)[0] for e in folder.load_split("dev.json")]
    assert sum(t in train for t in dev) >= max(1, len(dev) // 10)  # the check can see a shared template


def test_many_wordings_and_naming_styles(small):
    out, _ = small
    train = load(out, "train")
    by_shape = {}
    for r in train:  # distinct question openings (first three words, case kept) per shape
        by_shape.setdefault(r["shape"], set()).add(" ".join(r["question"].split()[:3]))
    assert min(len(v) for v in by_shape.values()) >= 5, {k: len(v) for k, v in by_shape.items()}
    identifiers = [c for t in json.loads((out / "tables.json").read_text()) for _, c in t["column_names_original"]]
    assert any("_" in n for n in identifiers) and any(n[:1].islower() and n != n.lower() for n in identifiers) \
        and any(n[:1].isupper() for n in identifiers)  # snake_case, camelCase and PascalCase databases
    assert any(r["db_id"].startswith("invented_") for r in train)  # made-up names in training


def test_every_shape_has_ten_or_more_wordings():
    """Each shape (and each variant of one) has >= 10 training wordings from >= 5 templates, and its
    held-out template is not among them; every variant is reachable from a shape method."""
    counts = questions.check_held_out_wordings()  # raises if a held-out wording is also a training one
    assert set(counts) == set(questions.WORDINGS)
    for key, templates in questions.WORDINGS.items():
        assert counts[key] >= 10, key
        assert len(templates) - 1 >= 5, key
        train = set(questions.wordings(key, "train"))
        assert not set(questions.wordings(key, "held_out")) & train, key
    source = open(questions.__file__).read()
    for key in questions.WORDINGS:  # each variant is asked for by name (like_* by f"like_{kind}")
        assert f'"{key}"' in source.split("class QuestionMaker")[1] or key.startswith("like_"), key
    # composable parts: verb synonyms, polite and terse forms, both word orders are in the expansions
    every = {w for key in questions.WORDINGS for w in questions.wordings(key, "train")}
    for needle in ["list the", "show me the", "give me the", "what are the", "find the", "tell me the",
                   "please ", "pls ", "could you ", "for {Ts} with"]:
        assert any(needle in w for w in every), needle


def held_out_pattern() -> re.Pattern:
    """A regex matching exactly the questions a held-out template can give, surface forms included."""
    bodies = []
    for key in questions.WORDINGS:
        for w in questions.wordings(key, "held_out"):
            parts = re.split(r"\{\w+\}", w.rstrip("?."))
            bodies.append("(?:.+?)".join(re.escape(p) for p in parts))
    leads = "|".join(re.escape(a) for a in questions.ASKING + questions.ASKING_FOR)
    return re.compile(f"^(?:(?:{leads}) )?(?:{'|'.join(bodies)})[?.]?$", re.IGNORECASE)


def test_held_out_questions_come_only_from_held_out_templates(small):
    out, _ = small
    pattern = held_out_pattern()
    held = load(out, "test_wordings")
    assert held and all(pattern.match(r["question"]) for r in held), \
        [r["question"] for r in held if not pattern.match(r["question"])][:5]
    for split in ("train", "dev"):
        leaked = [r["question"] for r in load(out, split) if pattern.match(r["question"])]
        assert not leaked, leaked[:5]
