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
from functools import lru_cache
from pathlib import Path

from text2sql.schema import Schema

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
QUESTION_WORD = re.compile(r"\w+(?:\.\d+)?|[^\w\s]")
MAX_PHRASE_WORDS = 4
MAX_VALUES_PER_COLUMN = 2000   # distinct values read per text column for value linking (bounded scan)
MIN_VALUE_CHARS = 3            # shorter stored values ('A', 'no') would link ordinary words
MAX_VALUE_LINKS = 4            # value links per question


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
        # a name and, where the source words it (Spider's tables.json: 'StuID' -> 'student id'), its wording
        for table_name in dict.fromkeys(n for n in (t.name, t.readable) if n):
            tw = table_words(table_name)
            if not tw:
                continue
            for form in {" ".join(tw), " ".join(tw[:-1] + [plural(tw[-1])]), " ".join(identifier_words(table_name))}:
                phrases[form].add((t.name, None))
            for c in t.columns:
                for column_name in dict.fromkeys(n for n in (c.name, c.readable) if n):
                    cw = identifier_words(column_name)
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
            ws = [w.lower() for w in words[start:start + n]]
            key = " ".join(ws)
            if key in phrases:
                return n, phrases[key]
            for last in _singulars(ws[-1]):  # "codes" names cargo_code as "code" does
                other = " ".join(ws[:-1] + [last])
                if other in phrases:
                    return n, phrases[other]
    return None


def _singulars(word: str) -> list[str]:
    """Forms a plural may come from: 'codes' -> code, 'classes' -> class, 'grouttrouss' -> grouttrous
    (made-up words are pluralised by adding an s)."""
    out = [singular(word)]
    if word.endswith("s"):
        out.append(word[:-1])
    if word.endswith("es"):
        out.append(word[:-2])
    return [w for w in dict.fromkeys(out) if w and w != word]


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


# ----------------------------------------------------------------------------------------------------
# Value linking: question words that are a value stored in a text column ("from France" -> country).


def read_text_values(db_path: str | Path, schema: Schema) -> dict[str, set[tuple[str, str]]]:
    """{lower-case value: {(table, column)}} over the text columns of a database: the first
    MAX_VALUES_PER_COLUMN distinct values of each, values of MIN_VALUE_CHARS characters or more that are
    not numbers. An unreadable database gives {} (linking then uses names only)."""
    path = Path(db_path)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return {}
    frozen = tuple((t.name, tuple(c.name for c in t.columns)) for t in schema.tables)
    return _read_text_values(str(path.resolve()), stamp, frozen)


@lru_cache(maxsize=64)
def _read_text_values(path: str, _stamp: int, tables) -> dict[str, set[tuple[str, str]]]:
    from text2sql.sql_exec import open_readonly

    q = lambda s: '"' + s.replace('"', '""') + '"'  # noqa: E731
    index: dict[str, set] = defaultdict(set)
    try:
        conn = open_readonly(path)
    except (OSError, ValueError):
        return {}
    try:
        for table, columns in tables:
            for column in columns:
                try:
                    rows = conn.execute(f"SELECT DISTINCT {q(column)} FROM {q(table)} WHERE typeof({q(column)}) = 'text' "
                                        f"LIMIT {MAX_VALUES_PER_COLUMN}").fetchall()
                except Exception:  # a view or column that no longer reads: no values from it
                    continue
                for (v,) in rows:
                    v = v.strip().lower()
                    if len(v) >= MIN_VALUE_CHARS and not _NUMBER.match(v) and len(v.split()) <= MAX_PHRASE_WORDS:
                        index[v].add((table, column))
    finally:
        conn.close()
    return dict(index)


_NUMBER = re.compile(r"^[-+]?\d+(\.\d*)?$")


def value_spans(question: str, values: dict[str, set], taken: list[tuple[int, int]] = ()) -> list[tuple[int, int, set]]:
    """[(start, end, {(table, column)})]: spans of the question (whole words, longest first, left to right,
    not overlapping `taken`) that equal a stored value, at most MAX_VALUE_LINKS."""
    if not values:
        return []
    matches = list(QUESTION_WORD.finditer(question))
    spans, i = [], 0
    while i < len(matches) and len(spans) < MAX_VALUE_LINKS:
        for n in range(min(MAX_PHRASE_WORDS, len(matches) - i), 0, -1):
            start, end = matches[i].start(), matches[i + n - 1].end()
            if any(start < b and a < end for a, b in taken):
                continue
            cols = values.get(question[start:end].lower())
            if cols:
                spans.append((start, end, set(cols)))
                i += n
                break
        else:
            i += 1
    return spans
