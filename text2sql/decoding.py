"""How SQL is decoded from a checkpoint: the four `--decode` modes of evaluate, ask and the demo.

    greedy       the most likely token each step, no constraint (the model may write invalid SQL)
    constrained  greedy, but only tokens the SQL constraint allows (text2sql/sql_constraint.py): tables
                 and columns of this database, values from the question or the column, <|end|> only
                 where the SQL is complete
    beam         constrained beam search (width --beam-width); the best hypothesis by length-normalised
                 log-probability
    beam+exec    constrained beam search, then execution-guided choice: every final hypothesis runs
                 read-only (text2sql/sql_exec.py, the sandbox's time limit); those that fail or time out
                 are dropped, one with a non-empty result is preferred, then the highest score

gpt/ applies the constraint as a mask and knows nothing of SQL (gpt/generate.py); this module builds one
SQLConstraint per question (schema, question, database) and hands them over.
"""
from __future__ import annotations

import gc
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from gpt.generate import PerRowConstraint, beam_search, decode_batch
from text2sql.prompt import decode_sql, special_token_ids
from text2sql.schema import Schema
from text2sql.schema_tags import schema_tags
from text2sql.sql_constraint import SQLConstraint
from text2sql.sql_exec import DEFAULT_TIMEOUT_S, execute_sql

DECODE_MODES = ("greedy", "constrained", "beam", "beam+exec")
# The default is the best mode that meets the speed target (within 3x greedy's seconds per question on 2 CPU
# cores). On the main job's README-command-1 checkpoint (bench/results/decoding-speed-2core/, 500 questions
# per held-out split), constrained is 1.4-1.9x greedy and beam+exec (width 4) 2.5-3.1x (3.6-4.0x before
# that round), so both are about within it; constrained is the more accurate there (held-out domains 79.0%
# against 76.0%; over the job's six trainings beam+exec is -3.0 to +2.4 points, mean +0.8), and the faster,
# so it is the default. `--decode beam+exec` is one flag away, and the main job reports it beside the default.
DEFAULT_DECODE = "constrained"
DEFAULT_BEAM_WIDTH = 4
# beam search stops a question once no live beam is likely to beat its best finished one (gpt.generate.
# beam_search's early_stop): what kept beam+exec within the speed target on earlier models (bench/results/)
BEAM_EARLY_STOP = True


@dataclass
class SQLContext:
    """What the constraint needs to know about one question."""
    schema: Schema
    question: str
    db_path: str | Path | None = None


def sql_context(example) -> SQLContext:
    """The context of a prepared example (text2sql.prepare): its Schema, or the one read from its database."""
    schema = example.schema
    if not isinstance(schema, Schema):
        from text2sql.schema import read_schema

        schema = read_schema(example.db_path) if example.db_path else Schema([])
    return SQLContext(schema, example.question, example.db_path)


def check_mode(mode: str) -> str:
    if mode not in DECODE_MODES:
        raise ValueError(f"unknown decode mode {mode!r}; choose one of {', '.join(DECODE_MODES)}")
    return mode


def make_constraint(tokenizer, context: SQLContext, max_tokens: int | None = None) -> SQLConstraint:
    """The constraint of one question. The model writes SQL over the schema's tags (text2sql/schema_tags.py),
    so the constraint checks against the tagged schema and reads column values under the real names."""
    tags = schema_tags(context.schema)
    # question_decides: a question that writes a column's stored value, or numbers, decides the literals
    return SQLConstraint(tokenizer, tags.tagged, context.question, context.db_path, max_tokens=max_tokens,
                         real_names=tags.real_column, question_decides=True)


_LITERAL = re.compile(r"'((?:[^']|'')*)'|(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])")


def unsupported_literals(sql: str, question: str) -> int:
    """How many of the query's string and number literals the question does not contain (LIKE's % aside):
    the constraint also allows a column's stored values, which a question that names its value never needs."""
    q = question.lower()
    n = 0
    for m in _LITERAL.finditer(sql):
        text = m.group(1).replace("''", "'").strip("%") if m.group(1) is not None else m.group(2)
        pieces = [p for p in text.lower().split("%") if p]
        n += any(p not in q for p in pieces)
    return n


def choose_by_execution(candidates: list[str], db_path, timeout_s: float = DEFAULT_TIMEOUT_S,
                        question: str | None = None) -> str:
    """Execution-guided choice among candidates (best first): among those that run, the ones that return rows
    first, and (given the question) those whose literals the question contains first; else the first.

    That is the least (returns no rows, literal misses, rank) over the candidates that run. The misses need
    no database, so the candidates run in (misses, rank) order and the first one that returns rows is the
    answer: every later one has a key at least as large. All of them run only when none returns rows (then
    the first that ran without error wins). Usually the best candidate answers and runs alone."""
    if not candidates:
        return ""
    order = sorted((unsupported_literals(sql, question) if question is not None else 0, rank, sql)
                   for rank, sql in enumerate(candidates) if sql)
    runs_empty = None
    for _, _, sql in order:
        r = execute_sql(db_path, sql, timeout_s=timeout_s, max_rows=1)
        if r.ok:
            if r.rows:
                return sql
            if runs_empty is None:
                runs_empty = sql
    return candidates[0] if runs_empty is None else runs_empty


# How much left padding a batch may add, as a fraction of its longest prompt. Padding costs compute in two
# places: the prompt's forward pass (every padding slot is a token's worth of matmuls) and each decoding
# step's attention (every padding key is read, then masked). The per-step matmuls and the constraint, most
# of decoding's time, do not grow with it. With at most 1/4 of the longest prompt as padding, a prompt's
# forward does at most 4/3 of its own work and a step's attention reads at most 4/3 of its keys; in
# exchange a batch holds up to batch_size prompts instead of those of one exact length (on Spider, prompts
# of 100-416 tokens, equal-length batches held about 1 question). Sorted lengths are dense enough that
# the bound seldom cuts a batch short (tests/test_padded_decoding.py checks it holds).
MAX_PAD_FRACTION = 0.25


def length_sorted_batches(lengths: list[int], batch_size: int, max_pad_fraction: float = MAX_PAD_FRACTION):
    """Indices of batches of at most batch_size prompts, shortest first: the prompts sorted by length and
    cut in order, a batch closing early where its next prompt would pad the batch's shortest by more than
    max_pad_fraction of that next prompt's length (the batch's longest). Ties keep their input order."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    batch: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if batch and (len(batch) == batch_size or lengths[i] - lengths[batch[0]] > max_pad_fraction * lengths[i]):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


@contextmanager
def collector_paused():
    """Python's cyclic garbage collector off for the duration (restored after, as it was).

    Decoding allocates millions of short-lived objects (the constraint's states, parses and caches), which
    keeps triggering the collector, and each full collection walks every tracked object of the process. On
    2 CPU cores those cost ~1.8 ms a question of beam+exec (five full collections of ~135 ms over 500
    questions, bench/results/decoding-speed-2core/). They never find anything: decoding makes no reference
    cycles (plain reference counting frees all of its garbage; tests/test_padded_decoding.py checks it), so
    pausing the collector defers no memory."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def decode_sql_batch(model, tokenizer, prompts: list[list[int]], contexts: list[SQLContext] | None = None,
                     mode: str = DEFAULT_DECODE, max_new_tokens: int = 128, beam_width: int = DEFAULT_BEAM_WIDTH,
                     batch_size: int = 32, temperature: float = 0.0, seed: int = 0,
                     timeout_s: float = DEFAULT_TIMEOUT_S, on_done=None) -> list[str]:
    """SQL text for each prompt (token ids ending in <|sql|>). Prompts are decoded in batches of similar
    length (length_sorted_batches), left-padded (gpt/generate.py); beam modes put batch_size prompts in a
    batch too, so a beam step forwards batch_size * beam_width rows: beam search spends Python work per
    step and batch (candidates, cache reorders) besides the forward, so fewer, wider batches are cheaper
    than batch_size // beam_width prompts each (bench/results/decoding-beam-batch-2core/). Each prompt adds
    at most min(max_new_tokens, block_size - its length) tokens, and the SQL of a prompt is the one it gets
    decoded alone (batch_size=1; with temperature > 0 the samples depend on the batch). The constrained
    modes need a context (schema, question, database) per prompt. on_done(n) reports progress. The garbage
    collector is paused meanwhile (collector_paused)."""
    with collector_paused():
        return _decode_sql_batch(model, tokenizer, prompts, contexts, mode, max_new_tokens, beam_width, batch_size,
                                 temperature, seed, timeout_s, on_done)


def _decode_sql_batch(model, tokenizer, prompts, contexts, mode, max_new_tokens, beam_width, batch_size, temperature,
                      seed, timeout_s, on_done) -> list[str]:
    check_mode(mode)
    constrained = mode != "greedy"
    if constrained and (contexts is None or len(contexts) != len(prompts)):
        raise ValueError(f"decode mode {mode!r} needs the schema and question of every prompt")
    stop_ids = sorted(set(special_token_ids(tokenizer).values()))  # <|end|> (or any control token) ends SQL
    device = next(model.parameters()).device
    block = model.config.block_size
    n_vocab = tokenizer.n_vocab
    generator = torch.Generator(device=device).manual_seed(seed)
    beams = mode in ("beam", "beam+exec")
    out: list[str] = [""] * len(prompts)
    budget = [min(max_new_tokens, block - len(p)) for p in prompts]  # each prompt's steps, as if alone
    for batch_indices in length_sorted_batches([len(p) for p in prompts], batch_size):
        chunk = [i for i in batch_indices if budget[i] > 0]  # a prompt that fills the context gets ""
        if chunk:
            # the batch runs as many steps as its largest budget; gpt/generate.py stops each row at its own
            steps = max(budget[i] for i in chunk)
            constraint = PerRowConstraint([make_constraint(tokenizer, contexts[i], budget[i]) for i in chunk]) \
                if constrained else None
            batch = [prompts[i] for i in chunk]
            if beams:
                results = beam_search(model, batch, beam_width, steps, stop_ids, n_vocab=n_vocab,
                                      constraint=constraint, early_stop=BEAM_EARLY_STOP)
                for i, hyps in zip(chunk, results):
                    sqls = [decode_sql(tokenizer, h.ids, contexts[i].schema) for h in hyps]
                    if mode == "beam+exec" and contexts[i].db_path:
                        out[i] = choose_by_execution(sqls, contexts[i].db_path, timeout_s, contexts[i].question)
                    else:
                        out[i] = sqls[0] if sqls else ""
            else:
                rows = decode_batch(model, batch, steps, temperature, stop_ids, generator, n_vocab=n_vocab,
                                    constraint=constraint)
                for i, ids in zip(chunk, rows):
                    out[i] = decode_sql(tokenizer, ids, contexts[i].schema if contexts else None)
        if on_done is not None:
            on_done(len(batch_indices))
    return out
