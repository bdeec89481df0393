"""The plain-text source of `python -m data.prepare --source text --input PATH...`.

Each input file (or every *.txt file under an input folder) is one document, learned in full. The
last --val-fraction of each file (cut at a line break) is the validation split, so validation text is
never seen in training and both splits cover every file.
"""
from __future__ import annotations

from pathlib import Path

from data.prepare import Source, register_source


def add_arguments(group) -> None:
    group.add_argument("--input", nargs="+", metavar="PATH", help="text files or folders of *.txt files")
    group.add_argument("--val-fraction", type=float, default=0.05,
                       help="fraction of each file (its end) kept for validation")


def text_files(paths) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.txt") if q.is_file())
            if not found:
                raise ValueError(f"--input folder {p} contains no *.txt files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"--input {p} does not exist")
    return files


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """(train, val): val is the last `val_fraction` of the text, starting at a line break."""
    cut = int(len(text) * (1.0 - val_fraction))
    newline = text.rfind("\n", 0, cut)
    if newline > 0 and cut - newline < 10_000:
        cut = newline + 1
    return text[:cut], text[cut:]


def load(args) -> dict[str, list[str]]:
    if not args.input:
        raise ValueError("--source text needs --input PATH (text files or folders)")
    if not 0.0 <= args.val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    train, val = [], []
    for f in text_files(args.input):
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{f} is not UTF-8 text") from None
        head, tail = split_text(text, args.val_fraction)
        if head:
            train.append(head)
        if tail:
            val.append(tail)
    return {"train": train, "val": val}


SOURCE = register_source(Source("text", "plain UTF-8 text files (pretraining)", load, add_arguments))
