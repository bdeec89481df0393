"""The prompt format: schema text, the cut rule, special tokens never injected by user text, the loss mask."""
import pytest

from text2sql.prompt import (QUESTION_TOKEN, SCHEMA_TOKEN, SPECIAL_TOKENS, SQL_END_TOKEN, SQL_TOKEN, decode_sql,
                             encode_example, fit_and_encode_prompt, fit_schema, normalize_sql_text,
                             special_token_ids)
from text2sql.linking import link
from text2sql.prompt import linked_schema
from text2sql.schema import Column, Schema, Table, compact_type
from text2sql.schema_tags import schema_tags


@pytest.fixture(scope="module")
def tok():
    from gpt.tokenizer import Tokenizer

    texts = ["singer: id int pk, name text, country text | concert: id int pk, singer_id int fk singer.id\n"
             "How many singers are there?\nSELECT COUNT(*) FROM singer\n"] * 20
    return Tokenizer.train(texts, 300, SPECIAL_TOKENS)


def schema():
    return Schema([
        Table("singer", [Column("id", "INTEGER", True), Column("name", "VARCHAR(40)"), Column("country", "text")]),
        Table("concert", [Column("id", "int", True), Column("year", "NUMERIC"),
                          Column("singer_id", "int", references=("singer", "id"))]),
        Table("stadium", [Column("id", "int", True), Column("capacity", "int")]),
    ])


def test_schema_text_and_round_trip():
    s = schema()
    assert s.to_text() == ("singer: id int pk, name text, country text | concert: id int pk, year real, "
                           "singer_id int fk singer.id | stadium: id int pk, capacity int")
    assert s.to_text(with_types=False).startswith("singer: id pk, name, country | concert: id pk, year, singer_id fk")
    assert Schema.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="malformed schema"):
        Schema.from_dict({"tables": [{"columns": []}]})
    assert [compact_type(t) for t in ["BIGINT", "varchar(255)", "DOUBLE", "DATETIME", "boolean", ""]] == \
        ["int", "text", "real", "time", "bool", ""]


def test_fit_schema_rule():
    s = schema()
    q = "How many concerts were there in each year?"
    linked, marked, relevance = linked_schema(s, q)
    assert relevance == {"concert": 3, "singer": 1, "stadium": 0}  # named / its foreign-key neighbour / neither
    tags = schema_tags(s)  # tags follow the schema's own order; the text puts linked tables first
    full, untyped = tags.schema_text(linked.tables, True), tags.schema_text(linked.tables, False)
    assert full == ("tab2 concert: col1 id int pk, col4 year real, col5 singer id int fk tab1 | "
                    "tab1 singer: col1 id int pk, col2 name text, col3 country text | "
                    "tab3 stadium: col1 id int pk, col6 capacity int")
    assert fit_schema(s, q, len(full)) == full                    # 1. fits as it is
    assert fit_schema(s, q, len(full) - 1) == untyped             # 2. types dropped first
    # 3. tables dropped: stadium (unrelated) goes first; singer (a neighbour of the named concert) stays
    cut = fit_schema(s, q, len(untyped) - 1)
    assert "stadium" not in cut and "tab2 concert:" in cut and "tab1 singer:" in cut
    only = "tab2 concert: col1 id pk, col4 year, col5 singer id fk tab1"
    assert fit_schema(s, q, len(only) + 2) == only
    # a question naming the stadium keeps it first
    assert fit_schema(s, "What is the capacity of each stadium?", 40).startswith("tab3 stadium: col1 id pk, col6 capacity")
    # 4. a single table that is still too long is cut at the budget
    assert fit_schema(s, q, 10) == "tab2 conce"
    assert fit_schema(s, q, 0) == ""


def test_schema_tags_round_trip_and_annotation():
    s = schema()
    tags = schema_tags(s)
    gold = ("SELECT T1.name, count(*) FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id "
            "WHERE T2.year > 2000 AND T1.country = 'singer name' GROUP BY T1.name ORDER BY \"capacity\"")
    tagged = tags.to_tags(gold)
    assert tagged == ("SELECT T1.col2, count(*) FROM tab1 AS T1 JOIN tab2 AS T2 ON T1.col1 = T2.col5 "
                      "WHERE T2.col4 > 2000 AND T1.col3 = 'singer name' GROUP BY T1.col2 ORDER BY col6")
    assert tags.from_tags(tagged) == gold.replace('\"capacity\"', "capacity")  # literals and aliases untouched
    assert tags.tagged.tables[1].columns[2].references == ("tab1", "col1")
    assert tags.annotate("Which singers have a concert in 1999?") == "Which singers (tab1) have a concert (tab2) in 1999?"
    # a name that needs quoting, or is a keyword, is quoted when it comes back
    odd = Schema([Table("order", [Column("home town", "text"), Column("count", "int")])])
    t = schema_tags(odd)
    assert t.to_tags('SELECT "home town", count(*) FROM "order"') == "SELECT col1, count(*) FROM tab1"
    assert t.to_tags("SELECT count FROM tab1") == "SELECT col2 FROM tab1"  # a column, not the function
    assert t.from_tags("SELECT col1, col2 FROM tab1") == 'SELECT "home town", "count" FROM "order"'


def test_linking_reads_names_in_every_style():
    s = Schema([Table("FireStations", [Column("stationId", "int", True), Column("StationName", "text"),
                                      Column("founded_yr", "int")])])
    tables, columns = link(s, "List the name of the fire stations founded after 1990")
    assert tables == {"FireStations"} and ("FireStations", "StationName") not in columns  # "name" is StationName's rest
    s2 = Schema([Table("fire_station", [Column("fire_station_name", "text"), Column("height", "int")])])
    tables, columns = link(s2, "Which fire station has the greatest height? Give its name.")
    assert tables == {"fire_station"} and columns == {("fire_station", "fire_station_name"),
                                                      ("fire_station", "height")}


def test_the_cut_keeps_every_table_the_gold_sql_needs_when_that_fits(tmp_path):
    """On generated databases of three tables, with a budget that fits just the tables the gold SQL uses,
    the cut keeps all of them (linked tables and their neighbours go last)."""
    import re

    from text2sql import synthetic
    from text2sql.sources.spider import SpiderFolder

    synthetic.generate(tmp_path, seed=5, num_databases=40, train_per_db=30, eval_per_db=10, progress=False)
    checked = 0
    for e in SpiderFolder(tmp_path).load_split("train.json"):
        if len(e.schema.tables) < 3:
            continue
        words = set(re.findall(r"\w+", e.sql))
        needed = [t for t in e.schema.tables if t.name in words]
        linked, marked, _ = linked_schema(e.schema, e.question)
        tags = schema_tags(e.schema)
        budget = len(tags.schema_text([t for t in linked.tables if t in needed], False))
        cut = fit_schema(e.schema, e.question, budget)
        kept = {tags.name_of[m] for m in re.findall(r"(?:^|\| )(tab\d+) ", cut)}
        assert {t.name for t in needed} <= kept, (e.question, e.sql, cut)
        checked += 1
    assert checked > 100


def test_user_text_never_becomes_a_control_token(tok):
    sp = special_token_ids(tok)
    question = f"What does {SQL_TOKEN} mean in {SQL_END_TOKEN}?"
    ids, mask = encode_example(tok, f"t: a text {SCHEMA_TOKEN}", question, f"SELECT '{QUESTION_TOKEN}' FROM t")
    for token in SPECIAL_TOKENS[1:]:
        assert ids.count(sp[token]) == 1, token  # only the ones the format itself inserts
    assert tok.decode(ids).count(SQL_TOKEN) == 2  # the literal text is still there, as ordinary tokens
    assert ids[0] == sp[SCHEMA_TOKEN] and ids[-1] == sp[SQL_END_TOKEN]


def test_loss_mask_covers_exactly_the_sql_and_end(tok):
    sp = special_token_ids(tok)
    sql = "SELECT COUNT(*) FROM singer"
    ids, mask = encode_example(tok, schema(), "How many singers are there?", sql + " ;\n")
    assert len(ids) == len(mask) and set(mask) == {0, 1}
    first = mask.index(1)
    assert ids[first - 1] == sp[SQL_TOKEN]                  # everything up to <|sql|> is context
    assert all(m == 0 for m in mask[:first]) and all(m == 1 for m in mask[first:])
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "SELECT COUNT(*) FROM tab1" + SQL_END_TOKEN
    assert decode_sql(tok, [i for i, m in zip(ids, mask) if m], schema()) == sql  # tags back to names
    # the prompt alone is the masked-out prefix: what inference feeds the model
    assert fit_and_encode_prompt(tok, schema(), "How many singers are there?", 1024) == ids[:first]
    assert tok.decode(ids[:first]).endswith("How many singers (tab1) are there?" + SQL_TOKEN)


def test_fit_and_encode_prompt_respects_the_budget(tok):
    s = schema()
    for block in (48, 64, 256):
        ids = fit_and_encode_prompt(tok, s, "How many concerts are there?", block, max_sql_tokens=16)
        assert len(ids) <= block - 16
        assert ids[-1] == special_token_ids(tok)[SQL_TOKEN]
    long_question = "why " * 500
    ids = fit_and_encode_prompt(tok, s, long_question, 128, max_sql_tokens=32)
    assert len(ids) <= 96


def test_decode_sql_stops_at_the_first_control_token(tok):
    sp = special_token_ids(tok)
    ids = tok.encode_ordinary("SELECT name FROM singer") + [sp[SQL_END_TOKEN]] + tok.encode_ordinary(" junk")
    assert decode_sql(tok, ids) == "SELECT name FROM singer"
    assert decode_sql(tok, tok.encode_ordinary(" SELECT 1 ")) == "SELECT 1"


def test_missing_special_tokens_is_a_clear_error():
    from gpt.tokenizer import Tokenizer

    plain = Tokenizer.train(["hello world"] * 5, 260, ["<|endoftext|>"])
    with pytest.raises(ValueError, match="special token"):
        special_token_ids(plain)


def test_normalize_sql_text():
    assert normalize_sql_text("  SELECT a\n  FROM t ;  ") == "SELECT a FROM t"


def test_a_checkpoint_of_another_prompt_format_is_refused():
    from text2sql.prompt import PROMPT_VERSION, check_prompt_version

    check_prompt_version({"task": "text2sql", "prompt_version": PROMPT_VERSION})
    check_prompt_version({})  # not trained on text-to-SQL data: nothing to check
    for old in ({"task": "text2sql"}, {"task": "text2sql", "prompt_version": PROMPT_VERSION - 1}):
        with pytest.raises(ValueError, match="prepare the data again and retrain"):
            check_prompt_version(old)
