"""data/instructions_source.py: the chapter-7 prompt template, loss only on the response (and the end
token), every record whole inside one training window, too-long records reported and skipped, the 85/15
split written out, user text never a control token, one-line errors, and the real 1,100-record file
(skipped when ../shared is absent)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.instructions_source import format_prompt, read_records
from data.prepare import prepare
from data.shards import read_meta
from gpt.tokenizer import Tokenizer
from tests.conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 128


def test_prompt_template_is_the_books():
    with_input = {"instruction": "Rewrite the sentence.", "input": "He go home.", "output": "He goes home."}
    assert format_prompt(with_input) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nRewrite the sentence.\n\n### Input:\nHe go home.\n\n### Response:\n")
    assert format_prompt({**with_input, "input": ""}) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nRewrite the sentence.\n\n### Response:\n")


def records(n=40):
    out = []
    for i in range(n):
        out.append({"instruction": f"Name number {i}.", "input": "" if i % 3 else f"in {i}",
                    "output": f"It is {i}." + (" <|endoftext|> stays text" if i == 5 else "")})
    out.append({"instruction": "Say a lot. " * 60, "input": "", "output": "words " * 40})  # longer than BLOCK
    return out


@pytest.fixture()
def prepared(tmp_path, capsys):
    src = tmp_path / "records.json"
    src.write_text(json.dumps(records()))
    out = tmp_path / "out"
    meta = prepare("instructions", out, input=[str(src)], vocab_size=400, instructions_block_size=BLOCK)
    return out, meta, capsys.readouterr().err


def split_stream(out: Path, split: str):
    meta = read_meta(out)
    ids = np.concatenate([np.load(out / s["tokens"]) for s in meta["splits"][split]]).astype(np.int64)
    masks = [np.load(out / s["mask"]) if s["mask"] else np.ones(s["n_tokens"], np.uint8) for s in meta["splits"][split]]
    return ids, np.concatenate(masks)


def test_records_are_packed_whole_with_loss_on_the_response_only(prepared):
    out, meta, _ = prepared
    tok = Tokenizer.load(out / "tokenizer.tiktoken")
    end = tok.special_tokens["<|endoftext|>"]
    kept = {r["index"]: r for split in ("train", "val")
            for r in json.loads((out / "instructions" / f"{split}.json").read_text())}
    seen = 0
    for split in ("train", "val"):
        ids, mask = split_stream(out, split)
        for start in range(0, len(ids), BLOCK):
            w_ids, w_mask = ids[start:start + BLOCK].tolist(), mask[start:start + BLOCK].tolist()
            i = 0
            while i < len(w_ids):
                if w_mask[i] == 0:
                    i += 1
                    continue
                j = i
                while j < len(w_ids) and w_mask[j] == 1:
                    j += 1
                response = w_ids[i:j]
                assert response[-1] == end, "the response ends with the (learned) end token, in the same window"
                text = tok.decode(response[:-1])
                matches = [r for r in kept.values() if r["output"] == text]
                assert matches, f"learned span {text!r} is not a whole response"
                prompt = tok.encode_ordinary(format_prompt(matches[0]))
                assert w_ids[i - len(prompt):i] == prompt, "the prompt is in the same window, unlearned"
                assert all(m == 0 for m in w_mask[i - len(prompt):i])
                seen += 1
                i = j
    assert seen == 40  # every record but the too-long one
    assert meta["block_size"] == BLOCK and meta["task"] == "instructions"


def test_too_long_records_are_reported_and_skipped(prepared):
    out, meta, err = prepared
    skipped = meta["instructions"]["skipped_too_long"]
    assert sum(len(v) for v in skipped.values()) == 1 and 40 in [i for v in skipped.values() for i in v]
    assert "record 40 has" in err and f"more than the block size {BLOCK}" in err
    assert json.loads((out / "meta.json").read_text())["instructions"]["skipped_too_long"] == skipped


def test_split_is_85_15_and_written_out(prepared):
    out, meta, _ = prepared
    train = json.loads((out / "instructions" / "train.json").read_text())
    val = json.loads((out / "instructions" / "val.json").read_text())
    assert (len(train), len(val)) == (35, 6) and meta["instructions"]["records"] == {"train": 35, "val": 6}
    assert not {r["index"] for r in train} & {r["index"] for r in val}


def test_special_token_text_in_a_record_stays_text(prepared):
    out, _, _ = prepared
    tok = Tokenizer.load(out / "tokenizer.tiktoken")
    end = tok.special_tokens["<|endoftext|>"]
    for split in ("train", "val"):
        ids, _ = split_stream(out, split)
        text = tok.decode([t for t in ids.tolist() if t != end])
        if "stays text" in text:
            assert "It is 5. <|endoftext|> stays text" in text
            return
    pytest.fail("record 5 not found")


def test_user_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": "x", "output": 3}]))
    with pytest.raises(ValueError, match="record 0 needs string fields"):
        read_records(bad)
    r = subprocess.run([sys.executable, "-m", "data.prepare", "--source", "instructions", "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "needs --input" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_options_coexist_with_every_other_source():
    """One parser holds every source's options (text2sql's included): no clash with --block-size or --input."""
    import text2sql.prepare  # noqa: F401  (registers the text-to-SQL sources)
    from data.prepare import build_parser, discover_sources

    sources = discover_sources()
    assert {"instructions", "text", "synthetic"} <= set(sources)
    args = build_parser(sources).parse_args(["--source", "instructions", "--out", "o", "--input", "f.json"])
    assert args.input == ["f.json"] and args.instructions_block_size == 256 and args.block_size == 256
    r = subprocess.run([sys.executable, "-m", "data.prepare", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "--instructions-block-size" in r.stdout, r.stderr


def test_real_instruction_data(tmp_path):
    data = shared_path("data", "instructions", "instruction-data.json")
    r = subprocess.run([sys.executable, "-m", "data.prepare", "--source", "instructions", "--input", str(data),
                        "--out", str(tmp_path), "--vocab-size", "1024"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    meta = read_meta(tmp_path)
    assert meta["instructions"]["records"] == {"train": 935, "val": 165}
    n_skipped = sum(len(v) for v in meta["instructions"]["skipped_too_long"].values())
    assert n_skipped < 50  # a few long records do not fit 256 tokens of a 1k-id tokenizer
    for split in ("train", "val"):
        learned = sum(s["n_learned"] for s in meta["splits"][split])
        total = sum(s["n_tokens"] for s in meta["splits"][split])
        assert 0 < learned < total
