"""English questions with their gold SQL for one database: one method per SQL shape.

`generate_questions` draws shapes by weight (SHAPES), asks `QuestionMaker` for a (question, SQL) pair,
runs the SQL on the database and keeps it only if it returns rows and the question is new. Values in a
question are taken from the database's own rows. The same maker serves the synthetic databases
(database.py) and any SQLite file (from_sqlite.py): both describe their tables as `BuiltTable`s.

Wordings. Every shape (and every variant of a shape, e.g. COUNT(*) with and without a condition) has a
list of templates in WORDINGS, written with composable phrase parts:

    [a|b|c]    one of the alternatives (an empty one is allowed: "[the|]")
    <part>     one of PARTS[part]: verb synonyms ("list", "show me", "give me", ...), polite leads
               ("please", "pls", "could you", ...), which themselves may hold parts
    {slot}     a name or value of the database (table, column, value), filled in last

so one template stands for many wordings (word order, synonyms, terse and polite forms, singular and
plural), and `surface_form` then types the sentence as people do (lower-case start, no final mark,
a polite lead). The LAST template of every list is held out: training and validation questions never use
it, the held-out-wordings test uses only it; `check_held_out_wordings` (run by the tests) proves that no
wording it expands to is also a training wording, even with the polite leads stripped.
"""
from __future__ import annotations

import random
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Callable

from text2sql.linking import plural
from text2sql.synthetic.database import BuiltColumn, BuiltTable

WORDING_SETS = ("train", "held_out", "all")
GREATER = [">", ["greater than", "more than", "above", "over"]]
LESS = ["<", ["less than", "below", "under"]]
AT_LEAST = [">=", ["at least"]]
AT_MOST = ["<=", ["at most"]]
AGGREGATES = {"AVG": ["average", "mean"], "SUM": ["total"], "MIN": ["minimum", "smallest", "lowest"],
              "MAX": ["maximum", "largest", "highest"]}
HIGHEST = ["highest", "largest", "greatest", "biggest"]
LOWEST = ["lowest", "smallest", "least"]
ABOVE = ["above", "higher than", "greater than", "over"]
BELOW = ["below", "lower than", "less than", "under"]

# ----------------------------------------------------------------------------------------------------
# Phrase parts and the templates of every shape (see the module docstring for the notation)

POLITE = ["please", "pls", "could you", "can you", "kindly"]
PARTS = {
    "pol": ["", "", "", ""] + POLITE,  # mostly terse: the empty lead is drawn half of the time
    "verb": ["list", "show", "show me", "give me", "find", "tell me", "display", "get", "return", "output"],
    "do": ["<pol> <verb>"],
}

# slots: T/Ts a table's row in the singular/plural, aT with an article; L/Ls its label column; C/Cs a column
# (plural Cs); N a numeric column; V a value, Vs several; X a number; ow a comparison ("more than");
# aC/aN a column with an article; P/Ps/aP/PL/PLs the parent table of a foreign key and its label; fw an aggregate word ("average").
WORDINGS: dict[str, list[str]] = {
    "select_one": [
        "<do> the {Cs} of [all|all the|the] {Ts}.",
        "<do> the {C} of [each|every] {T}.",
        "what is the {C} of [each|every] {T}?",
        "what are the {Cs} of [all|all the|the] {Ts}?",
        "[for|across] [each|every] {T}, <do> [its|the] {C}.",
        "{Cs} of [all|the] {Ts}.",
        "[i need|i want|i'd like] the {C} of every {T}.",
        "what {C} does each {T} have?"],
    "select_two": [
        "<do> the {L} and {C} of [all|all the|the] {Ts}.",
        "<do> the {L} and {C} of [each|every] {T}.",
        "what are the {L} and {C} of [all|the] {Ts}?",
        "for [each|every] {T}, <do> [its|the] {L} and {C}.",
        "{L} and {C} of [all|the] {Ts}.",
        "<do> [each|every] {T}'s {L} and {C}.",
        "<do> the {Ts} along with their {L} and {C}."],
    "where_eq": [
        "which {Ts} have {C} {V}?",
        "which {Ts} have the {C} {V}?",
        "<do> the {Ls} of [the|all] {Ts} whose {C} is {V}.",
        "<do> the {Ts} with {C} {V}.",
        "<do> [all|all the] {Ts} [with|having] {C} {V}.",
        "what are the {Ls} of the {Ts} with {C} {V}?",
        "[for|among] {Ts} with {C} {V}, <do> [the|their] {Ls}.",
        "{C} {V}: <do> the {Ts}.",
        "{Ts} [whose {C} is|with {C}] {V}.",
        "<do> the {Ls} of {Ts} where the {C} equals {V}."],
    "where_cmp": [
        "which {Ts} have {C} {ow} {X}?",
        "which {Ts} have {aC} {ow} {X}?",
        "<do> the {Ls} of [the|all] {Ts} with {C} {ow} {X}.",
        "<do> the {Ts} whose {C} is {ow} {X}.",
        "what are the {Ls} of {Ts} whose {C} is {ow} {X}?",
        "[for|among] {Ts} with {C} {ow} {X}, <do> [the|their] {Ls}.",
        "{Ts} with {C} {ow} {X}.",
        "{C} {ow} {X}: <do> the {Ts}.",
        "<do> each {T} that has {aC} {ow} {X}."],
    "where_and_or": [
        "which {Ts} have {C} {V} {conj} {N} {ow} {X}?",
        "<do> the {Ls} of {Ts} whose {C} is {V} {conj} whose {N} is {ow} {X}.",
        "<do> the {Ts} with {C} {V} {conj} {N} {ow} {X}.",
        "what are the {Ls} of the {Ts} with {C} {V} {conj} with {N} {ow} {X}?",
        "[for|among] {Ts} with {C} {V} {conj} {N} {ow} {X}, <do> [the|their] {Ls}.",
        "{Ts} whose {C} is {V} {conj} whose {N} is {ow} {X}.",
        "<do> each {T} that has {C} {V} {conj} {aN} {ow} {X}."],
    "like_start": [
        "which {Ts} have {aL} starting with {S}?",
        "<do> the {Ts} whose {L} [begins|starts] with {S}.",
        "<do> the {Ls} of {Ts} [that start|starting|beginning] with {S}.",
        "what {Ts} have {aL} that [starts|begins] with {S}?",
        "{Ts} whose {L} [starts|begins] with {S}.",
        "[for|among] {Ts} whose {L} starts with {S}, <do> [the|their] {Ls}.",
        "<do> the {Ts} with {aL} whose first letter is {S}."],
    "like_end": [
        "which {Ts} have {aL} ending with {S}?",
        "<do> the {Ts} whose {L} ends with {S}.",
        "<do> the {Ls} of {Ts} [that end|ending] with {S}.",
        "what {Ts} have {aL} that ends with {S}?",
        "{Ts} whose {L} ends [with|in] {S}.",
        "[for|among] {Ts} whose {L} ends with {S}, <do> [the|their] {Ls}.",
        "<do> the {Ts} with {aL} whose last letters are {S}."],
    "like_contain": [
        "which {Ts} have {aL} containing {S}?",
        "<do> the {Ts} whose {L} contains {S}.",
        "<do> the {Ls} of {Ts} [that contain|containing|including] {S}.",
        "what {Ts} have {S} in their {L}?",
        "{Ts} whose {L} [contains|includes] {S}.",
        "[for|among] {Ts} whose {L} contains {S}, <do> [the|their] {Ls}.",
        "<do> the {Ts} with {aL} in which {S} appears."],
    "between": [
        "which {Ts} have {C} between {A} and {B}?",
        "<do> the {Ls} of {Ts} whose {C} is between {A} and {B}.",
        "<do> the {Ts} with {C} [between {A} and {B}|from {A} to {B}].",
        "what are the {Ls} of the {Ts} with {C} between {A} and {B}?",
        "[for|among] {Ts} with {C} between {A} and {B}, <do> [the|their] {Ls}.",
        "{Ts} with {C} [between {A} and {B}|from {A} to {B}].",
        "{C} between {A} and {B}: <do> the {Ts}.",
        "<do> the {Ts} whose {C} lies in the range {A} to {B}."],
    "in_list": [
        "which {Ts} have {C} {Vs}?",
        "<do> the {Ls} of {Ts} whose {C} is one of {Vs}.",
        "<do> the {Ts} with {C} {Vs}.",
        "what are the {Ls} of the {Ts} whose {C} is {Vs}?",
        "[for|among] {Ts} with {C} {Vs}, <do> [the|their] {Ls}.",
        "{Ts} with {C} {Vs}.",
        "<do> the {Ts} that have {C} equal to {Vs}."],
    "order_desc": [
        "<do> the {Ls} of [all|all the] {Ts} ordered by {C} descending.",
        "sort the {Ts} by {C} from highest to lowest.",
        "<do> [all|all the|the] {Ts} sorted by {C} [in descending order|from highest to lowest|descending].",
        "<do> the {Ls} of the {Ts} in descending order of {C}.",
        "what are the {Ls} of the {Ts} [sorted|ordered] by {C} descending?",
        "{Ts} by {C}, highest first.",
        "<pol> [order|rank|sort] the {Ts} by {C}, [largest|highest] first.",
        "<do> the {Ts} starting from the one with the largest {C}."],
    "order_asc": [
        "<do> the {Ls} of [all|all the] {Ts} ordered by {C}.",
        "sort the {Ts} by {C} from lowest to highest.",
        "<do> [all|all the|the] {Ts} sorted by {C} [in ascending order|from lowest to highest|ascending].",
        "<do> the {Ls} of the {Ts} in ascending order of {C}.",
        "what are the {Ls} of the {Ts} [sorted|ordered] by {C}?",
        "{Ts} by {C}, lowest first.",
        "<pol> [order|rank|sort] the {Ts} by {C}, [smallest|lowest] first.",
        "<do> the {Ts} starting from the one with the smallest {C}."],
    "top_one": [
        "which {T} has the {most} {C}?",
        "what is the {L} of the {T} with the {most} {C}?",
        "<do> the {T} with the {most} {C}.",
        "<do> the {L} of the {T} [having|that has] the {most} {C}.",
        "{T} with the {most} {C}.",
        "among all {Ts}, which one has the {most} {C}?",
        "<do> the {T} whose {C} is the {most} of all."],
    "top_k": [
        "<do> the {Ls} of the {k} {Ts} with the {most} {C}.",
        "which {k} {Ts} have the {most} {C}?",
        "<do> the {top} {k} {Ts} by {C}.",
        "what are the {k} {Ts} with the {most} {C}?",
        "{k} {Ts} with the {most} {C}.",
        "[among|of] all {Ts}, which {k} have the {most} {C}?",
        "<do> the {k} {Ts} whose {C} is the {most}."],
    "distinct": [
        "<do> the distinct {C} values of [all|the] {Ts}.",
        "what are the different {C} values of the {Ts}?",
        "<do> the [different|distinct|unique] {Cs} of [the|all] {Ts}.",
        "what [different|distinct|unique] {Cs} do the {Ts} have?",
        "[different|distinct|unique] {Cs} [of|among] [the|all] {Ts}.",
        "<do> each {C} [value|] used by the {Ts}, without repeats.",
        "which {Cs} appear among the {Ts}, each listed once?"],
    "count_all": [
        "how many {Ts} are there?",
        "count the {Ts}.",
        "<do> the number of {Ts}.",
        "what is the [number|count|total number] of {Ts}?",
        "how many {Ts} [do we have|exist|are recorded]?",
        "number of {Ts}.",
        "[total|overall] count of {Ts}.",
        "<pol> tally [up|] the {Ts}."],
    "count_eq": [
        "how many {Ts} have {C} {V}?",
        "count the {Ts} whose {C} is {V}.",
        "<do> the number of {Ts} with {C} {V}.",
        "what is the number of {Ts} whose {C} is {V}?",
        "how many {Ts} [are there|exist] with {C} {V}?",
        "number of {Ts} with {C} {V}.",
        "[for|among] {Ts} with {C} {V}, how many are there?",
        "<pol> tally [up|] the {Ts} where the {C} equals {V}."],
    "count_cmp": [
        "how many {Ts} have {C} {ow} {X}?",
        "count the {Ts} whose {C} is {ow} {X}.",
        "<do> the number of {Ts} with {C} {ow} {X}.",
        "what is the number of {Ts} whose {C} is {ow} {X}?",
        "how many {Ts} [are there|exist] with {C} {ow} {X}?",
        "number of {Ts} with {C} {ow} {X}.",
        "<pol> tally [up|] the {Ts} that have {aC} {ow} {X}."],
    "aggregate_where": [
        "what is the {fw} {N} of {Ts} whose {C} is {V}?",
        "<do> the {fw} {N} of the {Ts} with {C} {V}.",
        "[for|among] {Ts} with {C} {V}, what is the {fw} {N}?",
        "{fw} {N} of {Ts} with {C} {V}.",
        "what {fw} {N} do the {Ts} with {C} {V} have?",
        "<do> the {fw} {N} [for|across] [the|all] {Ts} with {C} {V}.",
        "considering only the {Ts} where the {C} equals {V}, <do> the {fw} {N}."],
    "aggregate_all": [
        "what is the {fw} {N} of [all|all the|the] {Ts}?",
        "<do> the {fw} {N} of [all|all the|the] {Ts}.",
        "[across|over] all {Ts}, what is the {fw} {N}?",
        "{fw} {N} of [all|the] {Ts}.",
        "<do> the {fw} {N} [across|over] [the|all] {Ts}.",
        "what {fw} {N} do the {Ts} have?",
        "<pol> compute the {fw} {N} taken over every {T}."],
    "group_count": [
        "how many {Ts} are there for each {C}?",
        "for each {C}, count the {Ts}.",
        "<do> the number of {Ts} [for|per] [each|every] {C}.",
        "how many {Ts} [are there|exist] per {C}?",
        "count the {Ts} [for each|per|by] {C}.",
        "number of {Ts} [per|by|for each] {C}.",
        "[for|by] each {C}, how many {Ts} are there?",
        "<pol> break down the {Ts} by {C} and give the count of each."],
    "group_agg": [
        "what is the {fw} {N} of the {Ts} for each {C}?",
        "for each {C}, <do> the {fw} {N} of the {Ts}.",
        "<do> the {fw} {N} of {Ts} [per|for each|by] {C}.",
        "{fw} {N} of {Ts} [per|by|for each] {C}.",
        "[for|by] each {C}, what is the {fw} {N} of the {Ts}?",
        "<do> each {C} with the {fw} {N} of its {Ts}.",
        "<pol> break down the {Ts} by {C} and give the {fw} {N} of each."],
    "having": [
        "which {C} values have {ow} {k} {Ts}?",
        "<do> the {C} values that have {ow} {k} {Ts}.",
        "which {Cs} have {ow} {k} {Ts}?",
        "<do> the {Cs} [shared by|with] {ow} {k} {Ts}.",
        "{Cs} with {ow} {k} {Ts}.",
        "what {Cs} [are shared by|have] {ow} {k} {Ts}?",
        "<do> every {C} that appears in {ow} {k} {Ts}."],
    "join_pair": [
        "<do> the {L} of each {T} and the {PL} of its {P}.",
        "<do> every {T} {L} together with its {P} {PL}.",
        "for each {T}, <do> [its|the] {L} and the {PL} of its {P}.",
        "what are the {Ls} of the {Ts} and the {PLs} of their {Ps}?",
        "{T} {Ls} with their {P} {PLs}.",
        "<do> the {Ls} of [all|the] {Ts} [alongside|next to|with] the {PLs} of their {Ps}.",
        "<pol> pair each {T} {L} with the {PL} of the {P} it belongs to."],
    "join_where": [
        "which {Ts} belong to {aP} whose {C} is {V}?",
        "<do> the {Ls} of the {Ts} whose {P} has {C} {V}.",
        "<do> the {Ts} of the {Ps} with {C} {V}.",
        "what are the {Ls} of {Ts} whose {P} has {C} {V}?",
        "[for|among] {Ps} with {C} {V}, <do> [the|their] {Ts}.",
        "{Ts} [of|belonging to|under] {Ps} with {C} {V}.",
        "<do> the {Ts} linked to {aP} where the {C} equals {V}."],
    "join_group": [
        "how many {Ts} does each {P} have?",
        "for each {P}, <do> its {PL} and the number of {Ts}.",
        "<do> the number of {Ts} [per|for each|of each] {P}.",
        "count the {Ts} [per|of each|for each] {P}.",
        "<do> each {P} {PL} with [its|the] number of {Ts}.",
        "number of {Ts} [per|for each] {P}.",
        "how many {Ts} fall under each {P}?"],
    "nested_avg": [
        "which {Ts} have {N} {w} the average?",
        "<do> the {Ls} of the {Ts} whose {N} is {w} the average {N}.",
        "<do> the {Ts} with {N} {w} [the|] average.",
        "what are the {Ls} of {Ts} whose {N} is {w} the average?",
        "{Ts} with {N} {w} the average {N}.",
        "[for|among] all {Ts}, which have {N} {w} the average?",
        "<do> the {Ts} whose {N} is {w} the mean of all {Ts}."],
    "nested_not_in": [
        "which {Ps} have no {Ts}?",
        "<do> the {PL} of the {Ps} without any {T}.",
        "<do> the {Ps} [that have|with] no {Ts}.",
        "what are the {PLs} of {Ps} that have no {Ts}?",
        "{Ps} without [any|] {Ts}.",
        "which {Ps} do not have any {Ts}?",
        "<do> the {Ps} for which not a single {T} exists."],
    "nested_in": [
        "which {Ps} have {aT} with {N} {ow} {X}?",
        "<do> the {PL} of the {Ps} that have {aT} whose {N} is {ow} {X}.",
        "<do> the {Ps} with [at least one|some] {T} whose {N} is {ow} {X}.",
        "what are the {PLs} of {Ps} having {aT} with {N} {ow} {X}?",
        "{Ps} that have {aT} with {N} {ow} {X}.",
        "[for|among] {Ts} with {N} {ow} {X}, <do> their {Ps}.",
        "<do> the {Ps} linked to {aT} where the {N} is {ow} {X}."],
    "set_except": [
        "which {C} values have no {Ts} with {N} {ow} {X}?",
        "<do> the {C} values of the {Ts}, except those with {aT} whose {N} is {ow} {X}.",
        "which {Cs} have no {T} whose {N} is {ow} {X}?",
        "<do> the {Cs} of {Ts} [excluding|except] those that have {aT} with {N} {ow} {X}.",
        "{Cs} without any {T} with {N} {ow} {X}.",
        "what {Cs} [do not|never] have {aT} with {N} {ow} {X}?",
        "<do> the {Cs} where not a single {T} has {N} {ow} {X}."],
    "set_intersect": [
        "which {C} values have both {aT} with {N} {ow1} {X1} and {aT} with {N} {ow2} {X2}?",
        "<do> the {C} values shared by {Ts} with {N} {ow1} {X1} and {Ts} with {N} {ow2} {X2}.",
        "which {Cs} have {aT} with {N} {ow1} {X1} and also {aT} with {N} {ow2} {X2}?",
        "<do> the {Cs} that have both {Ts} with {N} {ow1} {X1} and {Ts} with {N} {ow2} {X2}.",
        "{Cs} with {Ts} of {N} {ow1} {X1} as well as {Ts} of {N} {ow2} {X2}.",
        "what {Cs} [are common to|are shared by] {Ts} with {N} {ow1} {X1} and {Ts} with {N} {ow2} {X2}?",
        "<do> the {Cs} found both among {Ts} whose {N} is {ow1} {X1} and among {Ts} whose {N} is {ow2} {X2}."],
    "set_union": [
        "which {C} values have {aT} with {N} {ow1} {X1} or {aT} with {N} {ow2} {X2}?",
        "<do> the {C} values of {Ts} whose {N} is either {ow1} {X1} or {ow2} {X2}.",
        "which {Cs} have {aT} with {N} {ow1} {X1} or one with {N} {ow2} {X2}?",
        "<do> the {Cs} of {Ts} with {N} {ow1} {X1} or with {N} {ow2} {X2}.",
        "{Cs} of {Ts} with {N} {ow1} {X1} or {N} {ow2} {X2}.",
        "what {Cs} do {Ts} with {N} {ow1} {X1} or {N} {ow2} {X2} have?",
        "<do> the {Cs} found among {Ts} whose {N} is {ow1} {X1}, together with those whose {N} is {ow2} {X2}."],
}

_PART = re.compile(r"<(\w+)>|\[([^\[\]]*)\]")


def _tidy(text: str) -> str:
    text = " ".join(text.split())
    return re.sub(r" ([.,?:])", r"\1", text)


def _options(match: re.Match) -> list[str]:
    return PARTS[match.group(1)] if match.group(1) else match.group(2).split("|")


def expand(template: str) -> list[str]:
    """Every wording a template stands for (slots left as {name}), without repeats, in a fixed order."""
    m = _PART.search(template)
    if m is None:
        return [_tidy(template)]
    out = []
    for option in _options(m):
        out += expand(template[:m.start()] + option + template[m.end():])
    return list(dict.fromkeys(out))


def sample_wording(template: str, rng: random.Random) -> str:
    """One wording of a template: each part and alternative drawn on its own, left to right."""
    while (m := _PART.search(template)) is not None:
        template = template[:m.start()] + rng.choice(_options(m)) + template[m.end():]
    return _tidy(template)


def wordings(key: str, wording_set: str = "train") -> list[str]:
    """All wordings of one shape variant in a wording set: train (every template but the last),
    held_out (the last) or all."""
    templates = WORDINGS[key]
    chosen = {"train": templates[:-1], "held_out": templates[-1:], "all": templates}[wording_set]
    return list(dict.fromkeys(w for t in chosen for w in expand(t)))


def wording_key(text: str) -> str:
    """What must differ between a held-out and a training wording: lower case, slots as one mark, no
    punctuation, no polite lead (surface_form may add or drop those)."""
    words = re.sub(r"\{\w+\}", " # ", text.lower()).replace("'", " ").split()
    words = [w.strip(".,?:") for w in words if w.strip(".,?:")]
    stripped = True
    while stripped and words:
        stripped = False
        for lead in sorted(POLITE + [a.lower() for a in ASKING + ASKING_FOR], key=len, reverse=True):
            lw = lead.split()
            if words[:len(lw)] == lw:
                words, stripped = words[len(lw):], True
                break
    return " ".join(words)


def check_held_out_wordings() -> dict[str, int]:
    """{key: number of training wordings}; raises AssertionError when a held-out wording of any shape is
    also a training wording of any shape (compared by `wording_key`)."""
    train = {wording_key(w) for key in WORDINGS for w in wordings(key, "train")}
    for key in WORDINGS:
        shared = [w for w in wordings(key, "held_out") if wording_key(w) in train]
        if shared:
            raise AssertionError(f"held-out wordings of {key!r} also occur in training: {shared[:3]}")
    return {key: len(wordings(key, "train")) for key in WORDINGS}


def with_article(word: str) -> str:
    """'a worker', 'an instructor'."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def plural_words(words: str) -> str:
    """'founded year' -> 'founded years' (the last word in the plural)."""
    head, _, last = words.rpartition(" ")
    return (head + " " if head else "") + plural(last) if last else words


def sql_literal(v) -> str:
    """A Python value as an SQL literal: strings quoted (quotes doubled), numbers as written."""
    return "'" + str(v).replace("'", "''") + "'" if isinstance(v, str) else repr(v)


# ----------------------------------------------------------------------------------------------------
# Questions: one method per SQL shape. Each returns (question, sql) or None when the database does not
# allow the shape; the caller executes the SQL and keeps it only if it returns rows.


class QuestionMaker:
    """(question, SQL) pairs for one database; each shape method returns a pair or None. Values come from
    `BuiltTable.rows` (None, SQL's NULL, is never asked about)."""

    def __init__(self, tables: list[BuiltTable], rng: random.Random, wordings: str = "train"):
        if wordings not in WORDING_SETS:
            raise ValueError(f"wordings must be one of {WORDING_SETS}, got {wordings!r}")
        self.tables, self.rng, self.wordings = tables, rng, wordings

    # small helpers -----------------------------------------------------------------------------------
    def pick(self, seq):
        return self.rng.choice(seq)

    def phrase(self, key: str, **slots) -> str:
        """One English wording of a shape variant, its slots filled in. The last template of every list is
        held out: training and validation questions never use it, the held-out-wordings test uses only it."""
        templates = WORDINGS[key]
        if len(templates) < 2:
            raise AssertionError(f"every shape needs two templates or more (one is held out): {key}")
        if self.wordings == "held_out":
            template = templates[-1]
        else:
            template = self.pick(templates[:-1] if self.wordings == "train" else templates)
        text = sample_wording(template, self.rng)
        for name in ("C", "N"):  # {aC}: the column's words with an article
            if name in slots:
                slots["a" + name] = with_article(str(slots[name]))
        return (text[:1].upper() + text[1:]).format(**slots)

    @staticmethod
    def names(t: BuiltTable, label: bool = True) -> dict:
        """The slots that name a table (T, Ts, aT) and its label column (L, Ls, aL)."""
        slots = {"T": t.singular, "Ts": t.plural, "aT": with_article(t.singular)}
        if label and t.label is not None:
            slots.update(L=t.label.words, Ls=plural_words(t.label.words), aL=with_article(t.label.words))
        return slots

    def labelled_table(self) -> BuiltTable | None:
        tables = [t for t in self.tables if t.label]
        return self.pick(tables) if tables else None

    def values(self, t: BuiltTable, c: BuiltColumn) -> list:
        return [r[c.name] for r in t.rows if r[c.name] is not None]

    def value(self, t: BuiltTable, c: BuiltColumn):
        return self.pick(self.values(t, c))

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
        q = self.phrase("select_one", C=c.words, Cs=plural_words(c.words), **self.names(t, False))
        return q, f"SELECT {c.name} FROM {t.name}"

    def select_two(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("text", "int", "real"))
        q = self.phrase("select_two", C=c.words, **self.names(t))
        return q, f"SELECT {t.label.name}, {c.name} FROM {t.name}"

    def where_eq(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("text"))
        v = self.value(t, c)
        q = self.phrase("where_eq", C=c.words, V=v, **self.names(t))
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} = {sql_literal(v)}"

    def where_cmp(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("int", "real"))
        op, ow, v = self.comparison(t, c)
        q = self.phrase("where_cmp", C=c.words, ow=ow, X=v, **self.names(t))
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} {op} {sql_literal(v)}"

    def where_and_or(self):
        t = self.labelled_table()
        c, n = self.pick(t.of_kind("text")), self.pick(t.of_kind("int", "real"))
        v = self.value(t, c)
        op, ow, x = self.comparison(t, n)
        conj = self.pick(["and", "or"])
        q = self.phrase("where_and_or", C=c.words, V=v, conj=conj, N=n.words, ow=ow, X=x, **self.names(t))
        return q, (f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} = {sql_literal(v)} {conj.upper()} "
                   f"{n.name} {op} {sql_literal(x)}")

    def like(self):
        t = self.labelled_table()
        name = self.value(t, t.label)
        kind = self.pick(["start", "contain", "end"])
        if kind == "start":
            s, pattern = name[0], f"{name[0]}%"
        elif kind == "end":
            s, pattern = name[-2:], f"%{name[-2:]}"
        else:
            i = self.rng.randint(0, max(0, len(name) - 3))
            s = name[i:i + 3].strip()
            if len(s) < 2:
                return None
            pattern = f"%{s}%"
        q = self.phrase(f"like_{kind}", S=s, **self.names(t))
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {t.label.name} LIKE {sql_literal(pattern)}"

    def between(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("int", "real"))
        values = sorted(set(self.values(t, c)))
        if len(values) < 2:
            return None
        a, b = sorted(self.rng.sample(values, 2))
        q = self.phrase("between", C=c.words, A=a, B=b, **self.names(t))
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} BETWEEN {sql_literal(a)} AND {sql_literal(b)}"

    def in_list(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("text"))
        values = sorted(set(self.values(t, c)))
        if len(values) < 3:
            return None
        vs = self.rng.sample(values, self.pick([2, 3]))
        words = ", ".join(vs[:-1]) + f" or {vs[-1]}"
        q = self.phrase("in_list", C=c.words, Vs=words, **self.names(t))
        return q, f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} IN ({', '.join(sql_literal(v) for v in vs)})"

    def order_by(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("int", "real"))
        desc = self.pick([True, False])
        q = self.phrase("order_desc" if desc else "order_asc", C=c.words, **self.names(t))
        return q, f"SELECT {t.label.name} FROM {t.name} ORDER BY {c.name}" + (" DESC" if desc else "")

    def top_k(self):
        t = self.labelled_table()
        c = self.pick(t.of_kind("int", "real"))
        desc = self.pick([True, False])
        most = self.pick(HIGHEST if desc else LOWEST)
        k = self.pick([1, 1, 2, 3])
        q = self.phrase("top_one" if k == 1 else "top_k", C=c.words, most=most, k=k, top="top" if desc else "bottom",
                        **self.names(t))
        order = " DESC" if desc else ""
        # no tie at the cut-off: the (k+1)-th value must differ from the k-th
        values = sorted(self.values(t, c), reverse=desc)
        if len(values) > k and values[k - 1] == values[k]:
            return None
        return q, f"SELECT {t.label.name} FROM {t.name} ORDER BY {c.name}{order} LIMIT {k}"

    def distinct(self):
        t = self.pick(self.tables)
        cols = t.of_kind("text")
        if not cols:
            return None
        c = self.pick(cols)
        q = self.phrase("distinct", C=c.words, Cs=plural_words(c.words), **self.names(t, False))
        return q, f"SELECT DISTINCT {c.name} FROM {t.name}"

    def count(self):
        t = self.pick(self.tables)
        kind = self.pick(["all", "eq", "cmp"])
        if kind == "all":
            return self.phrase("count_all", **self.names(t, False)), f"SELECT COUNT(*) FROM {t.name}"
        if kind == "eq" and t.of_kind("text"):
            c = self.pick(t.of_kind("text"))
            v = self.value(t, c)
            return self.phrase("count_eq", C=c.words, V=v, **self.names(t, False)), \
                f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} = {sql_literal(v)}"
        c = self.pick(t.of_kind("int", "real"))
        op, ow, v = self.comparison(t, c)
        return self.phrase("count_cmp", C=c.words, ow=ow, X=v, **self.names(t, False)), \
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
            q = self.phrase("aggregate_where", fw=fw, N=n.words, C=c.words, V=v, **self.names(t, False))
            return q, f"SELECT {fn}({n.name}) FROM {t.name} WHERE {c.name} = {sql_literal(v)}"
        q = self.phrase("aggregate_all", fw=fw, N=n.words, **self.names(t, False))
        return q, f"SELECT {fn}({n.name}) FROM {t.name}"

    def group_by(self):
        t = self.pick(self.tables)
        texts = t.of_kind("text")
        if not texts:
            return None
        c = self.pick(texts)
        if self.pick([True, False]):
            q = self.phrase("group_count", C=c.words, **self.names(t, False))
            return q, f"SELECT {c.name}, COUNT(*) FROM {t.name} GROUP BY {c.name}"
        n = self.pick(t.of_kind("int", "real"))
        fn = self.pick(list(AGGREGATES))
        fw = self.pick(AGGREGATES[fn])
        q = self.phrase("group_agg", fw=fw, N=n.words, C=c.words, **self.names(t, False))
        return q, f"SELECT {c.name}, {fn}({n.name}) FROM {t.name} GROUP BY {c.name}"

    def having(self):
        t = self.pick(self.tables)
        texts = t.of_kind("text")
        if not texts:
            return None
        c = self.pick(texts)
        counts = sorted(Counter(self.values(t, c)).values())
        op, ow = self.pick([(">", "more than"), (">=", "at least")])
        k = self.pick(counts[:-1] or counts)
        q = self.phrase("having", C=c.words, Cs=plural_words(c.words), ow=ow, k=k, **self.names(t, False))
        return q, f"SELECT {c.name} FROM {t.name} GROUP BY {c.name} HAVING COUNT(*) {op} {k}"

    @classmethod
    def parent_names(cls, p: BuiltTable) -> dict:
        return {"P": p.singular, "Ps": p.plural, "aP": with_article(p.singular), "PL": p.label.words,
                "PLs": plural_words(p.label.words)}

    def join(self):
        kind = self.pick(["pair", "where", "where", "group"])
        t, fk = self.child_parent(child_label=kind != "group")
        if t is None:
            return None
        p = fk.parent
        on = f"FROM {t.name} AS T1 JOIN {p.name} AS T2 ON T1.{fk.name} = T2.{p.pk.name}"
        if kind == "pair":
            q = self.phrase("join_pair", **self.names(t), **self.parent_names(p))
            return q, f"SELECT T1.{t.label.name}, T2.{p.label.name} {on}"
        if kind == "where":
            c = self.pick(p.of_kind("label", "text"))
            v = self.value(p, c)
            q = self.phrase("join_where", C=c.words, V=v, **self.names(t), **self.parent_names(p))
            return q, f"SELECT T1.{t.label.name} {on} WHERE T2.{c.name} = {sql_literal(v)}"
        q = self.phrase("join_group", **self.names(t, False), **self.parent_names(p))
        return q, f"SELECT T2.{p.label.name}, COUNT(*) {on} GROUP BY T2.{p.label.name}"

    def nested(self):
        kind = self.pick(["avg", "not_in", "in"])
        if kind == "avg":
            t = self.labelled_table()
            n = self.pick(t.of_kind("int", "real"))
            above = self.pick([True, False])
            op, w = (">", self.pick(ABOVE)) if above else ("<", self.pick(BELOW))
            q = self.phrase("nested_avg", N=n.words, w=w, **self.names(t))
            return q, f"SELECT {t.label.name} FROM {t.name} WHERE {n.name} {op} (SELECT AVG({n.name}) FROM {t.name})"
        t, fk = self.child_parent(child_label=False)
        if t is None:
            return None
        p = fk.parent
        if kind == "not_in":
            q = self.phrase("nested_not_in", **self.names(t, False), **self.parent_names(p))
            return q, f"SELECT {p.label.name} FROM {p.name} WHERE {p.pk.name} NOT IN (SELECT {fk.name} FROM {t.name})"
        n = self.pick(t.of_kind("int", "real"))
        op, ow, x = self.comparison(t, n)
        q = self.phrase("nested_in", N=n.words, ow=ow, X=x, **self.names(t, False), **self.parent_names(p))
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
        slots = {"C": c.words, "Cs": plural_words(c.words), "N": n.words, **self.names(t, False)}
        if kind == "EXCEPT":
            q = self.phrase("set_except", ow=ow1, X=x1, **slots)
            return q, (f"SELECT {c.name} FROM {t.name} EXCEPT "
                       f"SELECT {c.name} FROM {t.name} WHERE {n.name} {op1} {sql_literal(x1)}")
        op2, ow2, x2 = self.comparison(t, n)
        q = self.phrase("set_intersect" if kind == "INTERSECT" else "set_union", ow1=ow1, X1=x1, ow2=ow2, X2=x2,
                        **slots)
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
QUESTION_LEADS = {"which", "what", "how"}
REQUEST_LEADS = {v.split()[0] for v in PARTS["verb"]} | {"sort", "order", "rank", "count", "compute", "tally",
                                                           "pair", "break"}


def surface_form(question: str, rng: random.Random) -> str:
    """The template's sentence as typed: as is, polite or terse, without the final mark, lower-case start.
    A polite lead goes only before a question word or a request verb, never before one already there."""
    q = question
    style = rng.choice(["plain", "plain", "polite", "polite", "terse", "lower"])
    lead = rng.choice(ASKING if q.endswith("?") else ASKING_FOR)
    first = q.split(" ", 1)[0].lower()
    if style == "polite" and first in (QUESTION_LEADS if q.endswith("?") else REQUEST_LEADS):
        q = f"{lead} {q[0].lower()}{q[1:]}"
    if style in ("terse", "lower") or rng.random() < 0.25:
        q = q.rstrip("?.")
    if style == "lower":
        q = q[0].lower() + q[1:]
    return q


def generate_questions(tables: list[BuiltTable], db_path: Path, n: int, rng: random.Random,
                       max_tries_factor: int = 20, wordings: str = "train", strict: bool = True,
                       accept: Callable[[sqlite3.Connection, str, str], bool] | None = None,
                       skipped: Counter | None = None, max_steps: int = 0) -> list[dict]:
    """`n` distinct (question, SQL, shape) records whose SQL runs on db_path and returns rows; the question
    templates come from the wording set `wordings` (train, held_out or all).

    strict: SQL that fails to run is a generator bug and raises (the synthetic databases); with
    strict=False (a database found in the wild: odd types, huge tables) such a pair is skipped. `accept`
    (connection, shape, sql) may reject a pair that runs; `skipped` counts why pairs were dropped;
    max_steps > 0 interrupts a query after about that many SQLite VM steps (a skip, counted as "slow")."""
    maker = QuestionMaker(tables, rng, wordings)
    names, methods, weights = zip(*SHAPES)
    skipped = skipped if skipped is not None else Counter()
    conn = sqlite3.connect(Path(db_path).resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
    if max_steps > 0:
        budget = {"ticks": 0}

        def tick():  # called every 1000 VM steps; a non-zero return interrupts the query
            budget["ticks"] += 1
            return budget["ticks"] * 1000 > max_steps
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
                skipped["no pair" if made is None else "repeated"] += 1
                continue
            question, sql = made
            question = surface_form(question, rng)
            if question in seen:
                skipped["repeated"] += 1
                continue
            try:
                if max_steps > 0:
                    budget["ticks"] = 0
                    conn.set_progress_handler(tick, 1000)
                rows = conn.execute(sql).fetchmany(1000)
                if accept is not None and rows and not accept(conn, names[i], sql):
                    skipped["rejected"] += 1
                    continue
            except sqlite3.Error as e:
                if strict:  # a generator bug: fail loudly, never write broken gold SQL
                    raise RuntimeError(f"generated SQL does not execute: {sql!r}: {e}") from e
                skipped["slow" if "interrupt" in str(e) else "sql error"] += 1
                continue
            finally:
                if max_steps > 0:
                    conn.set_progress_handler(None, 0)
            if not rows or all(v is None for r in rows for v in r):
                skipped["no rows"] += 1
                continue
            seen.add(question)
            out.append({"question": question, "query": sql, "shape": names[i]})
    finally:
        conn.close()
    return out
