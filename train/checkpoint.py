"""Checkpoints: written atomically, the last K kept, loaded with weights_only=True.

A checkpoint is one file, checkpoints/ckpt_<step>.pt, holding plain data only (tensors, numbers,
strings, lists, dicts), so `torch.load(weights_only=True)` can read it without running pickled code:
    model, optimizer, scaler     state dicts
    step, data_position          the next optimizer step and the next global batch of the loader
    rng                          per-rank torch CPU (and CUDA) generator states
    config, model_config         the run's Config and the GPTConfig as dicts
    tokenizer, eos_id            how to turn ids back into text (for gpt.sample)
Writing goes to a hidden temporary file in the same folder, fsync, then os.replace (atomic on POSIX),
then fsync of the folder: a crash at any point leaves either the old set of checkpoints or the new one,
never a truncated ckpt_*.pt.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

PATTERN = re.compile(r"^ckpt_(\d+)\.pt$")


def checkpoint_dir(out_dir) -> Path:
    return Path(out_dir) / "checkpoints"


def list_checkpoints(out_dir) -> list[Path]:
    """ckpt_*.pt files of a run, oldest step first (temporary files are never listed)."""
    d = checkpoint_dir(out_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(out_dir, step: int, state: dict, keep_last: int = 3) -> Path:
    d = checkpoint_dir(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    final = d / f"ckpt_{step:07d}.pt"
    tmp = d / f".ckpt_{step:07d}.pt.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(d)
    for old in list_checkpoints(out_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    for stale in d.glob(".ckpt_*.tmp-*"):  # left by a run killed while writing
        if not stale.name.endswith(f"-{os.getpid()}"):
            stale.unlink(missing_ok=True)
    return final


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint file; a missing or unreadable one is a ValueError with a one-line reason."""
    p = Path(path)
    if p.is_dir():  # a run folder or its checkpoints/ folder: take the newest checkpoint in it
        found = list_checkpoints(p.parent if p.name == "checkpoints" else p)
        if not found:
            raise ValueError(f"no checkpoint (ckpt_*.pt) found in {p}")
        p = found[-1]
    if not p.is_file():
        raise ValueError(f"checkpoint {p} does not exist")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holding non-plain data
        raise ValueError(f"checkpoint {p} cannot be read: truncated, or not written by `python -m train` "
                         f"({type(e).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise ValueError(f"{p} is not a text2sql-gpt checkpoint (no model / model_config entries)")
    return state


def latest_checkpoint(out_dir) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1] if found else None
