"""A baseline that learns nothing: slot the names and values, look the question's template up, fill it in.

It is printed beside the model on every split because it tells what a split measures. On a test split
whose questions reuse training templates on new names (held-out domains) a lookup can score well: there
the model must at least match it. On held-out wordings the lookup finds no template: only a model that
understood the question can score there.

How a question becomes a template (`slot_question`): its words are matched, longest first, against the
schema's names read as words (`patientName` -> "patient name"; a label column also by its last word,
"name"; a table also in the plural), and against values (numbers, capitalised words inside the sentence,
the fragment after "with"/"containing"/...); each match becomes a slot (T0, C0, V0 ... in order of first
appearance). Training pairs whose every identifier and literal of the SQL is a slot give a SQL template
for the question template; the most frequent one wins. Prediction fills the slots back with this
database's names and the question's values; an unknown template predicts nothing (an empty string).
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

from text2sql.linking import QUESTION_WORD, identifier_words, match_phrases, schema_phrases, table_words
from text2sql.schema import Schema

_SQL_TOKEN = re.compile(r"'(?:[^']|'')*'|\d+(?:\.\d+)?|[A-Za-z_][A-Za-z0-9_]*|\S")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_LEADS = {"which", "what", "list", "show", "how", "count", "sort", "for", "find", "please", "can", "tell", "do",
          "i", "could", "kindly", "give", "the", "is", "are", "of"}
_FRAGMENT_AFTER = {"with", "containing", "contains", "begins", "ends"}


def slot_question(question: str, schema: Schema) -> tuple[str, list[tuple[str, object]]]:
    """(template, slots): each slot is ("name", {(table, column)}) or ("value", text)."""
    phrases = schema_phrases(schema)
    words = QUESTION_WORD.findall(question)
    out, slots, i = [], [], 0
    while i < len(words):
        found = match_phrases(words, phrases, i)
        if found is not None:
            out.append(_slot(slots, ("name", frozenset(found[1]))))
            i += found[0]
            continue
        w = words[i]
        is_value = bool(_NUMBER.match(w)) or (w[:1].isupper() and i > 0 and w.lower() not in _LEADS) or (
            i > 0 and words[i - 1].lower() in _FRAGMENT_AFTER and w.isalnum())
        if is_value:  # a run of capitalised words is one value ("Silent River")
            j = i + 1
            while not _NUMBER.match(w) and j < len(words) and words[j][:1].isupper():
                j += 1
            out.append(_slot(slots, ("value", " ".join(words[i:j]))))
            i = j
            continue
        out.append(w.lower())
        i += 1
    return " ".join(out), slots


def _slot(slots: list, slot) -> str:
    if slot not in slots:
        slots.append(slot)
    return f"<{slots.index(slot)}>"


def slot_sql(sql: str, slots: list) -> str | None:
    """The SQL with its identifiers and literals replaced by the question's slots; None if one is not."""
    out = []
    for tok in _SQL_TOKEN.findall(sql):
        if tok.startswith("'"):
            inner = tok[1:-1].replace("''", "'")
            for k, (kind, v) in enumerate(slots):
                if kind == "value" and v and v in inner:
                    out.append("'" + inner.replace(v, f"<{k}>") + "'")
                    break
            else:
                return None
        elif _NUMBER.match(tok):
            k = next((k for k, (kind, v) in enumerate(slots) if kind == "value" and v == tok), None)
            if k is None:
                return None
            out.append(f"<{k}>")
        elif re.match(r"[A-Za-z_]", tok) and not _is_keyword(tok):
            k = next((k for k, (kind, v) in enumerate(slots)
                      if kind == "name" and any(tok in (t, c) for t, c in v)), None)
            if k is not None:
                out.append(f"<{k}>")
                continue
            # a column the question does not name (a key, the label of "which employees"): say it relative
            # to a table it does name, as that table's words plus the rest ("<0>:name", "<1>:id")
            words = identifier_words(tok)
            for k, (kind, v) in enumerate(slots):
                tables = sorted(t for t, c in v if c is None) if kind == "name" else []
                tw = table_words(tables[0]) if tables else None
                if tw and len(words) > len(tw) and words[:len(tw)] == tw:
                    out.append(f"<{k}>:" + "_".join(words[len(tw):]))
                    break
            else:
                return None
        else:
            out.append(tok)
    return " ".join(out)


_KEYWORDS = {"select", "from", "where", "and", "or", "not", "in", "like", "between", "order", "by", "asc", "desc",
             "limit", "group", "having", "count", "avg", "sum", "min", "max", "distinct", "join", "on", "as", "union",
             "intersect", "except", "t1", "t2", "t3", "is", "null"}


def _is_keyword(tok: str) -> bool:
    return tok.lower() in _KEYWORDS


def _item_key(item: tuple[str, str | None]) -> tuple[str, str]:
    """A total order on (table, column or None) slot items."""
    return item[0], item[1] or ""


def fill_sql(template: str, slots: list, schema: Schema) -> str:
    """Put this question's names and values into a SQL template. A name slot that could mean several
    schema items takes the column of a table already named in the query when there is one."""
    tables = {min(v, key=_item_key)[0] for kind, v in slots if kind == "name" and all(c is None for _, c in v)}

    def name(k: int, as_table: bool) -> str:
        kind, v = slots[k]
        if kind == "value":
            return v
        # ties broken by name, not by the set's (hash-seed dependent) order: the same guess in every process
        items = sorted(v, key=lambda tc: (tc[0] not in tables, tc[1] is None) + _item_key(tc))
        if as_table:
            return next((t for t, c in items if c is None), items[0][0])
        return next((c for t, c in items if c is not None), items[0][0])

    def implied(k: int, rest: str) -> str:
        kind, v = slots[k]
        table = name(k, as_table=True)
        tw = table_words(table)
        words = tw + rest.split("_")
        for t in schema.tables:
            for c in t.columns:
                if identifier_words(c.name) == words:
                    return c.name
        # no such column: the table's own column of the same build (its name/title/code: the label)
        own = next((t for t in schema.tables if t.name == table), None)
        for c in own.columns if own else []:
            cw = identifier_words(c.name)
            if len(cw) == len(words) and cw[:len(tw)] == tw and cw[-1] != "id" and rest != "id":
                return c.name
        return "_".join(words)

    toks = template.split(" ")
    out = []
    for i, tok in enumerate(toks):
        m = re.fullmatch(r"<(\d+)>", tok)
        r = re.fullmatch(r"<(\d+)>:(\w+)", tok)
        if r:
            out.append(implied(int(r.group(1)), r.group(2)))
        elif m:
            as_table = i > 0 and toks[i - 1].upper() in ("FROM", "JOIN")
            out.append(name(int(m.group(1)), as_table))
        elif tok.startswith("'"):
            # a literal's slot is a value; where this question has a name there, the name's text stands in
            out.append(re.sub(r"<(\d+)>", lambda m: slots[int(m.group(1))][1] if slots[int(m.group(1))][0] == "value"
                              else name(int(m.group(1)), False), tok))
        else:
            out.append(tok)
    sql = " ".join(out)
    return re.sub(r"\s*([(),.])\s*", lambda m: {"(": " (", ")": ")", ",": ", ", ".": "."}[m.group(1)], sql).replace(
        "( ", "(").replace(" )", ")").strip()


class LookupBaseline:
    """fit() on training examples (question, SQL, schema); predict(question, schema) -> SQL or ''."""

    def __init__(self):
        self.templates: dict[str, Counter] = defaultdict(Counter)

    def fit(self, examples) -> "LookupBaseline":
        for e in examples:
            if not isinstance(e.schema, Schema):
                continue
            template, slots = slot_question(e.question, e.schema)
            sql = slot_sql(e.sql, slots)
            if sql is not None:
                self.templates[template][sql] += 1
        return self

    def predict(self, question: str, schema: Schema) -> str:
        template, slots = slot_question(question, schema)
        found = self.templates.get(template)
        if not found:
            return ""
        return fill_sql(found.most_common(1)[0][0], slots, schema)
