r"""The hand-written C++ pre-tokenizer against GPT-2's pattern run by tiktoken and by `regex`.

Nothing here reads the running Python's Unicode data (`unicodedata` follows the interpreter: 3.11
has Unicode 14.0, 3.12 15.0). The character classes are pinned to Unicode 16.0.0, the version of
tiktoken 0.14's regex engine (csrc/gen_unicode_tables.py says why), and are checked on every code
point against tiktoken itself. The pattern's logic (contractions, the " ?" prefix, `\s+(?!\S)`)
is checked against the `regex` module on text drawn from the code points where `regex`'s own
tables give the same classes as tiktoken's: `regex` follows the newest Unicode (2026.11: a later
version than 16.0), and a character its newer tables classify differently says nothing about us.
"""
import functools

import pytest

regex = pytest.importorskip("regex")
tiktoken = pytest.importorskip("tiktoken")
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt import _bpe
from gpt.tokenizer import GPT2_PATTERN

PATTERN = regex.compile(GPT2_PATTERN)
UNICODE_VERSION = "16.0.0"  # tiktoken 0.14's (Rust regex-syntax 0.8.11)
CODE_POINTS = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000]  # surrogates are not text


def reference_pieces(text: str) -> list[str]:
    return PATTERN.findall(text)


# Three questions decide a code point's class under the pattern: does "a" + c stay one piece
# (c is a letter, \p{L}), does "1" + c (a number, \p{N}), does "!" + c (neither, and not white
# space)? A letter answers (1, 0, 0), a number (0, 1, 0), white space (0, 0, 0), anything else
# (0, 0, 1). Each engine answers them through its own pattern run.
PROBES = "a1!"


def our_answers() -> list[tuple]:
    return [tuple(len(_bpe.pretokenize(p + chr(cp))) == 1 for p in PROBES) for cp in CODE_POINTS]


@functools.cache
def tiktoken_answers() -> list[tuple]:
    """tiktoken does not return its pieces, but BPE never merges across one: with the byte ranks
    plus one merge (p, b) for each probe byte p and every byte b, p + c encodes to len(utf8(c))
    tokens when p and c's first byte share a piece, one more when the pattern split them."""
    ranks = {bytes([b]): b for b in range(256)}
    for p in PROBES.encode():
        for b in range(256):
            ranks[bytes([p, b])] = len(ranks)
    enc = tiktoken.Encoding("probe", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
    return [tuple(len(enc.encode_ordinary(p + chr(cp))) == len(chr(cp).encode()) for p in PROBES)
            for cp in CODE_POINTS]


@functools.cache
def regex_agrees_with_tiktoken() -> list[str]:
    """The code points (as characters) whose class `regex`'s own tables give as tiktoken's do."""
    letter, number, space = (regex.compile(c) for c in (r"\p{L}", r"\p{N}", r"\s"))
    chars = []
    for cp, (a, one, bang) in zip(CODE_POINTS, tiktoken_answers()):
        c = chr(cp)
        is_l, is_n, is_s = bool(letter.fullmatch(c)), bool(number.fullmatch(c)), bool(space.fullmatch(c))
        if (is_l, is_n, not (is_l or is_n or is_s)) == (a, one, bang):
            chars.append(c)
    return chars


def test_tables_are_pinned_to_tiktokens_unicode_version():
    assert _bpe.UNICODE_VERSION == UNICODE_VERSION


def test_every_code_point_classified_as_tiktoken_does():
    """All 1,112,064 scalar values, assigned or not (tiktoken and we both say "other" for an
    unassigned one): the same three answers from our scanner as from tiktoken's regex engine."""
    mismatches = [hex(cp) for cp, ours, theirs in zip(CODE_POINTS, our_answers(), tiktoken_answers())
                  if ours != theirs]
    assert mismatches == [], f"{len(mismatches)} code points differ from tiktoken: {mismatches[:20]}"


def test_white_space_is_the_stable_set():
    """White space is the 25 code points of Unicode's White_Space property (unchanged since 6.3),
    in tiktoken's engine and in `regex`'s: the list csrc/gen_unicode_tables.py hard-codes."""
    space = [cp for cp, answers in zip(CODE_POINTS, tiktoken_answers()) if answers == (False,) * 3]
    want = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
            0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
    assert space == want
    assert [cp for cp in CODE_POINTS if regex.fullmatch(r"\s", chr(cp))] == want


def test_regex_reference_covers_almost_every_code_point():
    """The alphabet of the generated texts below: all but the code points a newer Unicode
    version assigned or reclassified (4,657 from 16.0 to 17.0; 17,480 with regex 2026.11.19)."""
    assert len(regex_agrees_with_tiktoken()) > 0.9 * len(CODE_POINTS)


CASES = [
    "", " ", "  ", "\n", "a", "Hello world", "Hello  world", "Hello\tworld", "a   b", "a\n\nb", "a \n b",
    "x  ", "x \n", "it's", "it'S", "I'll've", "'s", "''s", "'", " 's", "we're here", "don't", "'re'", "'ll'd",
    " 123", "1,234.56", "abc123def", " ?!", "?!' s", "\u00a0\u00a0x", "\u3000x", "x\u3000\u3000y",
    "e\u0301t\u00e9", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", "\u4e2d\u6587 \u6e2c\u8a66",
    "\U0001f44d\U0001f3fd ok", "\t\t\tdef f():\n\t\treturn 1\n", "SELECT name FROM t WHERE x >= 3;\n",
    "\r\n\r\n", "a\x00b\x1fc", "\u2028\u2029", "  \u2003x", "\x85x", "\u00b2\u00b3 \u2167",
]


@pytest.mark.parametrize("text", CASES)
def test_known_cases(text):
    assert _bpe.pretokenize(text) == reference_pieces(text)


# Any code point on which `regex` is a valid reference (see the module doc); lone surrogates are
# replaced before pre-tokenization (test_tokenizer.py).
assigned_chars = st.deferred(lambda: st.sampled_from(regex_agrees_with_tiktoken()))
tricky = st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", "'", "'s", "'t", "'re",
                          "'ve", "'m", "'ll", "'d", "'S", "\u2019s", "1", "42", "\u0661", "\u00bd", "x", "Ab",
                          "\u00e9", "e\u0301", "\u4e2d", "\U0001f600", "\u200d", "?", "!!", "\x00", "\x0b"])
texts = st.lists(st.one_of(tricky, st.text(assigned_chars, max_size=6)), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_matches_regex_on_generated_text(text):
    assert _bpe.pretokenize(text) == reference_pieces(text)


def test_long_whitespace_and_letters():
    for text in (" " * 5000 + "x", "a" * 5000, "\n \n" * 1000 + "end", ("ab " * 2000) + "  "):
        assert _bpe.pretokenize(text) == reference_pieces(text)
