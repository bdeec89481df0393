"""English questions with their gold SQL for one synthetic database: one method per SQL shape.

`generate_questions` draws shapes by weight (SHAPES), asks `QuestionMaker` for a (question, SQL) pair,
runs the SQL on the written database and keeps it only if it returns rows and the question is new. Every
shape has several English wordings; values in a question are taken from the database's own rows.
"""
from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path

from text2sql.synthetic.database import BuiltColumn, BuiltTable

# ----------------------------------------------------------------------------------------------------
# Questions: one function per SQL shape. Each returns (question, sql) or None when the database does
# not allow the shape; the caller executes the SQL and keeps it only if it returns rows.

WORDING_SETS = ("train", "held_out", "all")
GREATER = [">", ["greater than", "more than", "above", "over"]]
LESS = ["<", ["less than", "below", "under"]]
AT_LEAST = [">=", ["at least"]]
AT_MOST = ["<=", ["at most"]]
AGGREGATES = {"AVG": ["average", "mean"], "SUM": ["total"], "MIN": ["minimum", "smallest", "lowest"],
              "MAX": ["maximum", "largest", "highest"]}


def with_article(word: str) -> str:
    """'a worker', 'an instructor'."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def sql_literal(v) -> str:
    """A Python value as an SQL literal: strings quoted (quotes doubled), numbers as written."""
    return "'" + str(v).replace("'", "''") + "'" if isinstance(v, str) else repr(v)


class QuestionMaker:
    """(question, SQL) pairs for one database; each shape method returns a pair or None."""

    def __init__(self, tables: list[BuiltTable], rng: random.Random, wordings: str = "train"):
        if wordings not in WORDING_SETS:
            raise ValueError(f"wordings must be one of {WORDING_SETS}, got {wordings!r}")
        self.tables, self.rng, self.wordings = tables, rng, wordings

    # small helpers -----------------------------------------------------------------------------------
    def pick(self, seq):
        return self.rng.choice(seq)

    def phrase(self, templates: list[str]) -> str:
        """One English wording of the shape. The last template of every list is held out: training and
        validation questions never use it, the held-out-wordings test uses only it."""
        if len(templates) < 2:
            raise AssertionError(f"every shape needs two wordings or more (one is held out): {templates}")
        if self.wordings == "held_out":
            return templates[-1]
        return self.pick(templates[:-1]) if self.wordings == "train" else self.pick(templates)

    def labelled_table(self) -> BuiltTable | None:
        tables = [t for t in self.tables if t.label]
        return self.pick(tables) if tables else None

    def value(self, t: BuiltTable, c: BuiltColumn):
        return self.pick(t.rows)[c.name]

    def comparison(self, t: BuiltTable, c: BuiltColumn):
        op, words = self.pick([GREATER, GREATER, LESS, LESS, AT_LEAST, AT_MOST])
        return op, self.pick(words), self.value(t, c)

    def child_parent(self, child_label: bool = True):
        pairs = [(t, fk) for t in self.tables for fk in t.foreign_keys()
                 if fk.parent.label and (t.label or not child_label)]
        return self.pick(pairs) if pairs else (None, None)

    # shapes ------------------------------------------------------------------------------------------
    def select_one(self):
        t = self.pick(self.tables)
        c = self.pick(t.of_kind("label", "text", "int", "real"))
        q = self.phrase([f"List the {c.words} of all {t.plural}.", f"What is the {c.words} of each {t.singular}?",
                       f"Show the {c.words} of every {t.singular}."])
        return q, f"SELECT {c.name} FROM {t.name}"

    def select_two(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("text", "int", "real"))
        q = self.phrase([f"Show the {t.label.words} and {c.words} of all {t.plural}.",
                       f"List the {t.label.words} and {c.words} of each {t.singular}."])
        return q, f"SELECT {t.label.name}, {c.name} FROM {t.name}"

    def where_eq(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("text"))
        v = self.value(t, c)
        q = self.phrase([f"Which {t.plural} have {c.words} {v}?", f"List the {t.label.words} of {t.plural} whose "
                       f"{c.words} is {v}.", f"Find the {t.plural} with {c.words} {v}."])
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} = {sql_literal(v)}"

    def where_cmp(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("int", "real"))
        op, ow, v = self.comparison(t, c)
        q = self.phrase([f"Which {t.plural} have {c.words} {ow} {v}?",
                       f"List the {t.label.words} of {t.plural} with {c.words} {ow} {v}.",
                       f"Find the {t.plural} whose {c.words} is {ow} {v}."])
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} {op} {sql_literal(v)}"

    def where_and_or(self):
        t = self.labelled_table()
        c, n = self.pick(t.of_kind("text")), self.pick(t.of_kind("int", "real"))
        v = self.value(t, c)
        op, ow, x = self.comparison(t, n)
        conj = self.pick(["and", "or"])
        q = self.phrase([f"Which {t.plural} have {c.words} {v} {conj} {n.words} {ow} {x}?",
                       f"List the {t.label.words} of {t.plural} whose {c.words} is {v} {conj} whose "
                       f"{n.words} is {ow} {x}."])
        return q, (f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} = {sql_literal(v)} {conj.upper()} "
                   f"{n.name} {op} {sql_literal(x)}")

    def like(self):
        t = self.labelled_table()
        name = self.value(t, t.label)
        kind = self.pick(["start", "contain", "end"])
        if kind == "start":
            s = name[0]
            q = self.phrase([f"Which {t.plural} have {with_article(t.label.words)} starting with {s}?",
                           f"List the {t.plural} whose {t.label.words} begins with {s}."])
            pattern = f"{s}%"
        elif kind == "end":
            s = name[-2:]
            q = self.phrase([f"Which {t.plural} have {with_article(t.label.words)} ending with {s}?",
                           f"List the {t.plural} whose {t.label.words} ends with {s}."])
            pattern = f"%{s}"
        else:
            i = self.rng.randint(0, max(0, len(name) - 3))
            s = name[i:i + 3].strip()
            if len(s) < 2:
                return None
            q = self.phrase([f"Which {t.plural} have {with_article(t.label.words)} containing {s}?",
                           f"List the {t.plural} whose {t.label.words} contains {s}."])
            pattern = f"%{s}%"
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {t.label.name} LIKE {sql_literal(pattern)}"

    def between(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("int", "real"))
        values = sorted({r[c.name] for r in t.rows})
        if len(values) < 2:
            return None
        a, b = sorted(self.rng.sample(values, 2))
        q = self.phrase([f"Which {t.plural} have {c.words} between {a} and {b}?",
                       f"List the {t.label.words} of {t.plural} whose {c.words} is between {a} and {b}."])
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} BETWEEN {sql_literal(a)} AND {sql_literal(b)}"

    def in_list(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("text"))
        values = sorted({r[c.name] for r in t.rows})
        if len(values) < 3:
            return None
        vs = self.rng.sample(values, self.pick([2, 3]))
        words = ", ".join(vs[:-1]) + f" or {vs[-1]}"
        q = self.phrase([f"Which {t.plural} have {c.words} {words}?",
                       f"List the {t.label.words} of {t.plural} whose {c.words} is one of {words}."])
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} IN ({', '.join(sql_literal(v) for v in vs)})"

    def order_by(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("int", "real"))
        desc = self.pick([True, False])
        if desc:
            q = self.phrase([f"List the {t.label.words} of all {t.plural} ordered by {c.words} descending.",
                           f"Sort the {t.plural} by {c.words} from highest to lowest."])
        else:
            q = self.phrase([f"List the {t.label.words} of all {t.plural} ordered by {c.words}.",
                           f"Sort the {t.plural} by {c.words} from lowest to highest."])
        return q, f"SELECT {t.label.name} FROM {t.name} ORDER BY {c.name}" + (" DESC" if desc else "")

    def top_k(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("int", "real"))
        desc = self.pick([True, False])
        most = "highest" if desc else "lowest"
        k = self.pick([1, 1, 2, 3])
        if k == 1:
            q = self.phrase([f"Which {t.singular} has the {most} {c.words}?",
                           f"What is the {t.label.words} of the {t.singular} with the {most} {c.words}?"])
        else:
            q = self.phrase([f"List the {t.label.words} of the {k} {t.plural} with the {most} {c.words}.",
                           f"Which {k} {t.plural} have the {most} {c.words}?"])
        order = " DESC" if desc else ""
        # no tie at the cut-off: the (k+1)-th value must differ from the k-th
        values = sorted((r[c.name] for r in t.rows), reverse=desc)
        if len(values) > k and values[k - 1] == values[k]:
            return None
        return q, f"SELECT {t.label.name} FROM {t.name} ORDER BY {c.name}{order} LIMIT {k}"

    def distinct(self):
        t = self.pick(self.tables)
        cols = t.of_kind("text")
        if not cols:
            return None
        c = self.pick(cols)
        q = self.phrase([f"List the distinct {c.words} values of all {t.plural}.",
                       f"What are the different {c.words} values of the {t.plural}?"])
        return q, f"SELECT DISTINCT {c.name} FROM {t.name}"

    def count(self):
        t = self.pick(self.tables)
        kind = self.pick(["all", "eq", "cmp"])
        if kind == "all":
            return self.phrase([f"How many {t.plural} are there?", f"Count the {t.plural}."]), \
                f"SELECT COUNT(*) FROM {t.name}"
        if kind == "eq" and t.of_kind("text"):
            c = self.pick(t.of_kind("text"))
            v = self.value(t, c)
            return self.phrase([f"How many {t.plural} have {c.words} {v}?",
                              f"Count the {t.plural} whose {c.words} is {v}."]), \
                f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} = {sql_literal(v)}"
        c = self.pick(t.of_kind("int", "real"))
        op, ow, v = self.comparison(t, c)
        return self.phrase([f"How many {t.plural} have {c.words} {ow} {v}?",
                          f"Count the {t.plural} whose {c.words} is {ow} {v}."]), \
            f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} {op} {sql_literal(v)}"

    def aggregate(self):
        t = self.pick(self.tables)
        n = self.pick(t.of_kind("int", "real"))
        fn = self.pick(list(AGGREGATES))
        fw = self.pick(AGGREGATES[fn])
        texts = t.of_kind("text")
        if texts and self.pick([True, False]):
            c = self.pick(texts)
            v = self.value(t, c)
            q = self.phrase([f"What is the {fw} {n.words} of {t.plural} whose {c.words} is {v}?",
                           f"Find the {fw} {n.words} of the {t.plural} with {c.words} {v}."])
            return q, f"SELECT {fn}({n.name}) FROM {t.name} WHERE {c.name} = {sql_literal(v)}"
        q = self.phrase([f"What is the {fw} {n.words} of all {t.plural}?", f"Find the {fw} {n.words} of the {t.plural}."])
        return q, f"SELECT {fn}({n.name}) FROM {t.name}"

    def group_by(self):
        t = self.pick(self.tables)
        texts = t.of_kind("text")
        if not texts:
            return None
        c = self.pick(texts)
        if self.pick([True, False]):
            q = self.phrase([f"How many {t.plural} are there for each {c.words}?",
                           f"For each {c.words}, count the {t.plural}."])
            return q, f"SELECT {c.name}, COUNT(*) FROM {t.name} GROUP BY {c.name}"
        n = self.pick(t.of_kind("int", "real"))
        fn = self.pick(list(AGGREGATES))
        fw = self.pick(AGGREGATES[fn])
        q = self.phrase([f"What is the {fw} {n.words} of the {t.plural} for each {c.words}?",
                       f"For each {c.words}, show the {fw} {n.words} of the {t.plural}."])
        return q, f"SELECT {c.name}, {fn}({n.name}) FROM {t.name} GROUP BY {c.name}"

    def having(self):
        t = self.pick(self.tables)
        texts = t.of_kind("text")
        if not texts:
            return None
        c = self.pick(texts)
        counts = sorted(Counter(r[c.name] for r in t.rows).values())
        op, ow = self.pick([(">", "more than"), (">=", "at least")])
        k = self.pick(counts[:-1] or counts)
        q = self.phrase([f"Which {c.words} values have {ow} {k} {t.plural}?",
                       f"List the {c.words} values that have {ow} {k} {t.plural}."])
        return q, f"SELECT {c.name} FROM {t.name} GROUP BY {c.name} HAVING COUNT(*) {op} {k}"

    def join(self):
        kind = self.pick(["pair", "where", "where", "group"])
        t, fk = self.child_parent(child_label=kind != "group")
        if t is None:
            return None
        p = fk.parent
        on = f"FROM {t.name} AS T1 JOIN {p.name} AS T2 ON T1.{fk.name} = T2.{p.pk.name}"
        if kind == "pair":
            q = self.phrase([f"Show the {t.label.words} of each {t.singular} and the {p.label.words} of its "
                           f"{p.singular}.",
                           f"List every {t.singular} {t.label.words} together with its {p.singular} {p.label.words}."])
            return q, f"SELECT T1.{t.label.name}, T2.{p.label.name} {on}"
        if kind == "where":
            c = self.pick(p.of_kind("label", "text"))
            v = self.value(p, c)
            q = self.phrase([f"Which {t.plural} belong to {with_article(p.singular)} whose {c.words} is {v}?",
                           f"List the {t.label.words} of the {t.plural} whose {p.singular} has {c.words} {v}."])
            return q, f"SELECT T1.{t.label.name} {on} WHERE T2.{c.name} = {sql_literal(v)}"
        q = self.phrase([f"How many {t.plural} does each {p.singular} have?",
                       f"For each {p.singular}, show its {p.label.words} and the number of {t.plural}."])
        return q, f"SELECT T2.{p.label.name}, COUNT(*) {on} GROUP BY T2.{p.label.name}"

    def nested(self):
        kind = self.pick(["avg", "not_in", "in"])
        if kind == "avg":
            t = self.labelled_table()
            n = self.pick(t.of_kind("int", "real"))
            above = self.pick([True, False])
            op, w = (">", "above") if above else ("<", "below")
            q = self.phrase([f"Which {t.plural} have {n.words} {w} the average?",
                           f"List the {t.label.words} of the {t.plural} whose {n.words} is {w} the average {n.words}."])
            return q, f"SELECT {t.label.name} FROM {t.name} WHERE {n.name} {op} (SELECT AVG({n.name}) FROM {t.name})"
        t, fk = self.child_parent(child_label=False)
        if t is None:
            return None
        p = fk.parent
        if kind == "not_in":
            q = self.phrase([f"Which {p.plural} have no {t.plural}?",
                           f"List the {p.label.words} of the {p.plural} without any {t.singular}."])
            return q, f"SELECT {p.label.name} FROM {p.name} WHERE {p.pk.name} NOT IN (SELECT {fk.name} FROM {t.name})"
        n = self.pick(t.of_kind("int", "real"))
        op, ow, x = self.comparison(t, n)
        q = self.phrase([f"Which {p.plural} have {with_article(t.singular)} with {n.words} {ow} {x}?",
                       f"List the {p.label.words} of the {p.plural} that have {with_article(t.singular)} whose "
                       f"{n.words} is {ow} {x}."])
        return q, (f"SELECT {p.label.name} FROM {p.name} WHERE {p.pk.name} IN "
                   f"(SELECT {fk.name} FROM {t.name} WHERE {n.name} {op} {sql_literal(x)})")

    def set_op(self):
        t = self.pick([t for t in self.tables if t.of_kind("text")] or [None])
        if t is None:
            return None
        c = self.pick(t.of_kind("text"))
        n = self.pick(t.of_kind("int", "real"))
        kind = self.pick(["UNION", "INTERSECT", "EXCEPT"])
        op1, ow1, x1 = self.comparison(t, n)
        if kind == "EXCEPT":
            q = self.phrase([f"Which {c.words} values have no {t.plural} with {n.words} {ow1} {x1}?",
                           f"List the {c.words} values of the {t.plural}, except those with "
                           f"{with_article(t.singular)} whose {n.words} is {ow1} {x1}."])
            return q, (f"SELECT {c.name} FROM {t.name} EXCEPT "
                       f"SELECT {c.name} FROM {t.name} WHERE {n.name} {op1} {sql_literal(x1)}")
        op2, ow2, x2 = self.comparison(t, n)
        if kind == "INTERSECT":
            q = self.phrase([f"Which {c.words} values have both {with_article(t.singular)} with {n.words} {ow1} {x1} and "
                             f"{with_article(t.singular)} with {n.words} {ow2} {x2}?",
                             f"List the {c.words} values shared by {t.plural} with {n.words} {ow1} {x1} and "
                             f"{t.plural} with {n.words} {ow2} {x2}."])
        else:
            q = self.phrase([f"Which {c.words} values have {with_article(t.singular)} with {n.words} {ow1} {x1} or "
                             f"{with_article(t.singular)} with {n.words} {ow2} {x2}?",
                             f"List the {c.words} values of {t.plural} whose {n.words} is either {ow1} {x1} or "
                             f"{ow2} {x2}."])
        return q, (f"SELECT {c.name} FROM {t.name} WHERE {n.name} {op1} {sql_literal(x1)} {kind} "
                   f"SELECT {c.name} FROM {t.name} WHERE {n.name} {op2} {sql_literal(x2)}")


# (shape name, method, weight): simple shapes are more frequent, as in real workloads
SHAPES = [("select", "select_one", 2), ("select", "select_two", 2), ("where", "where_eq", 3),
          ("where", "where_cmp", 3), ("where_and_or", "where_and_or", 2), ("like", "like", 2),
          ("between", "between", 2), ("in", "in_list", 2), ("order_by", "order_by", 2), ("limit", "top_k", 2),
          ("distinct", "distinct", 2), ("aggregate", "count", 3), ("aggregate", "aggregate", 3),
          ("group_by", "group_by", 3), ("having", "having", 2), ("join", "join", 4), ("nested", "nested", 3),
          ("set_op", "set_op", 2)]


# Surface forms on top of the templates: how people actually type questions. Each keeps every value and
# name as it is (case included), so the SQL literal can still be copied from the question.
ASKING = ["Can you tell me", "I want to know", "Tell me", "Do you know"]
ASKING_FOR = ["Please", "Could you", "I need you to", "Kindly"]


def surface_form(question: str, rng: random.Random) -> str:
    """The template's sentence as typed: as is, polite or terse, without the final mark, lower-case start."""
    q = question
    style = rng.choice(["plain", "plain", "polite", "polite", "terse", "lower"])
    if style == "polite":
        lead = rng.choice(ASKING if q.endswith("?") else ASKING_FOR)
        q = f"{lead} {q[0].lower()}{q[1:]}"
    if style in ("terse", "lower") or rng.random() < 0.25:
        q = q.rstrip("?.")
    if style == "lower":
        q = q[0].lower() + q[1:]
    return q


def generate_questions(tables: list[BuiltTable], db_path: Path, n: int, rng: random.Random,
                       max_tries_factor: int = 20, wordings: str = "train") -> list[dict]:
    """`n` distinct (question, SQL, shape) records whose SQL runs on db_path and returns rows; the question
    templates come from the wording set `wordings` (train, held_out or all)."""
    maker = QuestionMaker(tables, rng, wordings)
    names, methods, weights = zip(*SHAPES)
    conn = sqlite3.connect(db_path)
    out, seen = [], set()
    try:
        for _ in range(n * max_tries_factor):
            if len(out) >= n:
                break
            i = rng.choices(range(len(SHAPES)), weights)[0]
            try:
                made = getattr(maker, methods[i])()
            except (IndexError, AttributeError):  # the database lacks a needed column kind
                made = None
            if made is None or made[0] in seen:
                continue
            question, sql = made
            question = surface_form(question, rng)
            if question in seen:
                continue
            try:
                rows = conn.execute(sql).fetchall()
            except sqlite3.Error as e:  # a generator bug: fail loudly, never write broken gold SQL
                raise RuntimeError(f"generated SQL does not execute: {sql!r}: {e}") from e
            if not rows or all(v is None for r in rows for v in r):
                continue
            seen.add(question)
            out.append({"question": question, "query": sql, "shape": names[i]})
    finally:
        conn.close()
    return out
