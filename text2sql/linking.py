"""Schema linking: which tables and columns a question names, read the way people write them.

Identifiers are read as words (`patientName`, `patient_name`, `PatientName` -> "patient name"); a table
is also named in the singular or plural ("patients" -> patients); a column whose name starts with its
table's words is also named by the rest ("name" -> patient_name in table patient). A question word
sequence that matches one of those phrases (longest first) links the table or column. Both the prompt
(linked tables first, linked columns marked) and the lookup baseline (names become slots) use this.
"""
from __future__ import annotations

import re
from collections import defaultdict

from text2sql.schema import Schema

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
QUESTION_WORD = re.compile(r"\w+(?:\.\d+)?|[^\w\s]")
MAX_PHRASE_WORDS = 4


def identifier_words(name: str) -> list[str]:
    """'patientName' / 'patient_name' / 'PatientName' -> ['patient', 'name']."""
    return [w.lower() for part in re.split(r"[_\s]+", name) for w in _CAMEL.split(part) if w]


def singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ses", "xes", "ches", "shes", "oes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def plural(word: str) -> str:
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("s", "x", "ch", "sh", "o")) else "s")


def table_words(name: str) -> list[str]:
    """A table's identifier as singular words: 'fire_stations' -> ['fire', 'station']."""
    words = identifier_words(name)
    return words[:-1] + [singular(words[-1])] if words else words


def schema_phrases(schema: Schema) -> dict[str, set[tuple[str, str | None]]]:
    """{phrase: {(table, column or None)}} for every way a question may name a table or a column."""
    phrases: dict[str, set] = defaultdict(set)
    for t in schema.tables:
        tw = table_words(t.name)
        if not tw:
            continue
        for form in {" ".join(tw), " ".join(tw[:-1] + [plural(tw[-1])]), " ".join(identifier_words(t.name))}:
            phrases[form].add((t.name, None))
        for c in t.columns:
            cw = identifier_words(c.name)
            if not cw:
                continue
            phrases[" ".join(cw)].add((t.name, c.name))
            if len(cw) > len(tw) and cw[:len(tw)] == tw:  # patient_name in patients: also "name"
                phrases[" ".join(cw[len(tw):])].add((t.name, c.name))
    return phrases


def match_phrases(words: list[str], phrases: dict, start: int) -> tuple[int, set] | None:
    """(number of words, schema items) of the longest phrase starting at words[start], or None."""
    for n in range(MAX_PHRASE_WORDS, 0, -1):
        if start + n <= len(words):
            key = " ".join(w.lower() for w in words[start:start + n])
            if key in phrases:
                return n, phrases[key]
    return None


def link_spans(schema: Schema, question: str) -> list[tuple[int, int, set]]:
    """[(start, end, {(table, column or None)})]: the character spans of the question that name schema items,
    longest phrase first, left to right."""
    phrases = schema_phrases(schema)
    matches = list(QUESTION_WORD.finditer(question))
    words = [m.group() for m in matches]
    spans = []
    i = 0
    while i < len(words):
        found = match_phrases(words, phrases, i)
        if found is None:
            i += 1
            continue
        n, items = found
        spans.append((matches[i].start(), matches[i + n - 1].end(), set(items)))
        i += n
    return spans


def link(schema: Schema, question: str) -> tuple[set[str], set[tuple[str, str]]]:
    """(linked table names, linked (table, column) pairs) of a question."""
    tables, columns = set(), set()
    for _, _, items in link_spans(schema, question):
        for t, c in items:
            if c is None:
                tables.add(t)
            else:
                columns.add((t, c))
    return tables, columns
