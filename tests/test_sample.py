"""train/sample.py (plain text) and text2sql/ask.py (a question to a database): the CLIs end to end on a
freshly trained tiny model, streaming equals a plain decode, stop tokens, determinism by seed, one-line
errors."""
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data.prepare import write_tokenized
from gpt.generate import generate_ids
from gpt.tokenizer import Tokenizer
from text2sql.prompt import SPECIAL_TOKENS
from train.checkpoint import load_checkpoint, load_model
from train.config import load_config
from train.loop import run

ROOT = Path(__file__).resolve().parents[1]
WORDS = "select name from table where count the of and to a in is city people how many are there".split()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny model trained for a few steps on word soup, with a BPE that knows the prompt's tokens."""
    d = tmp_path_factory.mktemp("sample")
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) + "\nÉtude ünïcode ✓" for _ in range(400)]
    tok = Tokenizer.train(texts, 320, SPECIAL_TOKENS)
    (d / "data").mkdir()
    tok.save(str(d / "data" / "tokenizer.tiktoken"))
    docs = [[(t[:20], False), (t[20:], True)] for t in texts]  # prompt/answer segments: exercises the mask
    write_tokenized(d / "data", tok, {"train": docs[:350], "val": docs[350:]}, SPECIAL_TOKENS,
                    progress=False, tokenizer="tokenizer.tiktoken", source="test")
    run(load_config("tiny", [f"data.dir={d / 'data'}", f"train.out_dir={d / 'run'}", "train.max_steps=15",
                             "train.progress=false", "train.eval_interval=0", "train.threads=1"]))
    return d / "run"


def cli(module, *args, stdin=None):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, input=stdin, timeout=120)


def sample_cli(*args, stdin=None):
    return cli("train.sample", *args, stdin=stdin)


def test_cli_streams_a_continuation_and_is_deterministic_by_seed(run_dir):
    args = ["--checkpoint", str(run_dir), "--prompt", "how many people", "--max-new-tokens", "25",
            "--temperature", "1.0", "--seed", "3"]
    a, b = sample_cli(*args), sample_cli(*args)
    assert a.returncode == 0, a.stderr
    assert a.stdout.startswith("how many people") and len(a.stdout) > len("how many people") + 5
    assert a.stdout == b.stdout
    c = sample_cli("--checkpoint", str(run_dir), "--max-new-tokens", "5", "--no-stream", stdin="the city")
    assert c.returncode == 0 and c.stdout.startswith("the city"), c.stderr


def test_streaming_decode_equals_full_decode_and_stop_tokens(run_dir):
    state = load_checkpoint(run_dir)
    tok = Tokenizer.load(state["tokenizer"])
    model = load_model(state, torch.device("cpu"))
    prompt = tok.encode("Étude the city")
    streamed, decoder = [], tok.stream_decoder()
    ids = generate_ids(model, prompt, 40, 1.0, None, None, set(), 0,
                       on_token=lambda t: streamed.append(decoder.feed(t)))
    assert len(ids) == 40
    assert "".join(streamed) + decoder.flush() == tok.decode(ids)
    greedy = generate_ids(model, prompt, 10, 0.0, None, None, set(), 0)
    # a stop token ends generation and is not returned
    k = next(i for i, t in enumerate(greedy) if t not in greedy[:i] and i > 0) if len(set(greedy)) > 1 else 0
    stopped = generate_ids(model, prompt, 10, 0.0, None, None, {greedy[k]}, 0)
    assert stopped == greedy[:k]


def test_ask_writes_sql_and_runs_it(run_dir, tmp_path):
    db = tmp_path / "shop.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE city (id INTEGER PRIMARY KEY, name TEXT, people INT)")
        conn.execute("INSERT INTO city VALUES (1, 'Oslo', 700000)")
    args = ["--checkpoint", str(run_dir), "--db", str(db), "how many people", "--max-new-tokens", "12"]
    res, again = cli("text2sql.ask", *args), cli("text2sql.ask", *args)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("SQL:") and len(lines) >= 2  # the SQL, then its rows or the SQLite error
    assert res.stdout == again.stdout  # greedy: the same SQL every time


@pytest.mark.parametrize("args, message", [
    (["--db", "/nonexistent.sqlite", "how many"], "does not exist"),
    (["--db", "README.md", "how many"], "not a readable SQLite database"),
    (["--db", "DB", ""], "question is empty"),
])
def test_ask_user_errors_are_one_line(run_dir, tmp_path, capsys, monkeypatch, args, message):
    from text2sql.ask import main

    db = tmp_path / "one.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (a INT)")
    monkeypatch.chdir(ROOT)
    rc = main(["--checkpoint", str(run_dir), *[str(db) if a == "DB" else a for a in args]])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.strip().splitlines()[-1].startswith("error:"), err


def test_bad_checkpoint_is_a_one_line_error_without_traceback():
    res = sample_cli("--checkpoint", "/nonexistent/ckpt.pt", "--prompt", "x")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "does not exist" in lines[0], res.stderr


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "README.md", "--prompt", "x"], "cannot be read"),
    (["--checkpoint", "tests", "--prompt", "x"], "no checkpoint"),
    (["--prompt", "x", "--top-p", "0"], "--top-p"),
    (["--prompt", "x", "--tokenizer", "/nonexistent/tok"], "tokenizer file"),
    (["--prompt", ""], "prompt is empty"),
])
def test_user_errors_are_one_line(run_dir, capsys, monkeypatch, args, message):
    from train.sample import main

    monkeypatch.chdir(ROOT)
    if "--checkpoint" not in args:
        args = ["--checkpoint", str(run_dir), *args]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and err.strip().splitlines()[-1].startswith("error:"), err
