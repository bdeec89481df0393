"""The text-to-SQL prompt format: schema serialisation, special tokens, and the loss-mask rule.

One training example is a single token sequence:

    <|schema|> tab1 department: col1 id int pk, col2 name text | tab2 employee: col1 id int pk, col2 name text, col3 dept id int fk tab1
    <|question|> How many employees (tab2) are there?
    <|sql|> SELECT COUNT(*) FROM tab2 <|end|>

(without the line breaks). The model learns to continue a prompt that ends in `<|sql|>` and stops at
`<|end|>`. The loss mask is 1 exactly on the SQL tokens and on `<|end|>`: the model is taught to write
SQL, not to reproduce schemas or questions (they are given at inference time anyway).

Tables and columns are named by tags (text2sql/schema_tags.py): the schema says in words which tag is
which (`col3 dept id`), the question carries the tags of the items it names (schema linking,
text2sql/linking.py), and the SQL is written over tags; `decode_sql` maps them back to the real names.
A schema given as plain text (no `Schema`) is used as it is, with real names.

Mask convention: `mask[i] == 1` means token `ids[i]` is a training *target*, i.e. the loss of predicting
`ids[i]` from `ids[:i]` counts. A trainer that shifts inputs/targets by one (`x = ids[:-1]`,
`y = ids[1:]`) uses `mask[1:]` for `y`.

User text (schemas, questions, SQL) is always encoded with `encode_ordinary`, so a question that
contains the literal text "<|sql|>" becomes ordinary text tokens; only this module inserts control
tokens, by id.

Tables the question names, or whose columns it names, come first in the schema text. Schemas that do
not fit the token budget are cut by one fixed rule (`fit_schema`):
  1. the full serialisation with column types;
  2. without column types (keys are kept: they say how to join);
  3. dropping whole tables, least relevant first: tables that are neither linked nor a foreign-key
     neighbour of a linked table go first, then the neighbours, then tables linked only through a column
     name, last the tables the question names; later tables before earlier ones; one table stays;
  4. if one table alone is still too long, its text is cut at the budget.
The rule needs only the schema and the question, so training and inference cut identically.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable

from data.prepare import DOCUMENT_END_TOKEN
from text2sql.linking import link, read_text_values
from text2sql.schema import Schema
from text2sql.schema_tags import schema_tags

SCHEMA_TOKEN = "<|schema|>"
QUESTION_TOKEN = "<|question|>"
SQL_TOKEN = "<|sql|>"
SQL_END_TOKEN = "<|end|>"  # ends the SQL answer (the model stops there)
ENDOFTEXT_TOKEN = DOCUMENT_END_TOKEN  # "<|endoftext|>": separates documents in a token stream (data/)
SPECIAL_TOKENS = [ENDOFTEXT_TOKEN, SCHEMA_TOKEN, QUESTION_TOKEN, SQL_TOKEN, SQL_END_TOKEN]

PROMPT_VERSION = 6  # bumped whenever the same example gives other tokens (prepared data is remade)
DEFAULT_MAX_SQL_TOKENS = 96  # room kept for the SQL (and <|end|>) when the schema is fitted


def linked_schema(schema: Schema, question: str) -> tuple[Schema, frozenset, dict[str, int]]:
    """(the schema with linked tables first, the marked names, each table's relevance: 3 named by the
    question, 2 holding a column it names, 1 a foreign-key neighbour of those, 0 none of these)."""
    tables, columns = link(schema, question)
    linked = tables | {t for t, _ in columns}
    neighbours = set()
    for t in schema.tables:
        for c in t.columns:
            if c.references and (t.name in linked) != (c.references[0] in linked):
                neighbours.add(c.references[0] if t.name in linked else t.name)
    relevance = {t.name: 3 if t.name in tables else 2 if t.name in linked else 1 if t.name in neighbours else 0
                 for t in schema.tables}
    order = sorted(range(len(schema.tables)), key=lambda i: (-relevance[schema.tables[i].name], i))
    return Schema([schema.tables[i] for i in order]), frozenset(tables | columns), relevance


def fit_schema(schema: Schema, question: str, max_tokens: int,
               count_tokens: Callable[[str], int] = len) -> str:
    """The schema text (with tags), cut by the module's rule to at most `max_tokens` (as counted by count_tokens)."""
    if max_tokens <= 0:
        return ""
    tags = schema_tags(schema)
    schema, _, relevance = linked_schema(schema, question)
    for with_types in (True, False):
        text = tags.schema_text(schema.tables, with_types)
        if count_tokens(text) <= max_tokens:
            return text
    # drop order: irrelevant tables first, then neighbours; within a class the later tables first
    order = sorted(range(len(schema.tables)), key=lambda i: (relevance[schema.tables[i].name], -i))
    kept = set(range(len(schema.tables)))
    for i in order[:-1]:
        kept.discard(i)
        text = tags.schema_text([t for j, t in enumerate(schema.tables) if j in kept], False)
        if count_tokens(text) <= max_tokens:
            return text
    # one table left and still too long: cut its text (binary search on characters)
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def prompt_question(schema: Schema | str, question: str, db_path=None) -> str:
    """The question as the prompt writes it: with the tags of the schema items it names, and with a
    database, of the columns that store a value it names (text2sql/linking.py)."""
    question = question.strip()
    if not isinstance(schema, Schema):
        return question
    return schema_tags(schema).annotate(question, read_text_values(db_path, schema) if db_path else None)


def prompt_sql(schema: Schema | str, sql: str) -> str:
    """Gold SQL as the model learns to write it: one line, over the schema's tags."""
    sql = normalize_sql_text(sql)
    return schema_tags(schema).to_tags(sql) if isinstance(schema, Schema) else sql


def prompt_schema_text(schema: Schema | str) -> str:
    """The whole schema as the prompt writes it (tokenizer training text)."""
    return schema_tags(schema).schema_text(schema.tables) if isinstance(schema, Schema) else schema


# ----------------------------------------------------------------------------------------------------
# Token sequences


def check_prompt_version(data_meta: dict) -> None:
    """ValueError when a checkpoint was trained on text-to-SQL prompts of another format than this code
    writes (its answers would be meaningless). data_meta is the checkpoint's copy of the data's meta.json;
    checkpoints not trained on text2sql data (no "task") are not checked."""
    if data_meta.get("task") != "text2sql":
        return
    trained = int(data_meta.get("prompt_version", 2))  # the field came with version 3
    if trained != PROMPT_VERSION:
        raise ValueError(f"this checkpoint was trained on prompt format {trained}, and this code writes format "
                         f"{PROMPT_VERSION} (text2sql/prompt.py); prepare the data again and retrain "
                         f"(python -m text2sql.demo does both)")


def special_token_ids(tokenizer) -> dict[str, int]:
    """{token text: id} for the prompt's special tokens; ValueError when the tokenizer lacks one."""
    table = dict(tokenizer.special_tokens)
    missing = [t for t in SPECIAL_TOKENS if t not in table]
    if missing:
        raise ValueError(f"tokenizer has no special token(s) {missing}: train it with "
                         f"special_tokens=text2sql.prompt.SPECIAL_TOKENS (python -m text2sql.prepare does)")
    return {t: table[t] for t in SPECIAL_TOKENS}


def encode_prompt(tokenizer, schema_text: str, question: str) -> list[int]:
    """Token ids of `<|schema|> schema <|question|> question <|sql|>`; user text never becomes a control token."""
    sp = special_token_ids(tokenizer)
    return ([sp[SCHEMA_TOKEN]] + tokenizer.encode_ordinary(schema_text) + [sp[QUESTION_TOKEN]]
            + tokenizer.encode_ordinary(question.strip()) + [sp[SQL_TOKEN]])


def encode_example(tokenizer, schema: Schema | str, question: str, sql: str, db_path=None) -> tuple[list[int], list[int]]:
    """(ids, mask) of one labelled example: the prompt (mask 0), then the SQL and <|end|> (mask 1). A plain-text
    schema is used as it is; a `Schema` is written with tags (uncut: see fit_and_encode_prompt for cutting)."""
    schema_text = fit_schema(schema, question, 1 << 30) if isinstance(schema, Schema) else schema
    prompt = encode_prompt(tokenizer, schema_text, prompt_question(schema, question, db_path))
    target = tokenizer.encode_ordinary(prompt_sql(schema, sql)) + [special_token_ids(tokenizer)[SQL_END_TOKEN]]
    return prompt + target, [0] * len(prompt) + [1] * len(target)


def fit_and_encode_prompt(tokenizer, schema: Schema | str, question: str, block_size: int,
                          max_sql_tokens: int = DEFAULT_MAX_SQL_TOKENS, db_path=None) -> list[int]:
    """Prompt ids that leave `max_sql_tokens` free in a context of `block_size` tokens. With the database
    (`db_path`), question words that are stored values are linked to their columns.

    The schema is cut by `fit_schema`; a question too long for what is left is cut from its end.
    """
    budget = block_size - max_sql_tokens - 3  # three control tokens
    q_ids = tokenizer.encode_ordinary(prompt_question(schema, question, db_path))
    if len(q_ids) > budget // 2:
        q_ids = q_ids[: budget // 2]
    schema_budget = budget - len(q_ids)
    if isinstance(schema, Schema):
        schema_text = fit_schema(schema, question, schema_budget, lambda s: len(tokenizer.encode_ordinary(s)))
    else:
        ids = tokenizer.encode_ordinary(schema)[: max(schema_budget, 0)]
        schema_text = tokenizer.decode(ids)
    sp = special_token_ids(tokenizer)
    return ([sp[SCHEMA_TOKEN]] + tokenizer.encode_ordinary(schema_text) + [sp[QUESTION_TOKEN]] + q_ids
            + [sp[SQL_TOKEN]])


def decode_sql(tokenizer, ids: Iterable[int], schema: Schema | str | None = None) -> str:
    """The SQL text of generated ids: everything before the first <|end|> (or any control token); with the
    prompt's `Schema`, its tags become the real names again."""
    specials = set(special_token_ids(tokenizer).values())
    out = []
    for i in ids:
        if i in specials:
            break
        out.append(i)
    sql = tokenizer.decode(out).strip()
    return schema_tags(schema).from_tags(sql) if isinstance(schema, Schema) else sql


_SPACES = re.compile(r"\s+")


def normalize_sql_text(sql: str) -> str:
    """Whitespace-only normalisation of gold SQL for training (one line, single spaces, no trailing ';')."""
    return _SPACES.sub(" ", sql).strip().rstrip(";").strip()
