"""The one way this project writes a file that a crash must not leave half-written.

Tokenizer files, token shards, meta.json and checkpoints all go through `atomic_write`: the bytes go to a
hidden temporary file in the same folder, are flushed and fsync'ed, and the file is renamed over the
target with os.replace (atomic on POSIX and Windows); then the folder itself is fsync'ed so the rename
survives a power cut. A reader therefore sees the old file or the new one, never a truncated one. A
temporary file left by a killed writer is named `.<name>.tmp-<pid>` and never matches a reader's pattern.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable


def fsync_dir(folder: Path) -> None:
    """fsync a folder so that a rename inside it is durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, content: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write `content` (bytes, text as UTF-8, or a function that writes to a binary file) to `path`
    atomically; returns the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)
    return path
