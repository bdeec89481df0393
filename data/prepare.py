"""`python -m data.prepare`: documents from a source -> tokenizer -> token shards + meta.json.

    python -m data.prepare --source text --input ../shared/data/text/tinyshakespeare.txt \\
        --out data/processed/shakespeare --vocab-size 2048
    python -m data.prepare --source text --input corpus/ --tokenizer gpt2 --out data/processed/corpus

Tokenizer (--tokenizer): `train` (default) trains a BPE of --vocab-size on the train split; `gpt2` uses
OpenAI's GPT-2 files from --gpt2-dir; a path reuses a saved tokenizer (e.g. to fine-tune on data
tokenized like the pretraining corpus). The tokenizer is saved next to the shards as `tokenizer.tiktoken` (+ `.json`).

Adding a source (the plug-in API)
---------------------------------
A source is a module that calls `register_source(Source(...))`; modules in data/ whose name ends in
`_source` or `_sources` are found automatically (plain text). A package above data/ registers its own
sources and runs this CLI from its own entry point (text2sql/prepare.py: `python -m text2sql.prepare`):

    from data.prepare import Source, register_source

    def add_arguments(parser):              # its own CLI options (argparse), optional
        parser.add_argument("--my-file")

    def load(args) -> dict[str, Iterable[Document]]:
        return {"train": [...], "val": [...]}   # split name -> documents

    register_source(Source("mine", "one line of --help", load, add_arguments,
                           special_tokens=("<|answer|>", ...)))

A Document is either a str (every token is learned: pretraining text) or a list of (text, learn)
segments: `[(prompt, False), (answer, True)]` learns only the answer tokens (the loss mask). Segments may
contain the source's `special_tokens` (the end token "<|endoftext|>" is always one); prepare appends
the end token to every document (learned when the last segment is). A source may also yield its own
objects with a `text` attribute (for tokenizer training) and a `tokenize(tokenizer) -> (ids, mask)`
method, used as they are (text2sql/prepare.py does: user text must never become a control token). Whoever already has token ids can
skip all this and call `data.shards.write_dataset(out_dir, {"train": [(ids, mask), ...]}, ...)`
directly; `tokenize_document` and `write_tokenized` below are the two steps prepare runs.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, Union

from data.shards import DEFAULT_SHARD_TOKENS, write_dataset

DOCUMENT_END_TOKEN = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.tiktoken"
Document = Union[str, Sequence[tuple[str, bool]]]


@dataclass
class Source:
    """A named producer of documents for `python -m data.prepare --source NAME`."""
    name: str
    help: str
    load: Callable[[argparse.Namespace], dict[str, Iterable[Document]]]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    special_tokens: tuple[str, ...] = field(default_factory=tuple)
    # checks the source's own options before any work (raise ValueError): called before load(), so a bad
    # option is reported before, say, 60 synthetic databases are generated
    check: Callable[[argparse.Namespace], None] | None = None


@dataclass
class Prepared:
    """What a source's load() may return instead of a plain {split: documents} dict: the documents plus
    facts about them to record in meta.json (e.g. the block size text-to-SQL examples were packed for,
    which the trainer then takes as the model's context)."""
    splits: dict[str, Iterable[Document]]
    meta: dict = field(default_factory=dict)


SOURCES: dict[str, Source] = {}


def register_source(source: Source) -> Source:
    if source.name in SOURCES and SOURCES[source.name] is not source:
        raise ValueError(f"a data source named {source.name!r} is already registered")
    SOURCES[source.name] = source
    return source


def discover_sources() -> dict[str, Source]:
    """Import every data/*_source.py and data/*_sources.py module so that it registers itself."""
    import data

    for info in pkgutil.iter_modules(data.__path__):
        if info.name.endswith(("_source", "_sources")):
            importlib.import_module(f"data.{info.name}")
    return SOURCES


def tokenize_document(tokenizer, document: Document, end_id: int, allowed_special) -> tuple[list[int], list[int]]:
    """(ids, mask) of one document, the end token appended; mask 1 marks the tokens to learn."""
    if hasattr(document, "tokenize"):  # a source's own document type (text2sql/prepare.py): it
        return document.tokenize(tokenizer)  # places its special tokens and end token itself
    segments = [(document, True)] if isinstance(document, str) else list(document)
    ids: list[int] = []
    mask: list[int] = []
    for text, learn in segments:
        seg = tokenizer.encode(text, allowed_special=allowed_special, disallowed_special=())
        ids.extend(seg)
        mask.extend([1 if learn else 0] * len(seg))
    ids.append(end_id)
    mask.append(1 if segments and segments[-1][1] else 0)
    return ids, mask


def write_tokenized(out_dir, tokenizer, /, splits: dict[str, Iterable[Document]], special_tokens=(),
                    shard_tokens: int = DEFAULT_SHARD_TOKENS, progress: bool = True, **extra) -> dict:
    """Tokenize every split's documents and write the shards and meta.json; returns the metadata."""
    end_id = tokenizer.special_tokens[DOCUMENT_END_TOKEN]
    allowed = set(special_tokens) | {DOCUMENT_END_TOKEN}

    def encoded(split, documents):
        count, t0 = 0, time.time()
        for doc in documents:
            yield tokenize_document(tokenizer, doc, end_id, allowed)
            count += 1
            if progress and count % 1000 == 0:
                print(f"  {split}: {count} documents ({time.time() - t0:.0f}s)", file=sys.stderr)

    return write_dataset(out_dir, {s: encoded(s, docs) for s, docs in splits.items()},
                         vocab_size=tokenizer.n_vocab, eos_id=end_id, shard_tokens=shard_tokens,
                         special_tokens=dict(tokenizer.special_tokens), **extra)


def _document_text(document: Document) -> str:
    if hasattr(document, "tokenize"):  # a source's own document type: its text for tokenizer training
        return document.text
    return document if isinstance(document, str) else "".join(text for text, _ in document)


def build_tokenizer(kind: str, train_documents: list[Document], vocab_size: int, special_tokens, gpt2_dir):
    """The tokenizer named by --tokenizer: `train`, `gpt2` or the path of a saved tokenizer."""
    from gpt.tokenizer import Tokenizer

    specials = [DOCUMENT_END_TOKEN] + [t for t in special_tokens if t != DOCUMENT_END_TOKEN]
    if kind == "train":
        return Tokenizer.train((_document_text(d) for d in train_documents), vocab_size, specials)
    if kind == "gpt2":
        gpt2 = Path(gpt2_dir)
        files = (gpt2 / "encoder.json", gpt2 / "vocab.bpe")
        if not all(f.is_file() for f in files):
            raise ValueError(f"--tokenizer gpt2 needs encoder.json and vocab.bpe in {gpt2} (set --gpt2-dir)")
        tok = Tokenizer.from_gpt2(*map(str, files))
    else:
        if not Path(kind).is_file():
            raise ValueError(f"--tokenizer {kind!r} is neither 'train', 'gpt2' nor an existing tokenizer file")
        tok = Tokenizer.load(kind)
    missing = [t for t in specials if t not in tok.special_tokens]
    if missing:
        raise ValueError(f"tokenizer {kind!r} lacks the special tokens {missing} this source needs; "
                         f"use --tokenizer train")
    return tok


def build_parser(sources: dict[str, Source]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data.prepare",
        description="Build a tokenizer and token shards (for `python -m train`) from a data source. "
                    "Text-to-SQL sources (synthetic, spider, ...): python -m text2sql.prepare",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--source", required=True, choices=sorted(sources),
                   help="; ".join(f"{s.name}: {s.help}" for s in sorted(sources.values(), key=lambda s: s.name)))
    p.add_argument("--out", required=True, help="output folder for the shards, meta.json and tokenizer")
    p.add_argument("--tokenizer", default="train", help="'train', 'gpt2' or the path of a saved tokenizer")
    p.add_argument("--vocab-size", type=int, default=4096, help="vocabulary size when training a tokenizer")
    p.add_argument("--gpt2-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "gpt2"),
                   help="folder with GPT-2's encoder.json and vocab.bpe (for --tokenizer gpt2)")
    p.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS, help="tokens per shard file")
    for source in sorted(sources.values(), key=lambda s: s.name):
        if source.add_arguments is not None:
            source.add_arguments(p.add_argument_group(f"--source {source.name}"))
    return p


def check_arguments(source: Source, args: argparse.Namespace) -> None:
    """Every option checked before any work: ours, then the source's own (Source.check)."""
    from gpt.tokenizer import MAX_TOKEN_ID

    if isinstance(args.shard_tokens, bool) or not isinstance(args.shard_tokens, int) or args.shard_tokens <= 0:
        raise ValueError(f"--shard-tokens must be a positive number of tokens per shard file, got {args.shard_tokens}")
    if args.tokenizer == "train":
        smallest = 256 + len({DOCUMENT_END_TOKEN, *source.special_tokens})
        if not isinstance(args.vocab_size, int) or not smallest <= args.vocab_size <= MAX_TOKEN_ID:
            raise ValueError(f"--vocab-size {args.vocab_size} is out of range: it needs 256 byte tokens plus "
                             f"{smallest - 256} special token(s), so at least {smallest} (and at most {MAX_TOKEN_ID:,})")
    if source.check is not None:
        source.check(args)


def read_text_lines(path) -> Iterable[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file such as JSONL, read lazily; bytes that are not UTF-8 are a
    ValueError naming the file, the line and the column instead of a bare UnicodeDecodeError."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                                 f"re-save the file as UTF-8") from None


def run_prepare(source: Source, args: argparse.Namespace) -> dict:
    """Load the source's documents, build the tokenizer, write the shards and meta.json; returns the
    metadata. `args` holds this CLI's options and the source's own (see `prepare` for a typed call)."""
    check_arguments(source, args)
    t0 = time.time()
    loaded = source.load(args)
    splits, facts = (loaded.splits, loaded.meta) if isinstance(loaded, Prepared) else (loaded, {})
    splits = {name: list(docs) for name, docs in splits.items()}
    if not splits.get("train"):
        raise ValueError(f"source {source.name!r} produced no training documents")
    counts = ", ".join(f"{k}: {len(v)}" for k, v in splits.items())
    print(f"[prepare] {source.name}: {counts} documents ({time.time() - t0:.1f}s)", file=sys.stderr)
    t0 = time.time()
    tok = build_tokenizer(args.tokenizer, splits["train"], args.vocab_size, source.special_tokens, args.gpt2_dir)
    print(f"[prepare] tokenizer ({args.tokenizer}): {tok.n_vocab} ids ({time.time() - t0:.1f}s)", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / TOKENIZER_FILE))
    t0 = time.time()
    meta = write_tokenized(out, tok, splits, source.special_tokens, args.shard_tokens,
                           **{"tokenizer": TOKENIZER_FILE, "source": source.name, **facts})
    sizes = ", ".join(f"{k}: {sum(s['n_tokens'] for s in v):,} tokens" for k, v in meta["splits"].items())
    print(f"[prepare] wrote {out} ({sizes}; {time.time() - t0:.1f}s)", file=sys.stderr)
    return meta


def prepare(source: str, out: str | Path, **options) -> dict:
    """The typed form of the command line: prepare("text", "data/processed/x", input=[...], vocab_size=2048).
    Options are the CLI's long names with '_' for '-'; any left out take the CLI's defaults; an unknown
    one is a ValueError."""
    sources = discover_sources()
    if source not in sources:
        raise ValueError(f"unknown data source {source!r}; registered: {', '.join(sorted(sources))}")
    parser = build_parser(sources)
    args = parser.parse_args(["--source", source, "--out", str(out)])
    unknown = sorted(set(options) - set(vars(args)))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for data.prepare --source {source}")
    for key, value in options.items():
        setattr(args, key, value)
    return run_prepare(sources[source], args)


def main(argv=None) -> int:
    sources = discover_sources()
    args = build_parser(sources).parse_args(argv)
    try:
        run_prepare(sources[args.source], args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    # Run the registry from the importable module, not from __main__, so that sources that
    # `from data.prepare import register_source` register into the same dict this CLI reads.
    sys.exit(importlib.import_module("data.prepare").main())
