"""The hand-written C++ pre-tokenizer against GPT-2's pattern run by the `regex` module."""
import sys
import unicodedata

import pytest

regex = pytest.importorskip("regex")
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt import _bpe
from gpt.tokenizer import GPT2_PATTERN

PATTERN = regex.compile(GPT2_PATTERN)


def reference_pieces(text: str) -> list[str]:
    return PATTERN.findall(text)


def test_unicode_tables_match_regex_classes():
    """Every code point the table was generated for (assigned in Python's Unicode version) gets the
    same letter / number / white-space answer from our scanner as from `regex`: checked by
    pre-tokenizing 'a' + c + 'a' and ' ' + c, which separate the three classes."""
    assert _bpe.UNICODE_VERSION == unicodedata.unidata_version
    mismatches = []
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        cat = unicodedata.category(c)
        if cat in ("Cn", "Cs"):  # unassigned in this Unicode version, or a surrogate
            continue
        for text in ("a" + c + "1", " " + c + "x"):
            if _bpe.pretokenize(text) != reference_pieces(text):
                mismatches.append(hex(cp))
                break
    assert mismatches == []


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


# Characters the generated tables cover: everything assigned in Python's Unicode version except
# surrogates (lone surrogates are replaced before pre-tokenization, see test_tokenizer.py).
assigned_chars = st.characters(exclude_categories=("Cn", "Cs"))
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
