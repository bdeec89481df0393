"""gpt.tokenizer.Tokenizer: parity with tiktoken, round trips, special tokens, files, bad input."""
import base64
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt.tokenizer import ENDOFTEXT, Tokenizer
from tests.conftest import shared_path

tiktoken = pytest.importorskip("tiktoken")


@pytest.fixture(scope="module")
def gpt2():
    """(our Tokenizer, tiktoken.Encoding) on GPT-2's vocabulary, each built from the files."""
    encoder = shared_path("data", "gpt2", "encoder.json")
    vocab = shared_path("data", "gpt2", "vocab.bpe")
    ours = Tokenizer.from_gpt2(encoder, vocab)
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    ranks = data_gym_to_mergeable_bpe_ranks(str(vocab), str(encoder))
    theirs = tiktoken.Encoding("gpt2", pat_str=ours.pattern, mergeable_ranks=ranks,
                               special_tokens={ENDOFTEXT: 50256})
    assert ours.mergeable_ranks == ranks
    return ours, theirs


@pytest.fixture(scope="module")
def english():
    return [shared_path("data", "text", name).read_text(encoding="utf-8")
            for name in ("tinyshakespeare.txt", "warpeace.txt")]


CORPUS = ("SELECT name, age FROM singer WHERE age > 30 ORDER BY age DESC;\n"
          "How many singers are older than 30? It's the singers' table we'd use.\n"
          "Les élèves ont réussi. 北京是中国的首都。 Привет, мир! 123 + 4567 = 4690\n") * 40


@pytest.fixture(scope="module")
def small():
    """A vocabulary trained by us, small enough to be trained in every test run."""
    return Tokenizer.train([CORPUS, "<|sql|>SELECT 1<|endoftext|>"], vocab_size=380,
                           special_tokens=[ENDOFTEXT, "<|sql|>", "<|question|>"])


# ---------------------------------------------------------------------------- parity with tiktoken

def test_gpt2_parity_on_english_texts(gpt2, english):
    ours, theirs = gpt2
    for text in english:
        ids = ours.encode(text)
        assert ids == theirs.encode(text)
        assert ours.decode(ids) == text


unicode_text = st.lists(st.one_of(
    # Any scalar value, assigned or not: ours and tiktoken share one Unicode version (16.0.0), so
    # the alphabet need not follow the running Python's (exclude_categories=("Cn",) would).
    st.text(st.characters(codec="utf-8"), max_size=8),
    st.sampled_from([" ", "  ", "\n\n", "\t", "\r\n", "\u00a0", "\u3000", "'s", "'ll", "'RE", "\u2019", "0", "123",
                     "\u0661\u0662", "\u05e9\u05dc\u05d5\u05dd", "\u0645\u0631\u062d\u0628\u0627", "\u4e2d\u6587",
                     "\u3053\u3093\u306b\u3061\u306f", "\U0001f600", "\U0001f44d\U0001f3fd", "e\u0301", "\u200d",
                     "\x00", "\x07", "\x1b[0m", "<|endoftext|>", " SELECT", "_id", "=="]),
), max_size=25).map("".join)


@settings(max_examples=300, deadline=None)
@given(unicode_text)
def test_gpt2_parity_on_generated_text(gpt2, text):
    ours, theirs = gpt2
    assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)
    assert ours.encode(text, allowed_special="all") == theirs.encode(text, allowed_special="all")


def test_lone_surrogates_replaced_as_tiktoken_does(gpt2):
    ours, theirs = gpt2
    for text in ("\ud800", "a\udfffb", "\ud83d\ude00 joined pair", "x\ud800\ud800y"):
        assert ours.encode(text) == theirs.encode(text)
    assert ours.decode(ours.encode("a\ud800b")) == "a\ufffdb"


@settings(max_examples=200, deadline=None)
@given(unicode_text)
def test_trained_vocab_exported_to_tiktoken_gives_same_ids(small, text):
    enc = small.to_tiktoken()
    assert small.encode_ordinary(text) == enc.encode_ordinary(text)
    assert small.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")


# ---------------------------------------------------------------------------- round trips

@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec="utf-8")))  # every scalar value (no surrogates)
def test_decode_encode_round_trip(small, text):
    assert small.decode(small.encode_ordinary(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_decode_bytes_round_trip_of_arbitrary_bytes(small, data):
    # Every byte is a token, so any byte string is a sequence of ids.
    ids = [small.mergeable_ranks[bytes([b])] for b in data]
    assert small.decode_bytes(ids) == data
    assert small.decode(ids) == data.decode("utf-8", errors="replace")


def test_stream_decoder_never_splits_a_character(gpt2):
    ours, _ = gpt2
    text = "naïve 北京 \U0001f44d\U0001f3fd done"
    ids = ours.encode(text)
    # GPT-2 splits these characters across several byte-level tokens: the case that matters.
    assert any("\ufffd" in ours.decode([i]) for i in ids)
    decoder = ours.stream_decoder()
    chunks = [decoder.feed(i) for i in ids] + [decoder.flush()]
    assert all("\ufffd" not in c for c in chunks)
    assert "".join(chunks) == text


def test_stream_decoder_flush_reports_incomplete_tail(gpt2):
    ours, _ = gpt2
    ids = ours.encode("\U0001f44d")
    assert len(ids) >= 2
    decoder = ours.stream_decoder()
    assert "".join(decoder.feed(i) for i in ids[:-1]) == ""
    assert decoder.flush() == "\ufffd"


# ---------------------------------------------------------------------------- special tokens

def test_special_tokens_allowed_disallowed_and_as_text(small):
    sql = small.special_tokens["<|sql|>"]
    text = "count<|sql|>SELECT<|endoftext|>"
    ids = small.encode(text, allowed_special="all")
    assert sql in ids and small.special_tokens[ENDOFTEXT] in ids
    assert small.decode(ids) == text
    only_sql = small.encode(text, allowed_special={"<|sql|>"}, disallowed_special=())
    assert sql in only_sql and small.special_tokens[ENDOFTEXT] not in only_sql
    with pytest.raises(ValueError, match=r"<\|endoftext\|>"):
        small.encode(text, allowed_special={"<|sql|>"})
    with pytest.raises(ValueError, match="disallowed"):
        small.encode(text)
    as_text = small.encode(text, disallowed_special=())
    assert sql not in as_text and small.decode(as_text) == text
    assert as_text == small.encode_ordinary(text)


def test_special_errors_match_tiktoken(small):
    enc = small.to_tiktoken()
    cases = [(set(), "all"), ({"<|sql|>"}, "all"), ("all", "all"), (set(), ()), (set(), {"<|question|>"})]
    for text in ("plain", "a <|sql|> b", "<|question|><|endoftext|>", "<|sq|>", "<|endoftext|"):
        for allowed, disallowed in cases:
            try:
                expected = enc.encode(text, allowed_special=allowed, disallowed_special=disallowed)
            except ValueError:
                with pytest.raises(ValueError):
                    small.encode(text, allowed_special=allowed, disallowed_special=disallowed)
            else:
                assert small.encode(text, allowed_special=allowed, disallowed_special=disallowed) == expected


def test_training_never_learns_special_text(small):
    for special in small.special_tokens:
        assert special.encode() not in small.mergeable_ranks
    assert sorted(small.special_tokens.values()) == [377, 378, 379]
    assert small.n_vocab == 380


def test_special_token_text_is_cut_out_before_counting():
    """Training on documents full of special-token text learns exactly what training on the text
    between the special tokens (each stretch a document of its own) learns: special text is neither
    counted nor glued to its neighbours. (GPT-2's pre-tokenizer already splits "<|sql|>" into "<|",
    "sql", "|>", so only this comparison shows the text is cut out; a tokenizer counting it learns
    merges such as "<|".)"""
    specials = [ENDOFTEXT, "<|question|>", "<|sql|>"]
    records = [("How many singers are older than 30?", "SELECT COUNT(*) FROM singer WHERE age > 30"),
               ("Which city has the most customers", "SELECT city FROM customer GROUP BY city"),
               ("list every song title", "SELECT title FROM song")]
    docs = ["".join(f"<|question|>{q}<|sql|>{sql}<|endoftext|>" for q, sql in records[i % 3:] + records[:i % 3])
            * (5 + i) for i in range(30)]
    docs.append("<|sql|><|sql|>sql<|endoftext|>endoftext<|question|>question|><|<|")
    between = [part for doc in docs for part in re.split("|".join(map(re.escape, specials)), doc) if part]
    counted = Tokenizer.train(docs, 330, special_tokens=[])  # the same text, nothing special in it
    assert b"<|" in counted.mergeable_ranks and b"|>" in counted.mergeable_ranks  # so counting it shows
    with_specials = Tokenizer.train(docs, 330, special_tokens=specials)
    without = Tokenizer.train(between, 330, special_tokens=specials)
    assert with_specials.mergeable_ranks == without.mergeable_ranks
    assert with_specials.special_tokens == without.special_tokens
    assert b"<|" not in with_specials.mergeable_ranks and b"|>" not in with_specials.mergeable_ranks


def test_training_is_deterministic_and_reports_progress():
    calls = []
    a = Tokenizer.train([CORPUS], 300, progress=lambda done, total: calls.append((done, total)))
    b = Tokenizer.train(iter([CORPUS]), 300)
    assert a.mergeable_ranks == b.mergeable_ranks
    assert calls[0] == (0, 43) and calls[-1] == (43, 43)
    # The first merge is the most frequent adjacent pair of the pre-tokenized corpus.
    from collections import Counter

    import regex

    pairs = Counter()
    for piece in regex.findall(a.pattern, CORPUS):
        data = piece.encode()
        pairs.update(zip(data, data[1:]))
    best = max(pairs.values())
    first = a.decode_single_token_bytes(256)
    assert len(first) == 2 and pairs[(first[0], first[1])] == best


# ---------------------------------------------------------------------------- batch, numpy

def test_encode_batch_matches_encode(gpt2, english):
    ours, _ = gpt2
    docs = english[0].split("\n\n")[:300] + ["", "<|endoftext|> x"]
    expected = [ours.encode(d, disallowed_special=()) for d in docs]
    for threads in (1, 2, 3):
        assert ours.encode_batch(docs, num_threads=threads, disallowed_special=()) == expected
    arrays = ours.encode_batch(docs, num_threads=2, disallowed_special=(), numpy=True)
    assert all(isinstance(a, np.ndarray) and a.tolist() == e for a, e in zip(arrays, expected))
    with pytest.raises(ValueError, match="disallowed"):
        ours.encode_batch(docs)
    assert ours.encode(docs[0], numpy=True).dtype == np.uint32


# ---------------------------------------------------------------------------- hard inputs

def test_million_spaces_then_x(gpt2):
    """tiktoken 0.14 panics on this (its regex backtracks); we must encode it."""
    ours, theirs = gpt2
    text = " " * 1_000_000 + "x"
    ids = ours.encode(text)
    assert ours.decode(ids) == text
    small_case = " " * 1000 + "x"  # same structure, small enough for tiktoken
    assert ours.encode(small_case) == theirs.encode(small_case)


def _work(counter: str, fn, *args):
    """(fn(*args), how many units of `counter` the C++ core did for it on this thread)."""
    from gpt import _bpe

    before = _bpe.work_counters()[counter]
    out = fn(*args)
    return out, _bpe.work_counters()[counter] - before


def test_long_single_piece_scales_roughly_linearly(gpt2):
    """'a' * n is one pre-token: it takes the heap path (O(n log n)). Checked by counting work, not
    by timing, smallest input first, so a quadratic merge fails at n = 1000 instead of hanging at 1e6:
    the heap holds the n - 1 initial pairs plus at most two new pairs per merge (fewer than n merges),
    and pops each entry at most once, so it looks up at most 6n pairs; it must look at each of the
    n - 1 adjacent pairs at least once."""
    ours, theirs = gpt2
    assert ours.encode("a" * 3000) == theirs.encode("a" * 3000)
    tokens = {}
    for n in (1000, 10_000, 100_000, 1_000_000):
        ids, steps = _work("merge_steps", ours.encode, "a" * n)
        assert n - 1 <= steps <= 6 * n, (n, steps)
        tokens[n] = len(ids)
    assert tokens[1_000_000] == 10 * tokens[100_000] == 100 * tokens[10_000]


@pytest.mark.parametrize("bad", [None, 123, b"bytes", ["list"]])
def test_non_str_input_is_type_error(small, bad):
    with pytest.raises(TypeError, match="str"):
        small.encode(bad)
    with pytest.raises(TypeError, match="str"):
        small.encode_ordinary(bad)


def test_unknown_ids_raise_value_error_naming_the_id(small):
    for bad in (small.n_vocab, 10**9, -1, 2**40):
        with pytest.raises(ValueError, match=str(bad)):
            small.decode([1, bad])
    with pytest.raises(ValueError, match="4242"):
        small.decode_bytes(np.array([4242]))


# ---------------------------------------------------------------------------- files

def test_save_load_round_trip(small, tmp_path):
    path = tmp_path / "tok.tiktoken"
    small.save(path)
    loaded = Tokenizer.load(path)
    assert loaded.mergeable_ranks == small.mergeable_ranks
    assert loaded.special_tokens == small.special_tokens
    text = "<|sql|>SELECT name FROM singer"
    assert loaded.encode(text, allowed_special="all") == small.encode(text, allowed_special="all")
    # The ranks file is tiktoken's own format.
    from tiktoken.load import load_tiktoken_bpe

    assert load_tiktoken_bpe(str(path)) == small.mergeable_ranks


def _corrupt(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize("mutation, message", [
    (lambda lines: lines[:10] + [b"!!notbase64 10"] + lines[11:], ":11:"),
    (lambda lines: lines[:5] + [base64.b64encode(b"zz") + b" x"] + lines[6:], ":6:"),
    (lambda lines: lines[:3] + [lines[3] + b" extra"] + lines[4:], ":4:"),
    (lambda lines: lines[:7] + [lines[2]] + lines[8:], ":8:"),
    (lambda lines: lines[:-40] + [lines[-40][:5]], ":"),
    (lambda lines: lines[:-40], "truncated or modified"),
])
def test_corrupt_vocab_file_is_value_error_naming_file_and_line(small, tmp_path, mutation, message):
    path = tmp_path / "tok.tiktoken"
    small.save(path)
    lines = path.read_bytes().rstrip(b"\n").split(b"\n")
    _corrupt(path, mutation(lines))
    with pytest.raises(ValueError) as err:
        Tokenizer.load(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_vocab_without_all_bytes_is_value_error(tmp_path):
    path = tmp_path / "partial.tiktoken"
    path.write_bytes(b"".join(base64.b64encode(bytes([b])) + b" %d\n" % b for b in range(200)))
    with pytest.raises(ValueError, match="partial.tiktoken.*byte 200"):
        Tokenizer.load(path)


def test_corrupt_json_and_missing_file(small, tmp_path):
    path = tmp_path / "tok.tiktoken"
    small.save(path)
    (tmp_path / "tok.tiktoken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"tok.tiktoken.json:1"):
        Tokenizer.load(path)
    with pytest.raises(ValueError, match="cannot read"):
        Tokenizer.load(tmp_path / "missing.tiktoken")


def test_from_gpt2_rejects_mismatched_merges(tmp_path, gpt2):
    encoder = json.loads(shared_path("data", "gpt2", "encoder.json").read_text())
    lines = shared_path("data", "gpt2", "vocab.bpe").read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    (tmp_path / "encoder.json").write_text(json.dumps(encoder))
    (tmp_path / "vocab.bpe").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"vocab.bpe:2"):
        Tokenizer.from_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe")


def test_cli_train_encode_and_errors(tmp_path, capsys):
    from gpt.tokenizer import main

    corpus = tmp_path / "c.txt"
    corpus.write_text(CORPUS)
    out = tmp_path / "tok.tiktoken"
    assert main(["train", str(corpus), "--vocab-size", "300", "--special", "<|sql|>", "--out", str(out)]) == 0
    assert Tokenizer.load(out).n_vocab == 300
    assert main(["encode", "--tokenizer", str(out), "SELECT 1"]) == 0
    assert main(["train", str(tmp_path / "nope.txt"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_concurrent_encodes_with_two_vocabularies_do_not_mix(gpt2, small, english):
    """Encode calls release the GIL and lease per-vocabulary piece caches: Python threads hammering two
    tokenizers at once must get exactly the single-threaded ids."""
    from concurrent.futures import ThreadPoolExecutor

    ours, _ = gpt2
    docs = english[0].split("\n\n")[:200]
    expected = {id(t): [t.encode_ordinary(d) for d in docs] for t in (ours, small)}
    jobs = [(t, i) for i in range(len(docs)) for t in (ours, small)] * 3
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda job: job[0].encode_ordinary(docs[job[1]]), jobs))
    for (t, i), got in zip(jobs, results):
        assert got == expected[id(t)][i]


def test_encode_batch_special_and_type_errors(small):
    docs = ["plain", "x <|question|> then <|sql|>", "<|sql|> first"]
    with pytest.raises(ValueError, match=r"'<\|question\|>'"):  # first text in order, leftmost hit
        small.encode_batch(docs, num_threads=2)
    ok = small.encode_batch(docs, num_threads=2, allowed_special={"<|question|>", "<|sql|>"})
    assert ok == [small.encode(d, allowed_special={"<|question|>", "<|sql|>"}) for d in docs]
    with pytest.raises(TypeError, match="str"):
        small.encode_batch(["ok", 3])


# ---------------------------------------------------------------------------- hostile vocabulary files (issue 12)

def test_vocabulary_construction_is_linear_in_token_length():
    """Every token's splits into two tokens are found by two trie walks, not by hashing every prefix and
    suffix: 20 random 60 kB tokens took ~10 s before (quadratic: 3.6e9 bytes hashed per token). Checked
    by counting work, not by timing: a token of at most 64 bytes hashes at most 64 bytes per byte at
    its split points, a longer one is walked down two tries a few times, so the bytes hashed or walked
    are at most 70 per byte of the vocabulary (and the long tokens are each read at least once)."""
    import random

    rng = random.Random(0)
    ranks = {bytes([b]): b for b in range(256)}
    for i in range(20):
        ranks[bytes(rng.randrange(256) for _ in range(60_000))] = 256 + i
    tok, steps = _work("split_steps", Tokenizer, ranks)
    total = sum(map(len, ranks))
    assert 20 * 60_000 <= steps <= 70 * total, (steps, total)
    long_token = next(t for t, r in ranks.items() if r == 260)
    assert tok.encode_ordinary(long_token.decode("latin-1")) != [260]  # text is UTF-8; just runs
    assert tok.decode_bytes([260]) == long_token


def _write_ranks(path, lines):
    path.write_bytes(b"".join(lines))


def test_oversized_token_and_rank_are_refused_before_allocating(tmp_path):
    import resource

    from gpt import _bpe

    byte_lines = [base64.b64encode(bytes([b])) + b" %d\n" % b for b in range(256)]
    path = tmp_path / "huge.tiktoken"
    _write_ranks(path, byte_lines + [base64.b64encode(b"x" * 20_000_000) + b" 256\n"])
    steps_before = _bpe.work_counters()["split_steps"]
    with pytest.raises(ValueError, match=r"huge.tiktoken:257: a token of .* bytes is too long"):
        Tokenizer.load(path, special_tokens={})
    assert _bpe.work_counters()["split_steps"] == steps_before  # refused before any vocabulary was built
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _write_ranks(path, byte_lines + [base64.b64encode(b"ab") + b" 200000000\n"])
    with pytest.raises(ValueError, match=r"huge.tiktoken:257: rank 200,000,000 is too large"):
        Tokenizer.load(path, special_tokens={})
    with pytest.raises(ValueError, match="too large"):  # the C++ core checks its limits too
        _bpe.CoreBPE([bytes([b]) for b in range(256)] + [b"ab"], list(range(256)) + [200_000_000], [])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000  # KiB: no 1.5 GB table


def test_truncated_file_is_reported_as_truncated_not_as_its_damaged_line(small, tmp_path):
    path = tmp_path / "tok.tiktoken"
    small.save(path)
    body = path.read_bytes()
    last = body.rstrip(b"\n").rsplit(b"\n", 1)[1]
    path.write_bytes(body[: len(body) - len(last) - 1 + len(last.split()[0]) + 2])  # "token 2": a reused rank
    with pytest.raises(ValueError, match="does not match the checksum.*truncated"):
        Tokenizer.load(path)


def test_missing_json_sidecar_is_an_error_unless_specials_are_given(small, tmp_path):
    path = tmp_path / "tok.tiktoken"
    small.save(path)
    (tmp_path / "tok.tiktoken.json").unlink()
    with pytest.raises(ValueError, match=r"no tok.tiktoken.json beside it"):
        Tokenizer.load(path)
    plain = Tokenizer.load(path, special_tokens={})
    assert plain.special_tokens == {} and plain.mergeable_ranks == small.mergeable_ranks
    with_specials = Tokenizer.load(path, special_tokens=dict(small.special_tokens))
    assert with_specials.special_tokens == small.special_tokens


@pytest.mark.parametrize("special_id", [10**12, -1, "7", 2.0, True])
def test_bad_special_token_id_is_a_short_value_error(small, tmp_path, special_id):
    path = tmp_path / "tok.tiktoken"
    small.save(path)
    meta_path = tmp_path / "tok.tiktoken.json"
    meta = json.loads(meta_path.read_text())
    meta["special_tokens"]["<|big|>"] = special_id
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError) as err:
        Tokenizer.load(path)
    assert len(str(err.value)) < 300 and "\n" not in str(err.value), str(err.value)[:500]
    with pytest.raises(ValueError, match=r"<\|big\|>"):
        Tokenizer(small.mergeable_ranks, {"<|big|>": special_id})


def test_long_tokens_merge_like_tiktoken():
    """Tokens longer than the direct-lookup limit find their splits through the tries: same ids as tiktoken."""
    import random

    import tiktoken

    from gpt.tokenizer import GPT2_PATTERN

    ranks = {bytes([b]): b for b in range(256)}
    for word in [b"a" * k for k in range(2, 200)] + [b"ab" * k for k in range(1, 100)] + [b"ba" * 40 + b"c"]:
        ranks.setdefault(word, len(ranks))
    ours = Tokenizer(ranks)
    reference = tiktoken.Encoding("long", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
    rng = random.Random(0)
    texts = ["a" * 450, "ab" * 170 + "a", "ba" * 41 + "c"] + ["".join(rng.choice("aab") for _ in range(rng.randint(1, 600)))
                                                              for _ in range(50)]
    for text in texts:
        assert ours.encode_ordinary(text) == reference.encode_ordinary(text), text[:40]
