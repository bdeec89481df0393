"""Smoke test of bench/tokenizer.py on a small slice of text (a benchmark must not rot; its numbers
are not checked here, only that it runs, checks ids and writes its results)."""
import json

import pytest

from tests.conftest import shared_path


def test_tokenizer_benchmark_runs_and_writes_results(tmp_path):
    pytest.importorskip("tiktoken")
    gpt2 = shared_path("data", "gpt2")
    text = shared_path("data", "text", "tinyshakespeare.txt").read_text(encoding="utf-8")[:60_000]
    sample = tmp_path / "sample.txt"
    sample.write_text(text, encoding="utf-8")
    from bench.tokenizer import main

    assert main(["--gpt2-dir", str(gpt2), "--text", str(sample), "--repeats", "1", "--train-vocab", "300",
                 "--train-repeats", "1", "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "tokenizer.json").read_text())
    providers = {(r["bench"], r["provider"]) for r in result["rows"]}
    assert {("encode", "tiktoken"), ("encode", "ours"), ("train", "ours")} <= providers
    assert all(r["MB/s"] > 0 for r in result["rows"] if "MB/s" in r)
    assert (tmp_path / "out" / "tokenizer.csv").read_text().count("\n") == len(result["rows"]) + 1


def test_missing_input_is_a_one_line_error(tmp_path, capsys):
    from bench.tokenizer import main

    assert main(["--text", str(tmp_path / "nope.txt"), "--gpt2-dir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
