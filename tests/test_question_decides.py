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


def make_db(folder, script: str):
    path = folder / "db.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return make_db(tmp_path_factory.mktemp("decides"), """
        CREATE TABLE performer (id INTEGER PRIMARY KEY, name TEXT, continent TEXT, height INT);
        INSERT INTO performer VALUES (1, 'Ann', 'Asia', 150), (2, 'Bo', 'America', 1690), (3, 'Cy', 'Europe', 590);
    """)


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


# ---- lists, ranges and patterns (the held-out-domain errors these rules remove are quoted in each test)

@pytest.fixture(scope="module")
def places(tmp_path_factory):
    return make_db(tmp_path_factory.mktemp("lists"), """
        CREATE TABLE astronaut (id INTEGER PRIMARY KEY, name TEXT, continent TEXT, votes INT);
        INSERT INTO astronaut VALUES (1, 'Sam Hill', 'Africa', 236), (2, 'Ann Bay', 'America', 456),
                                     (3, 'Cy Ray', 'Asia', 300), (4, 'Bo Lane', 'Europe', 100);
    """)


@pytest.mark.parametrize("question", ["astronauts with continent Africa or America",
                                      "astronauts with continent Africa or America, please"])
def test_an_in_list_names_each_value_once(places, question):
    """('America', 'America') for "Africa or America": a value twice in one list is refused, with no dead
    end: a string that could only become the excluded value is refused from its first letters, whether
    or not the question goes on after it."""
    twice = "SELECT name FROM astronaut WHERE continent IN ('America', 'America')"
    both = "SELECT name FROM astronaut WHERE continent IN ('America', 'Africa')"
    assert check(places, question, twice, decides=False)
    assert not check(places, question, twice, decides=True)
    assert check(places, question, both, decides=True)
    c = SQLPrefixChecker(read_schema(places), question, places, question_decides=True)
    second = "SELECT name FROM astronaut WHERE continent IN ('America', 'Am"
    if question.endswith("America"):  # 'Am' can only become the excluded 'America'
        assert c.check(second) is None
    else:  # ...or the longer span "America, please" (not 'America' itself)
        assert c.check(second + "erica'") is None and c.check(second + "erica,") is not None
    assert c.check("SELECT name FROM astronaut WHERE continent IN ('America', 'Af") is not None
    # numbers too
    q = "astronauts with 236 or 456 votes"
    assert not check(places, q, "SELECT name FROM astronaut WHERE votes IN (456, 456)", decides=True)
    assert check(places, q, "SELECT name FROM astronaut WHERE votes IN (456, 236)", decides=True)


def test_between_takes_the_questions_two_numbers_low_then_high(places):
    """"BETWEEN 456 AND 456" for "votes between 236 and 456"."""
    q = "votes between 236 and 456: pls find the astronauts"
    good = "SELECT name FROM astronaut WHERE votes BETWEEN 236 AND 456"
    for bad in ("BETWEEN 456 AND 456", "BETWEEN 236 AND 236", "BETWEEN 456 AND 236"):
        sql = good.replace("BETWEEN 236 AND 456", bad)
        assert check(places, q, sql, decides=False), bad
        assert not check(places, q, sql, decides=True), bad
    assert check(places, q, good, decides=True)
    c = SQLPrefixChecker(read_schema(places), q, places, question_decides=True)
    assert c.check("SELECT name FROM astronaut WHERE votes BETWEEN 45") is None  # 456 could take no upper bound


def test_like_pieces_are_whole_words_of_the_question(places):
    """'%a%' for "have Sam in their name", '%ay' for "ends with re"."""
    q = "Can you tell me what astronauts have Sam in their name?"
    assert check(places, q, "SELECT name FROM astronaut WHERE name LIKE '%a%'", decides=False)  # 'a' is stored
    assert not check(places, q, "SELECT name FROM astronaut WHERE name LIKE '%a%'", decides=True)
    assert not check(places, q, "SELECT name FROM astronaut WHERE name LIKE '%Sa%'", decides=True)  # part of a word
    assert check(places, q, "SELECT name FROM astronaut WHERE name LIKE '%Sam%'", decides=True)
    q2 = "astronauts whose name ends with ay"
    assert check(places, q2, "SELECT name FROM astronaut WHERE name LIKE '%ay'", decides=True)
    assert not check(places, q2, "SELECT name FROM astronaut WHERE name LIKE '%re'", decides=True)


def test_a_random_model_under_these_rules_still_finishes_sql_that_runs(places):
    """Constrained decoding with question_decides (as text2sql/decoding.py runs it) on questions that
    invite every rule above: each decode ends in SQL that runs, whatever the (random) model prefers."""
    import torch

    from gpt.generate import PerRowConstraint, beam_search
    from gpt.model import GPT, GPTConfig
    from gpt.tokenizer import Tokenizer
    from text2sql.prompt import SPECIAL_TOKENS, decode_sql, encode_prompt
    from text2sql.sql_constraint import SQLConstraint
    from text2sql.sql_exec import execute_sql

    schema = read_schema(places)
    questions = ["astronauts with continent Africa or America", "votes between 236 and 456",
                 "which astronauts have Sam in their name", "astronauts whose name ends with ay"]
    tok = Tokenizer.train([schema.to_text()] * 20 + questions * 20 + [
        "SELECT name FROM astronaut WHERE continent IN ('Africa', 'America') AND votes BETWEEN 236 AND 456 "
        "OR name LIKE '%Sam%'"] * 20, 400, SPECIAL_TOKENS)
    stop = set(dict(tok.special_tokens).values())
    for seed in range(1):
        torch.manual_seed(seed)
        model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=256, vocab_size=512)).eval()
        for q in questions:
            con = PerRowConstraint([SQLConstraint(tok, schema, q, places, max_tokens=100, question_decides=True)])
            hyps = beam_search(model, [encode_prompt(tok, schema.to_text(), q)], 2, 100, stop, n_vocab=tok.n_vocab,
                               constraint=con)[0]
            finished = [h for h in hyps if h.finished]
            assert finished, q
            for h in finished:
                sql = decode_sql(tok, h.ids)
                assert execute_sql(places, sql).ok, (q, sql)


def test_no_dead_end_when_the_question_names_no_stored_value(places):
    """The list rule also holds where every stored value is offered (the question names none): a string
    that could only become a value the list already has is refused from its first letters."""
    q = "astronauts from two continents"
    c = SQLPrefixChecker(read_schema(places), q, places, question_decides=True)
    assert c.check("SELECT name FROM astronaut WHERE continent IN ('Asia', 'Asi") is None
    assert c.check("SELECT name FROM astronaut WHERE continent IN ('Asia', 'Af") is not None
    assert c.accepts("SELECT name FROM astronaut WHERE continent IN ('Asia', 'Africa')")
    # counts: small integers go through the same rules (no IN (1, 1))
    assert not c.accepts("SELECT continent FROM astronaut GROUP BY continent HAVING COUNT(*) IN (1, 1)")


# ---- the token budget: a random model under the constraint always finishes SQL that runs

@pytest.fixture(scope="module")
def crew(tmp_path_factory):
    """Two tables joined by a foreign key, and stored values longer than a small budget."""
    return make_db(tmp_path_factory.mktemp("crew"), """
        CREATE TABLE mission (id INTEGER PRIMARY KEY, title TEXT, year INT);
        CREATE TABLE astronaut (id INTEGER PRIMARY KEY, name TEXT, continent TEXT, votes INT,
                                mission_id INTEGER REFERENCES mission(id));
        INSERT INTO mission VALUES (1, 'Apollo eleven to the sea of tranquility and back again', 1969),
                                   (2, 'Gemini', 1965);
        INSERT INTO astronaut VALUES (1, 'Sam Hill', 'Africa', 236, 1), (2, 'Ann Bay', 'America', 456, 2),
                                     (3, 'Cy Ray', 'Asia', 300, 1), (4, 'Bo Lane', 'Europe', 100, 2);
    """)


@pytest.mark.parametrize("budget", [8, 15, 30])
def test_random_model_with_a_small_budget_finishes_sql_that_runs(crew, budget):
    """With only `budget` steps (a long prompt leaves few: steps = block size - prompt length), a random,
    untrained model, greedy and in beam search, with and without question_decides, ends every decode with
    <|end|> in time, and the SQL parses and runs on the database."""
    import torch

    from gpt.generate import PerRowConstraint, beam_search, decode_batch
    from gpt.model import GPT, GPTConfig
    from gpt.tokenizer import Tokenizer
    from text2sql.prompt import SPECIAL_TOKENS, decode_sql, encode_prompt
    from text2sql.sql_constraint import SQLConstraint
    from text2sql.sql_exec import execute_sql

    schema = read_schema(crew)
    questions = ["astronauts with continent Africa or America and votes between 236 and 456",
                 "which mission has the title Apollo", "how many astronauts per mission in 1969"]
    tok = Tokenizer.train([schema.to_text()] * 20 + questions * 20 + [
        "SELECT T1.name FROM astronaut AS T1 JOIN mission AS T2 ON T1.mission_id = T2.id WHERE T2.year > 1965",
        "SELECT name FROM astronaut WHERE continent IN ('Africa', 'America') AND votes BETWEEN 236 AND 456"] * 20,
        400, SPECIAL_TOKENS)
    stop = set(dict(tok.special_tokens).values())
    runs = 0
    for seed in range(1):
        torch.manual_seed(seed)
        model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=256, vocab_size=512)).eval()
        for q in questions:
            prompt = encode_prompt(tok, schema.to_text(), q)
            for decides in (False, True):
                cons = [SQLConstraint(tok, schema, q, crew, max_tokens=budget, question_decides=decides)
                        for _ in range(2)]
                ids = decode_batch(model, [prompt], budget, 0.0, stop, n_vocab=tok.n_vocab,
                                   constraint=PerRowConstraint(cons[:1]))[0]
                hyps = beam_search(model, [prompt], 2, budget, stop, n_vocab=tok.n_vocab,
                                   constraint=PerRowConstraint(cons[1:]))[0]
                assert len(ids) < budget and cons[0].is_complete(ids), (q, decode_sql(tok, ids))
                assert hyps and all(h.finished for h in hyps), (q, [decode_sql(tok, h.ids) for h in hyps])
                for out in [ids] + [h.ids for h in hyps]:
                    sql = decode_sql(tok, out)
                    r = execute_sql(crew, sql)
                    assert r.ok, (q, budget, sql, r.error)
                    runs += 1
    assert runs == len(questions) * 2 * 3
