"""Instruction fine-tuning data: `python -m data.prepare --source instructions --input FILE.json`.

    python -m data.prepare --source instructions --input ../shared/data/instructions/instruction-data.json \\
        --tokenizer data/processed/shakespeare/tokenizer.tiktoken --out data/processed/instructions
    python -m train --config small --set data.dir=data/processed/instructions train.init_from=runs/small ...

FILE.json is a JSON list (or JSONL, one object a line) of Alpaca-style records {instruction, input, output};
`input` may be empty or absent. Each record becomes the prompt of the instruction-tuning chapter of
Raschka's "Build a Large Language Model (From Scratch)" (ch. 7, the Alpaca layout):

    Below is an instruction that describes a task. Write a response that appropriately completes the request.

    ### Instruction:
    {instruction}

    ### Input:                      <- only when the record has an input
    {input}

    ### Response:
    {output}<|endoftext|>

The loss is on the response only: every token up to and including "### Response:\\n" has mask 0, the
output and the end token mask 1 (so the model learns to stop). To ask a fine-tuned model, give it
`format_prompt(record)` (ends with "### Response:\\n") and read until <|endoftext|>.

Packing: the trainer cuts a split's token stream into windows of block_size tokens (data/shards.py), so
a record is placed whole inside one window; when it would cross a window boundary, the rest of the
window is filled with end tokens that are never learned. A record longer than --instructions-block-size
tokens is skipped and reported on stderr (its index and length); the counts go into meta.json
("instructions": {"skipped_too_long": ...}) together with the block size, which the trainer takes as
the model's context. Records are shuffled with --instructions-seed; the last --instructions-val-fraction
of them (default 15%) is the "val" split, also written to <out>/instructions/val.json (and train.json)
so the held-out prompts can be asked later. User text is tokenized as ordinary text: an
"<|endoftext|>" inside a record stays text.

`--input` is the option the plain-text source defines (data/text_source.py); it is shared, not
re-declared, because data.prepare puts every source's options in one parser.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from data.prepare import DOCUMENT_END_TOKEN, Prepared, Source, register_source

PREAMBLE = ("Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.")
RESPONSE_HEADER = "\n\n### Response:\n"
DEFAULT_BLOCK_SIZE = 256
RECORDS_DIR = "instructions"
_WARN_LIMIT = 10


def format_prompt(record: dict) -> str:
    """Everything the model reads before the response, ending with "### Response:\\n"."""
    text = f"{PREAMBLE}\n\n### Instruction:\n{record['instruction']}"
    if record.get("input"):
        text += f"\n\n### Input:\n{record['input']}"
    return text + RESPONSE_HEADER


def read_records(path) -> list[dict]:
    """The records of a JSON list or JSONL file, checked: instruction and output are required strings."""
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"cannot read --input {p}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"--input {p} is not UTF-8 text") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in raw.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ValueError(f"{p} is neither a JSON list nor JSONL ({e.msg} at line {e.lineno})") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValueError(f"{p}: expected a list of {{instruction, input, output}} records")
    records = []
    for i, r in enumerate(data):
        if not isinstance(r, dict) or not isinstance(r.get("instruction"), str) or not isinstance(r.get("output"), str):
            raise ValueError(f"{p}: record {i} needs string fields 'instruction' and 'output' "
                             f"(and optionally 'input'), got {str(r)[:80]!r}")
        if r.get("input") is not None and not isinstance(r["input"], str):
            raise ValueError(f"{p}: record {i} has a non-string 'input'")
        records.append({"instruction": r["instruction"], "input": r.get("input") or "", "output": r["output"],
                        "index": i})
    if not records:
        raise ValueError(f"{p} holds no records")
    return records


class WindowPacker:
    """The position in one split's token stream, so that records are laid out window by window."""

    def __init__(self, block_size: int, split: str, report: dict):
        self.block_size, self.split, self.report = block_size, split, report
        self.offset = 0  # tokens emitted so far in this split

    def room(self) -> int:
        return self.block_size - self.offset % self.block_size

    def skip(self, index: int, n_tokens: int) -> None:
        skipped = self.report.setdefault(self.split, [])
        skipped.append(index)
        if len(skipped) <= _WARN_LIMIT:
            print(f"warning: {self.split}: record {index} has {n_tokens} tokens, more than the block size "
                  f"{self.block_size}; skipped", file=sys.stderr)
        elif len(skipped) == _WARN_LIMIT + 1:
            print(f"warning: {self.split}: more records are too long and skipped (meta.json lists them)",
                  file=sys.stderr)


class InstructionDocument:
    """One record as a data.prepare document: `text` for tokenizer training, `tokenize` for the shards."""

    def __init__(self, record: dict, packer: WindowPacker):
        self.record, self.packer = record, packer

    @property
    def text(self) -> str:
        return format_prompt(self.record) + self.record["output"]

    def tokenize(self, tokenizer) -> tuple[list[int], list[int]]:
        end = tokenizer.special_tokens[DOCUMENT_END_TOKEN]
        prompt = tokenizer.encode_ordinary(format_prompt(self.record))
        response = tokenizer.encode_ordinary(self.record["output"]) + [end]
        n = len(prompt) + len(response)
        packer = self.packer
        if n > packer.block_size:
            packer.skip(self.record["index"], n)
            return [], []
        ids, mask = [], []
        if n > packer.room():  # the rest of this window: end tokens, never learned
            pad = packer.room()
            ids, mask = [end] * pad, [0] * pad
        ids += prompt + response
        mask += [0] * len(prompt) + [1] * len(response)
        packer.offset += len(ids)
        return ids, mask


def add_arguments(group) -> None:
    group.add_argument("--instructions-block-size", type=int, default=DEFAULT_BLOCK_SIZE,
                       help="(instructions; uses --input FILE.json) the model's context: a record must fit in it "
                            "whole (use the pretrained checkpoint's block size)")
    group.add_argument("--instructions-val-fraction", type=float, default=0.15,
                       help="(instructions) fraction of the records held out as the val split")
    group.add_argument("--instructions-seed", type=int, default=0, help="(instructions) seed of the shuffle")


def load(args) -> Prepared:
    paths = getattr(args, "input", None)
    if not paths:
        raise ValueError("--source instructions needs --input FILE.json (a list of {instruction, input, output})")
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    block = args.instructions_block_size
    if block < 16:
        raise ValueError(f"--instructions-block-size {block} is too small (at least 16)")
    if not 0.0 <= args.instructions_val_fraction < 1.0:
        raise ValueError(f"--instructions-val-fraction must be in [0, 1), got {args.instructions_val_fraction}")
    shard_tokens = getattr(args, "shard_tokens", 0)
    if shard_tokens and shard_tokens % block:
        raise ValueError(f"--shard-tokens {shard_tokens} must be a multiple of --instructions-block-size {block} "
                         f"(so that training windows line up with the packed records)")
    records = [r for p in paths for r in read_records(p)]
    for i, r in enumerate(records):  # indices over all input files, in file order
        r["index"] = i
    order = list(range(len(records)))
    random.Random(args.instructions_seed).shuffle(order)
    n_val = round(len(records) * args.instructions_val_fraction)
    if args.instructions_val_fraction > 0 and len(records) > 1:
        n_val = max(1, min(n_val, len(records) - 1))
    splits = {"train": [records[i] for i in order[:len(records) - n_val]],
              "val": [records[i] for i in order[len(records) - n_val:]]}
    if not splits["val"]:
        del splits["val"]
    out = Path(args.out) / RECORDS_DIR
    out.mkdir(parents=True, exist_ok=True)
    for split, recs in splits.items():
        (out / f"{split}.json").write_text(json.dumps(recs, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    # Filled in while the documents are tokenized (after load returns): data.prepare copies the facts dict
    # shallowly into meta.json when the shards are done, so this inner dict arrives complete.
    skipped: dict[str, list[int]] = {}
    docs = {}
    for split, recs in splits.items():
        packer = WindowPacker(block, split, skipped)  # one per split, shared by its documents in order
        docs[split] = [InstructionDocument(r, packer) for r in recs]
    return Prepared(docs, {"task": "instructions", "block_size": block,
                           "instructions": {"records": {k: len(v) for k, v in splits.items()},
                                            "template": "alpaca (Raschka, LLMs from scratch, ch. 7)",
                                            "skipped_too_long": skipped, "files": [str(p) for p in paths]}})


SOURCE = register_source(Source("instructions", "Alpaca-style {instruction, input, output} JSON records "
                                "(instruction fine-tuning; loss on the response only)", load, add_arguments))
