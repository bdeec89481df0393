"""A byte-level BPE tokenizer: a tiktoken-like Python API over the C++ core in csrc/ (gpt._bpe).

    tok = Tokenizer.train(texts, vocab_size=8192, special_tokens=["<|endoftext|>", "<|user|>"])
    ids = tok.encode("How are you?")                    # same ids as tok.to_tiktoken().encode(...)
    tok.decode(ids); tok.save("tok.tiktoken"); Tokenizer.load("tok.tiktoken")
    gpt2 = Tokenizer.from_gpt2("encoder.json", "vocab.bpe")

Pre-tokenization is GPT-2's pattern (GPT2_PATTERN), done by a hand-written scanner in C++.
Encoding is tiktoken's algorithm (lowest-rank merge first), so ids match tiktoken for the same
ranks. Files: `save(path)` writes tiktoken's ranks format (one "base64(token) rank" per line) at
`path` and a small JSON beside it (`path + ".json"`) with the special tokens, the pattern and a
checksum of the ranks file, so a truncated or edited file is detected on load.

Command line: python -m gpt.tokenizer --help
"""
from __future__ import annotations

import argparse
import base64
import binascii
import codecs
import hashlib
import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import AbstractSet, Literal

from gpt import _bpe
from gpt.atomic_write import atomic_write

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"
FILE_FORMAT = "text2sql-gpt tokenizer v1"
# Limits a vocabulary is checked against before anything is built (the C++ core checks them too):
# far above real BPE vocabularies, low enough that a bad file cannot take gigabytes or minutes.
MAX_TOKEN_ID = 1 << 22      # ids (ranks and special ids) are below 4,194,304
MAX_TOKEN_BYTES = 1 << 16   # a token is at most 65,536 bytes


class StreamDecoder:
    """Decodes ids one at a time into text, holding back bytes of an unfinished UTF-8 character.

    `feed(id)` returns the text that is complete so far (possibly ""), so printing each result
    never shows U+FFFD for a character whose bytes are split across tokens; `flush()` returns what
    is left (an incomplete character at the very end becomes U+FFFD)."""

    def __init__(self, tokenizer: Tokenizer, errors: str = "replace"):
        self._tokenizer = tokenizer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors)

    def feed(self, token: int | Sequence[int]) -> str:
        ids = [token] if isinstance(token, int) else token
        return self._decoder.decode(self._tokenizer.decode_bytes(ids))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class Tokenizer:
    """Byte-level BPE with GPT-2's pre-tokenizer. Build with train / from_gpt2 / load."""

    def __init__(self, mergeable_ranks: dict[bytes, int], special_tokens: dict[str, int] | None = None,
                 name: str = "text2sql-gpt", pattern: str = GPT2_PATTERN):
        if pattern != GPT2_PATTERN:
            raise ValueError("only GPT-2's pre-tokenization pattern is supported (GPT2_PATTERN)")
        special_tokens = dict(special_tokens or {})
        _check_ids(mergeable_ranks, special_tokens)
        taken = set(mergeable_ranks.values())
        for text, token_id in special_tokens.items():
            if token_id in taken:
                raise ValueError(f"special token {text!r} has id {token_id}, which an ordinary token already has")
        self.name = name
        self.pattern = pattern
        self.mergeable_ranks = dict(mergeable_ranks)
        self.special_tokens = special_tokens
        self._core = _bpe.CoreBPE(list(self.mergeable_ranks), list(self.mergeable_ranks.values()),
                                  list(special_tokens.items()))
        self._special_regex_cache: dict[frozenset, re.Pattern] = {}

    # ------------------------------------------------------------------ construction

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str] = (ENDOFTEXT,),
              progress: Callable[[int, int], None] | None = None, name: str = "text2sql-gpt") -> Tokenizer:
        """Learns a byte-level BPE vocabulary of `vocab_size` ids in all (256 bytes + merges +
        special tokens, which take the last ids). Special-token text inside the documents is cut
        out before counting, so no merge ever spans or builds a special token. Ties between equally
        frequent pairs are broken by the smaller pair of ids: the result is deterministic.
        `progress(done, total)` is called as merges are made."""
        specials = list(dict.fromkeys(special_tokens))
        for s in specials:
            if not isinstance(s, str) or not s:
                raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
        if not isinstance(vocab_size, int) or vocab_size < 256 + len(specials):
            raise ValueError(f"vocab_size must be an int of at least 256 + {len(specials)} special tokens, "
                             f"got {vocab_size!r}")
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of documents (str), not a single str")
        splitter = re.compile("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)))
        trainer = _bpe.Trainer()
        batch: list[str] = []
        batch_chars = 0
        for doc in texts:
            if not isinstance(doc, str):
                raise TypeError(f"each document must be str, not {type(doc).__name__}")
            parts = splitter.split(doc) if specials else [doc]
            batch.extend(parts)
            batch_chars += len(doc)
            if batch_chars > 4_000_000:
                trainer.add_texts(batch)
                batch, batch_chars = [], 0
        trainer.add_texts(batch)
        n_merges = vocab_size - 256 - len(specials)
        tokens = trainer.train(n_merges, progress)
        if len(tokens) < 256 + n_merges:
            warnings.warn(f"the corpus only supports {len(tokens) - 256} merges; the vocabulary has "
                          f"{len(tokens) + len(specials)} ids instead of {vocab_size}", stacklevel=2)
        ranks = {tok: rank for rank, tok in enumerate(tokens)}
        special_ids = {s: len(tokens) + i for i, s in enumerate(specials)}
        return cls(ranks, special_ids, name=name)

    @classmethod
    def from_gpt2(cls, encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike) -> Tokenizer:
        """GPT-2's own files (encoder.json: token -> id in GPT-2's printable byte alphabet;
        vocab.bpe: the merges in rank order). The merges are checked against the ids."""
        byte_of = {ch: b for b, ch in _gpt2_byte_alphabet().items()}
        encoder = _read_json(Path(encoder_json))
        if not isinstance(encoder, dict):
            raise ValueError(f"{encoder_json}: expected a JSON object of token -> id")
        ranks: dict[bytes, int] = {}
        specials: dict[str, int] = {}
        for token, token_id in encoder.items():
            if token in (ENDOFTEXT, "<|startoftext|>"):
                specials[token] = token_id
                continue
            try:
                ranks[bytes(byte_of[ch] for ch in token)] = token_id
            except KeyError as e:
                raise ValueError(f"{encoder_json}: token {token!r} has a character outside GPT-2's byte "
                                 f"alphabet ({e.args[0]!r})") from None
        path = Path(vocab_bpe)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ValueError(f"cannot read {path}: {e.strerror}") from None
        merges = [(n, line) for n, line in enumerate(lines, 1) if line and not line.startswith("#version")]
        for rank, (lineno, line) in enumerate(merges, start=256):
            parts = line.split(" ")
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected two tokens separated by a space, got {line!r}")
            try:
                merged = bytes(byte_of[ch] for ch in parts[0] + parts[1])
            except KeyError as e:
                raise ValueError(f"{path}:{lineno}: character {e.args[0]!r} is outside GPT-2's byte alphabet") from None
            if ranks.get(merged) != rank:
                raise ValueError(f"{path}:{lineno}: merge {line!r} should have rank {rank} in {encoder_json}, "
                                 f"found {ranks.get(merged)}")
        return cls(ranks, specials, name="gpt2")

    @classmethod
    def load(cls, path: str | os.PathLike, special_tokens: dict[str, int] | None = None) -> Tokenizer:
        """Reads a ranks file written by save(), checked against the checksum in the JSON beside it.

        A plain tiktoken ranks file has no JSON beside it: pass `special_tokens` ({} for none) to load one;
        without either this is a ValueError (a copy that lost its .json would otherwise load silently
        without its special tokens). Every error is a ValueError naming the file (and line)."""
        path = Path(path)
        meta_path = Path(str(path) + ".json")
        if meta_path.exists():
            meta = _read_json(meta_path)
            if not isinstance(meta, dict):
                raise ValueError(f"{meta_path}: expected a JSON object")
        else:
            meta = {}
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise ValueError(f"cannot read tokenizer file {path}: {e.strerror}") from None
        # The checksum first: a truncated or edited file is reported as such, not as whatever its
        # damaged line happens to look like (a cut-off rank looked like a duplicate rank).
        expected = meta.get("sha256")
        damaged = ""
        if expected is not None and hashlib.sha256(raw).hexdigest() != expected:
            damaged = (f"{path}: the file does not match the checksum in {meta_path} "
                       f"({meta.get('n_ranks')} ranks expected): truncated or modified; copy or save it again")
        ranks: dict[bytes, int] = {}
        seen_ranks: set[int] = set()

        def bad(lineno: int, what: str) -> ValueError:
            return ValueError(f"{path}:{lineno}: {what}" + (f" -- {damaged}" if damaged else ""))

        for lineno, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2:
                raise bad(lineno, f"expected 'base64-token rank', got {line[:60]!r}")
            if len(fields[0]) > 4 * (MAX_TOKEN_BYTES // 3 + 1):
                raise bad(lineno, f"a token of about {len(fields[0]) * 3 // 4:,} bytes is too long (at most "
                                  f"{MAX_TOKEN_BYTES:,}): not a BPE vocabulary")
            try:
                token = base64.b64decode(fields[0], validate=True)
                rank = int(fields[1])
            except (binascii.Error, ValueError):
                raise bad(lineno, f"not a valid 'base64-token rank' line: {line[:60]!r}") from None
            if not token or rank < 0:
                raise bad(lineno, "empty token or negative rank")
            if len(token) > MAX_TOKEN_BYTES:
                raise bad(lineno, f"a token of {len(token):,} bytes is too long (at most {MAX_TOKEN_BYTES:,})")
            if rank >= MAX_TOKEN_ID:
                raise bad(lineno, f"rank {rank:,} is too large (ranks are below {MAX_TOKEN_ID:,})")
            if token in ranks or rank in seen_ranks:
                raise bad(lineno, f"token or rank {rank} appears twice")
            ranks[token] = rank
            seen_ranks.add(rank)
        if damaged:
            raise ValueError(damaged)
        specials = meta.get("special_tokens", special_tokens or {})
        if not isinstance(specials, dict) or not all(isinstance(k, str) and type(v) is int for k, v in specials.items()):
            raise ValueError(f"{meta_path}: 'special_tokens' must map strings to integer ids")
        try:
            tok = cls(ranks, specials, name=meta.get("name", path.stem), pattern=meta.get("pattern", GPT2_PATTERN))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        if not meta_path.exists() and special_tokens is None:  # a valid vocabulary, but which specials?
            raise ValueError(f"tokenizer {path} has no {meta_path.name} beside it (its special tokens and "
                             f"checksum): copy it along with the ranks file; for a plain tiktoken file pass "
                             f"special_tokens={{...}} ({{}} for none)")
        return tok

    def save(self, path: str | os.PathLike) -> None:
        """Writes the ranks file at `path` and the JSON of special tokens at `path + ".json"`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = b"".join(base64.b64encode(tok) + b" " + str(rank).encode() + b"\n"
                        for tok, rank in sorted(self.mergeable_ranks.items(), key=lambda kv: kv[1]))
        meta = {"format": FILE_FORMAT, "name": self.name, "pattern": self.pattern,
                "special_tokens": self.special_tokens, "n_ranks": len(self.mergeable_ranks),
                "sha256": hashlib.sha256(body).hexdigest()}
        atomic_write(path, body)
        atomic_write(Path(str(path) + ".json"), (json.dumps(meta, indent=1, ensure_ascii=False) + "\n").encode())

    # ------------------------------------------------------------------ encoding

    def encode_ordinary(self, text: str, numpy: bool = False):
        """Ids of `text`; special-token text is encoded as ordinary text."""
        return self._core.encode_ordinary(text, numpy)

    def encode(self, text: str, allowed_special: Literal["all"] | AbstractSet[str] = frozenset(),
               disallowed_special: Literal["all"] | Collection[str] = "all", numpy: bool = False):
        """Ids of `text`, as tiktoken's Encoding.encode: special tokens in `allowed_special` become
        their ids; text matching a special token in `disallowed_special` (by default every special
        token not allowed) raises ValueError; with disallowed_special=() it is ordinary text."""
        allowed, disallowed = self._special_policy(allowed_special, disallowed_special)
        self._check_text(text, disallowed)
        if not allowed:
            return self._core.encode_ordinary(text, numpy)
        return self._core.encode(text, sorted(allowed), numpy)

    def encode_batch(self, texts: Sequence[str], num_threads: int | None = None,
                     allowed_special: Literal["all"] | AbstractSet[str] = frozenset(),
                     disallowed_special: Literal["all"] | Collection[str] = "all", numpy: bool = False) -> list:
        """encode() of each text, on `num_threads` native threads (default: all cores) with the GIL
        released."""
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a sequence of str, not a single str (use encode)")
        texts = list(texts)
        allowed, disallowed = self._special_policy(allowed_special, disallowed_special)
        if num_threads is None:
            num_threads = os.cpu_count() or 1
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
        # The native threads check each text for disallowed special-token text (same error as encode).
        return self._core.encode_batch(texts, sorted(allowed), num_threads, numpy,
                                       sorted(self._disallowed_set(allowed_special, disallowed_special)))

    def _disallowed_set(self, allowed_special, disallowed_special) -> set[str]:
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        return set(self.special_tokens) - allowed if disallowed_special == "all" else set(disallowed_special)

    def _special_policy(self, allowed_special, disallowed_special) -> tuple[set[str], re.Pattern | None]:
        """(the special tokens to encode as specials, a regex finding disallowed special text or None)."""
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        disallowed = self._disallowed_set(allowed_special, disallowed_special)
        regex = None
        if disallowed:
            key = frozenset(disallowed)
            regex = self._special_regex_cache.get(key)
            if regex is None:
                regex = self._special_regex_cache[key] = re.compile("|".join(re.escape(t) for t in sorted(disallowed)))
        return allowed & set(self.special_tokens), regex

    @staticmethod
    def _check_text(text, disallowed: re.Pattern | None) -> None:
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        match = disallowed.search(text) if disallowed is not None else None
        if match:
            token = match.group()
            raise ValueError(
                f"the text contains the special token {token!r}, which is disallowed. Pass "
                f"allowed_special={{{token!r}}} to encode it as the special token, or "
                f"disallowed_special=() to encode it as ordinary text.")

    # ------------------------------------------------------------------ decoding

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """The bytes of `ids` joined; an id that is not in the vocabulary raises ValueError."""
        return self._core.decode_bytes(ids)

    def decode(self, ids: Sequence[int], errors: str = "replace") -> str:
        """Text of `ids`; invalid UTF-8 (a character cut between tokens) follows `errors`."""
        return self._core.decode_bytes(ids).decode("utf-8", errors=errors)

    def decode_single_token_bytes(self, token: int) -> bytes:
        return self._core.token_bytes(token)

    def stream_decoder(self, errors: str = "replace") -> StreamDecoder:
        """A decoder for printing tokens as they are generated (see StreamDecoder)."""
        return StreamDecoder(self, errors)

    # ------------------------------------------------------------------ misc

    @property
    def n_vocab(self) -> int:
        """One more than the largest id (tiktoken's definition)."""
        return self._core.n_vocab

    @property
    def eot_token(self) -> int | None:
        return self.special_tokens.get(ENDOFTEXT)

    def to_tiktoken(self):
        """A tiktoken.Encoding with the same ranks and special tokens (identical ids)."""
        import tiktoken

        return tiktoken.Encoding(self.name, pat_str=self.pattern, mergeable_ranks=self.mergeable_ranks,
                                 special_tokens=self.special_tokens)

    def __repr__(self) -> str:
        return f"Tokenizer(name={self.name!r}, n_vocab={self.n_vocab}, special_tokens={len(self.special_tokens)})"


def _gpt2_byte_alphabet() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character: bytes that are printable Latin-1
    ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 take U+0100, U+0101, ... in
    byte order. encoder.json and vocab.bpe are written in this alphabet."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _check_ids(mergeable_ranks: dict, special_tokens: dict) -> None:
    """Types and ranges of a vocabulary before the C++ core sees it: a ValueError that names the first bad
    entry (not a TypeError that prints the whole vocabulary, nor gigabytes allocated for one huge id)."""
    for token, rank in mergeable_ranks.items():
        if not isinstance(token, bytes) or not token or len(token) > MAX_TOKEN_BYTES:
            raise ValueError(f"token {token[:40]!r}: tokens are non-empty bytes of at most {MAX_TOKEN_BYTES:,}")
        if type(rank) is not int or not 0 <= rank < MAX_TOKEN_ID:
            raise ValueError(f"token {token[:40]!r} has rank {rank!r}: ranks are integers in [0, {MAX_TOKEN_ID:,})")
    for text, token_id in special_tokens.items():
        if not isinstance(text, str) or not text:
            raise ValueError(f"special token {text!r}: special tokens are non-empty strings")
        if type(token_id) is not int or not 0 <= token_id < MAX_TOKEN_ID:
            raise ValueError(f"special token {text!r} has id {token_id!r}: ids are integers in [0, {MAX_TOKEN_ID:,})")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None




# ---------------------------------------------------------------------- command line

def _iter_documents(paths: Sequence[str], split_lines: bool) -> Iterable[str]:
    for p in paths:
        text = Path(p).read_text(encoding="utf-8", errors="replace")
        yield from (text.splitlines(keepends=True) if split_lines else [text])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt.tokenizer", description=(
        "Train, inspect and use the C++ byte-level BPE tokenizer."))
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="learn a vocabulary from text files")
    tr.add_argument("inputs", nargs="+", help="UTF-8 text files")
    tr.add_argument("--vocab-size", type=int, default=8192, help="ids in all, special tokens included (default 8192)")
    tr.add_argument("--special", action="append", default=[], metavar="TEXT",
                    help=f"a special token besides {ENDOFTEXT} (repeatable)")
    tr.add_argument("--out", required=True, help="where to write the ranks file (a .json goes beside it)")
    enc = sub.add_parser("encode", help="print the ids (and pieces) of a text")
    enc.add_argument("--tokenizer", required=True, help="a file written by `train` (or --gpt2 DIR)")
    enc.add_argument("text", help="the text to encode ('-' reads stdin)")
    st = sub.add_parser("stats", help="tokens per byte of text files under a tokenizer")
    st.add_argument("--tokenizer", required=True)
    st.add_argument("inputs", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            from tqdm import tqdm

            for p in args.inputs:
                if not Path(p).is_file():
                    raise ValueError(f"input file {p} does not exist")
            bar = tqdm(total=args.vocab_size, desc="merges", unit="merge", file=sys.stderr)

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            tok = Tokenizer.train(_iter_documents(args.inputs, split_lines=False), args.vocab_size,
                                  special_tokens=[ENDOFTEXT, *args.special], progress=progress)
            bar.close()
            tok.save(args.out)
            print(f"wrote {args.out} ({tok.n_vocab} ids, {len(tok.special_tokens)} special tokens)")
        elif args.command == "encode":
            tok = _load_cli_tokenizer(args.tokenizer)
            text = sys.stdin.read() if args.text == "-" else args.text
            ids = tok.encode(text, disallowed_special=())
            print(" ".join(map(str, ids)))
            print(" | ".join(repr(tok.decode_single_token_bytes(i))[2:-1] for i in ids))
        elif args.command == "stats":
            tok = _load_cli_tokenizer(args.tokenizer)
            for p in args.inputs:
                data = Path(p).read_text(encoding="utf-8", errors="replace")
                n = len(tok.encode_ordinary(data))
                print(f"{p}: {len(data.encode()):,} bytes -> {n:,} tokens ({len(data.encode()) / max(n, 1):.2f} bytes/token)")
    except (ValueError, TypeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _load_cli_tokenizer(spec: str) -> Tokenizer:
    p = Path(spec)
    if p.is_dir() and (p / "encoder.json").exists():
        return Tokenizer.from_gpt2(p / "encoder.json", p / "vocab.bpe")
    return Tokenizer.load(p)


if __name__ == "__main__":
    sys.exit(main())
