"""data/shards.py: writer/reader round trip, dtype choice, loss mask, per-rank determinism."""
import json

import numpy as np
import pytest
import torch

from data.shards import (IGNORE_INDEX, BatchLoader, ShardDataset, ShardWriter, read_meta, token_dtype,
                         write_dataset)


def random_documents(rng, n_docs, vocab, masked=False):
    docs = []
    for _ in range(n_docs):
        ids = rng.integers(0, vocab, size=int(rng.integers(5, 200)))
        mask = None
        if masked:  # prompt (not learned) then answer (learned), like a text-to-SQL pair
            split = int(rng.integers(1, len(ids)))
            mask = np.r_[np.zeros(split, np.uint8), np.ones(len(ids) - split, np.uint8)]
        docs.append((ids, mask))
    return docs


def test_token_dtype_switches_at_65536():
    assert token_dtype(50257) == np.uint16
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32
    with pytest.raises(ValueError):
        token_dtype(0)


@pytest.mark.parametrize("vocab", [300, 70000])
def test_round_trip_across_shards(tmp_path, vocab):
    rng = np.random.default_rng(0)
    docs = random_documents(rng, 40, vocab, masked=True)
    meta = write_dataset(tmp_path, {"train": docs}, vocab_size=vocab, eos_id=vocab - 1, shard_tokens=500)
    assert meta["dtype"] == token_dtype(vocab).name
    assert len(meta["splits"]["train"]) > 3  # really split over several files
    ds = ShardDataset(tmp_path, "train")
    stream = np.concatenate([t for t in ds.tokens])
    # a shard whose tokens are all learned has no mask file (None)
    mask = np.concatenate([np.ones(t.size, np.uint8) if m is None else m for t, m in zip(ds.tokens, ds.masks)])
    assert ds.tokens[0].dtype == token_dtype(vocab)
    np.testing.assert_array_equal(stream, np.concatenate([d[0] for d in docs]))
    np.testing.assert_array_equal(mask, np.concatenate([d[1] for d in docs]))
    assert json.loads((tmp_path / "meta.json").read_text())["vocab_size"] == vocab


def test_plain_text_has_no_mask_file(tmp_path):
    rng = np.random.default_rng(1)
    meta = write_dataset(tmp_path, {"train": random_documents(rng, 5, 100)}, vocab_size=100, eos_id=0)
    assert meta["splits"]["train"][0]["mask"] is None
    assert not list(tmp_path.glob("*.mask.npy"))


def test_window_targets_are_shifted_and_masked(tmp_path):
    ids = np.arange(20) % 97
    mask = np.array([0] * 8 + [1] * 12, np.uint8)
    write_dataset(tmp_path, {"train": [(ids, mask)]}, vocab_size=97, eos_id=0)
    ds = ShardDataset(tmp_path, "train")
    x, y = ds.window(0, 4, 6)
    np.testing.assert_array_equal(x, ids[4:10])
    expect = ids[5:11].copy()
    expect[mask[5:11] == 0] = IGNORE_INDEX
    np.testing.assert_array_equal(y, expect)
    assert (y == IGNORE_INDEX).sum() == 3


def test_ranks_partition_the_single_process_batch(tmp_path):
    rng = np.random.default_rng(2)
    write_dataset(tmp_path, {"train": random_documents(rng, 60, 500)}, vocab_size=500, eos_id=0,
                  shard_tokens=1000)
    ds = ShardDataset(tmp_path, "train")
    single = BatchLoader(ds, batch_size=8, seq_len=16, seed=7)
    ranks = [BatchLoader(ds, batch_size=4, seq_len=16, rank=r, world_size=2, seed=7) for r in range(2)]
    for g in [0, 1, single.batches_per_epoch + 3]:  # also across an epoch boundary
        x1, y1 = single.batch(g)
        x2 = torch.cat([r.batch(g)[0] for r in ranks])
        y2 = torch.cat([r.batch(g)[1] for r in ranks])
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    # the two ranks never read the same window in a step
    assert not torch.equal(ranks[0].batch(0)[0], ranks[1].batch(0)[0])


def test_order_depends_on_seed_and_epoch_and_is_reproducible(tmp_path):
    rng = np.random.default_rng(3)
    write_dataset(tmp_path, {"train": random_documents(rng, 40, 300)}, vocab_size=300, eos_id=0)
    ds = ShardDataset(tmp_path, "train")
    a = BatchLoader(ds, 4, 8, seed=1)
    b = BatchLoader(ds, 4, 8, seed=1)
    c = BatchLoader(ds, 4, 8, seed=2)
    assert torch.equal(a.batch(5)[0], b.batch(5)[0])
    assert not torch.equal(a.batch(0)[0], c.batch(0)[0])
    assert not torch.equal(a.batch(0)[0], a.batch(a.batches_per_epoch)[0])  # new epoch, new order
    # next() walks positions; resuming at a position continues the same sequence
    seq = [a.next()[0] for _ in range(3)]
    b.position = 2
    assert torch.equal(b.next()[0], seq[2])
    # every window of an epoch is visited once
    seen = {tuple(a.batch(g)[0][i, :3].tolist()) for g in range(a.batches_per_epoch) for i in range(4)}
    assert len(seen) == a.batches_per_epoch * 4


def test_errors_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="prepare the data"):
        read_meta(tmp_path)
    write_dataset(tmp_path, {"train": [(np.arange(10), None)]}, vocab_size=10, eos_id=0)
    with pytest.raises(ValueError, match="no split 'val'"):
        ShardDataset(tmp_path, "val")
    with pytest.raises(ValueError, match="too few"):
        BatchLoader(ShardDataset(tmp_path, "train"), batch_size=4, seq_len=8)
    w = ShardWriter(tmp_path, "x", vocab_size=10)
    with pytest.raises(ValueError, match="out of range"):
        w.add([1, 2, 10])
    with pytest.raises(ValueError, match="mask has"):
        w.add([1, 2], [1])


# ---------------------------------------------------------------- data.prepare (CLI, text source, plug-ins)

def run_prepare(*args, timeout=120):
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.run([sys.executable, "-m", "data.prepare", *map(str, args)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=timeout)


def test_prepare_text_round_trips_through_the_shards(tmp_path):
    from gpt.tokenizer import Tokenizer

    a, b = tmp_path / "a.txt", tmp_path / "more"
    b.mkdir()
    a.write_text("First file, line one.\nLine two of the first file.\n" * 40)
    (b / "b.txt").write_text("Zweite Datei: Grüße, naïve café.\n" * 30)
    out = tmp_path / "out"
    res = run_prepare("--source", "text", "--input", a, b, "--out", out, "--vocab-size", 300,
                      "--val-fraction", 0.25)
    assert res.returncode == 0, res.stderr
    meta = read_meta(out)
    tok = Tokenizer.load(out / meta["tokenizer"])
    eos = meta["eos_id"]
    assert tok.n_vocab == meta["vocab_size"] == 300 and tok.special_tokens["<|endoftext|>"] == eos
    texts = {}
    for split in ("train", "val"):
        stream = np.concatenate(ShardDataset(out, split).tokens).tolist()
        docs, cur = [], []
        for t in stream:
            if t == eos:
                docs.append(tok.decode(cur))
                cur = []
            else:
                cur.append(t)
        assert not cur  # every document ends with the end token
        texts[split] = docs
    originals = [a.read_text(), (b / "b.txt").read_text()]
    for i, original in enumerate(originals):  # train head + val tail == the file, cut at a line break
        assert texts["train"][i] + texts["val"][i] == original
        assert texts["val"][i].startswith(("Line", "First", "Zweite")) and len(texts["val"][i]) > 0.2 * len(original)


def test_prepare_user_errors_are_one_line(tmp_path):
    for args, message in [(["--source", "text", "--out", tmp_path], "needs --input"),
                          (["--source", "text", "--input", tmp_path / "nope.txt", "--out", tmp_path], "does not exist"),
                          (["--source", "text", "--input", __file__, "--out", tmp_path, "--tokenizer", tmp_path / "t"],
                           "neither 'train', 'gpt2'")]:
        res = run_prepare(*args)
        assert res.returncode == 2 and res.stderr.strip().splitlines()[-1].startswith("error:"), res.stderr
        assert message in res.stderr and "Traceback" not in res.stderr


def test_prepare_gpt2_tokenizer(tmp_path):
    from tests.conftest import shared_path

    gpt2 = shared_path("data", "gpt2")
    (tmp_path / "t.txt").write_text("Hello world, this is GPT-2's tokenizer.\n" * 50)
    res = run_prepare("--source", "text", "--input", tmp_path / "t.txt", "--out", tmp_path / "o",
                      "--tokenizer", "gpt2", "--gpt2-dir", gpt2)
    assert res.returncode == 0, res.stderr
    meta = read_meta(tmp_path / "o")
    assert meta["vocab_size"] == 50257 and meta["eos_id"] == 50256 and meta["dtype"] == "uint16"
    assert ShardDataset(tmp_path / "o", "train").tokens[0][:2].tolist() == [15496, 995]  # "Hello", " world"


def test_plugin_source_segments_become_the_loss_mask(tmp_path, monkeypatch):
    """The plug-in API: a registered source's (text, learn) segments give mask 0 on the prompt."""
    import argparse

    from data import prepare

    monkeypatch.setattr(prepare, "SOURCES", dict(prepare.SOURCES))
    pairs = [[("<|q|> what is two plus two ", False), ("four", True)], [("<|q|> and three ", False), ("three", True)]]
    prepare.register_source(prepare.Source("pairs", "test pairs", lambda args: {"train": pairs * 20},
                                           special_tokens=("<|q|>",)))
    with pytest.raises(ValueError, match="already registered"):
        prepare.register_source(prepare.Source("pairs", "again", lambda args: {}))
    args = argparse.Namespace(source="pairs", out=str(tmp_path), tokenizer="train", vocab_size=280,
                              gpt2_dir="", shard_tokens=1 << 20)
    monkeypatch.setattr(prepare, "discover_sources", lambda: prepare.SOURCES)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", lambda self, argv=None: args)
    assert prepare.main([]) == 0
    meta = read_meta(tmp_path)
    ds = ShardDataset(tmp_path, "train")
    from gpt.tokenizer import Tokenizer

    tok = Tokenizer.load(tmp_path / meta["tokenizer"])
    ids, mask = ds.tokens[0].tolist(), ds.masks[0].tolist()
    q = tok.special_tokens["<|q|>"]
    assert ids[0] == q and ids.count(q) == 40  # the special token is one id, not text
    first_doc = ids[:ids.index(meta["eos_id"]) + 1]
    learned = [t for t, m in zip(first_doc, mask) if m]
    assert tok.decode(learned) == "four<|endoftext|>"


# ---------------------------------------------------------------- inputs checked before work (issue 12)

@pytest.mark.parametrize("shard_tokens", ["0", "-5"])
def test_non_positive_shard_tokens_is_refused_at_once(tmp_path, shard_tokens):
    (tmp_path / "t.txt").write_text("some text to prepare\n" * 200)
    res = run_prepare("--source", "text", "--input", tmp_path / "t.txt", "--out", tmp_path / "o",
                      "--vocab-size", "300", "--shard-tokens", shard_tokens, timeout=60)
    assert res.returncode == 2 and "--shard-tokens must be a positive" in res.stderr, res.stderr[-500:]
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.npy"))
    with pytest.raises(ValueError, match="shard_tokens"):
        ShardWriter(tmp_path, "train", 300, shard_tokens=int(shard_tokens))


def test_options_are_checked_before_the_source_loads(tmp_path, monkeypatch):
    import argparse

    from data import prepare

    loaded, checked = [], []
    source = prepare.Source("slow", "a source with costly loading", lambda args: loaded.append(1) or {"train": ["x"]},
                            check=lambda args: checked.append(args.block_size) or (_ for _ in ()).throw(
                                ValueError(f"--block-size {args.block_size} is too small")))
    args = argparse.Namespace(out=str(tmp_path), tokenizer="train", vocab_size=10, gpt2_dir="",
                              shard_tokens=1 << 20, block_size=16)
    with pytest.raises(ValueError, match="--vocab-size 10 is out of range"):
        prepare.run_prepare(source, args)
    assert loaded == [] and checked == []
    args.vocab_size = 300
    with pytest.raises(ValueError, match="--block-size 16 is too small"):
        prepare.run_prepare(source, args)
    assert loaded == [] and checked == [16]


def test_disk_full_while_writing_a_shard_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno

    from data import shards

    def full_disk(f, array):
        f.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards.np, "save", full_disk)
    with pytest.raises(OSError) as info:
        write_dataset(tmp_path, {"train": [([1, 2, 3], None)]}, vocab_size=300, eos_id=3)
    message = str(info.value)
    assert "\n" not in message and "train_0000.tokens.npy" in message and "MB free" in message, message
    assert list(tmp_path.iterdir()) == []  # no .tmp left behind


def test_invalid_utf8_line_names_the_file_and_line(tmp_path):
    from data.prepare import read_text_lines

    path = tmp_path / "examples.jsonl"
    path.write_bytes(b'{"question": "ok"}\n{"question": "caf\xe9"}\n')
    lines = read_text_lines(path)
    assert next(lines) == (1, '{"question": "ok"}\n')
    with pytest.raises(ValueError, match=r"examples.jsonl:2: not UTF-8 text \(byte 0xe9 at column 18\)"):
        next(lines)
