"""How labelled text-to-SQL examples become token documents for data.prepare, packed window by window.

Packing: the trainer cuts each split's token stream into windows of block_size tokens (data/shards.py).
An example that straddled two windows would have its SQL learned without its schema and question in
view, so each example is placed whole inside one window: when it would cross a window boundary, the gap
up to the boundary is filled with <|endoftext|> tokens that are never learned (mask 0). Examples
longer than a window are skipped and counted. (This relies on windows starting at multiples of
block_size, which holds while the shard size is a multiple of it: the default 2^26 is, for any
power-of-two block size.) The trainer takes the model's block_size from meta.json for this reason.
"""
from __future__ import annotations

import random
import sys

from text2sql.prompt import (ENDOFTEXT_TOKEN, QUESTION_TOKEN, SQL_END_TOKEN, SQL_TOKEN, fit_and_encode_prompt,
                             prompt_question, prompt_schema_text, prompt_sql, special_token_ids)
from text2sql.sources import Example


class WindowPacker:
    """The position in one split's token stream, so that examples are laid out window by window."""

    def __init__(self, block_size: int, split: str):
        self.block_size, self.split = block_size, split
        self.offset = 0     # tokens emitted so far in this split
        self.skipped = 0    # examples longer than a window
        self.padding = 0    # filler tokens emitted

    def room(self) -> int:
        """Tokens left in the current window (block_size when a new window starts)."""
        return self.block_size - self.offset % self.block_size

    def skip(self, n_tokens: int) -> None:
        self.skipped += 1
        if self.skipped <= 5:
            print(f"warning: {self.split}: an example of {n_tokens} tokens is longer than the block size "
                  f"{self.block_size}; skipped", file=sys.stderr)
        elif self.skipped == 6:
            print(f"warning: {self.split}: more examples are too long and skipped (not listed; a larger "
                  f"--block-size or --max-sql-tokens keeps them)", file=sys.stderr)


class ExampleDocument:
    """Labelled examples of one database as a data.prepare document: `text` for tokenizer training,
    `tokenize` for the shards. With several examples, the schema is written once and the question/SQL
    pairs follow it (`<|schema|> S <|question|> Q1 <|sql|> A1 <|end|><|question|> Q2 <|sql|> A2 <|end|>`)
    while they fit in the current window; the next pair starts a new `<|schema|>` piece. The first pair
    of a piece has exactly the layout of an inference prompt; later pairs do not repeat the schema."""

    def __init__(self, examples: list[Example], packer: WindowPacker, max_sql_tokens: int):
        self.examples, self.packer, self.max_sql_tokens = examples, packer, max_sql_tokens

    @property
    def text(self) -> str:
        e = self.examples[0]
        return prompt_schema_text(e.schema) + "\n" + "".join(
            f"{prompt_question(x.schema, x.question, x.db_path)}\n{prompt_sql(x.schema, x.sql)}\n" for x in self.examples)

    def tokenize(self, tokenizer) -> tuple[list[int], list[int]]:
        sp = special_token_ids(tokenizer)
        packer, block = self.packer, self.packer.block_size
        ids: list[int] = []
        mask: list[int] = []

        def emit(new_ids, new_mask):
            ids.extend(new_ids)
            mask.extend(new_mask)
            packer.offset += len(new_ids)

        piece_open = False  # a schema of this document is in view in the current window
        for e in self.examples:
            target = tokenizer.encode_ordinary(prompt_sql(e.schema, e.sql)) + [sp[SQL_END_TOKEN]]
            if piece_open and packer.room() < block:
                pair = [sp[QUESTION_TOKEN]] + tokenizer.encode_ordinary(prompt_question(e.schema, e.question, e.db_path)) \
                    + [sp[SQL_TOKEN]]
                if len(pair) + len(target) <= packer.room():
                    emit(pair + target, [0] * len(pair) + [1] * len(target))
                    continue
            prompt = fit_and_encode_prompt(tokenizer, e.schema, e.question, block, self.max_sql_tokens, e.db_path)
            n = len(prompt) + len(target)
            if n > block:
                packer.skip(n)
                continue
            if n > packer.room():  # fill the rest of this window with never-learned end tokens
                pad = packer.room()
                packer.padding += pad
                emit([sp[ENDOFTEXT_TOKEN]] * pad, [0] * pad)
            emit(prompt + target, [0] * len(prompt) + [1] * len(target))
            piece_open = True
        return ids, mask


class TextDocument:
    """Unlabeled text (pretraining): every token learned, <|endoftext|> after it, never a control token inside."""

    def __init__(self, text: str):
        self.text = text

    def tokenize(self, tokenizer) -> tuple[list[int], list[int]]:
        ids = tokenizer.encode_ordinary(self.text) + [special_token_ids(tokenizer)[ENDOFTEXT_TOKEN]]
        return ids, [1] * len(ids)


def group_examples(examples: list[Example], per_group: int, seed: int) -> list[list[Example]]:
    """Groups of up to per_group examples of the same database, in a seeded random order."""
    rng = random.Random(seed)
    by_db: dict[str, list[Example]] = {}
    for e in examples:
        by_db.setdefault(f"{e.db_id}\0{e.db_path}", []).append(e)
    groups = []
    for key in sorted(by_db):
        items = by_db[key]
        rng.shuffle(items)
        groups += [items[i:i + per_group] for i in range(0, len(items), per_group)]
    rng.shuffle(groups)
    return groups
