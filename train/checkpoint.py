"""Checkpoints: written atomically, the last K kept, loaded with weights_only=True.

A checkpoint is one file, checkpoints/ckpt_<step>.pt, holding plain data only (tensors, numbers,
strings, lists, dicts), so `torch.load(weights_only=True)` can read it without running pickled code:
    model, optimizer, scaler     state dicts
    step, data_position          the next optimizer step and the next global batch of the loader
    rng                          per-rank torch CPU (and CUDA) generator states
    config, model_config         the run's Config and the GPTConfig as dicts
    tokenizer, eos_id            how to turn ids back into text (for train.sample, text2sql.ask and text2sql.evaluate)
Writing goes through gpt/atomic_write.py (temporary file, fsync, os.replace, fsync of the folder): a crash at any point leaves either the old set of checkpoints or the new one,
never a truncated ckpt_*.pt.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from gpt.atomic_write import atomic_write
from gpt.model import GPT, GPTConfig
from gpt.tokenizer import Tokenizer

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


def save_checkpoint(out_dir, step: int, state: dict, keep_last: int = 3) -> Path:
    d = checkpoint_dir(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    final = atomic_write(d / f"ckpt_{step:07d}.pt", lambda f: torch.save(state, f))
    for old in list_checkpoints(out_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    for stale in d.glob(".ckpt_*.tmp-*"):  # left by a run killed while writing
        if not stale.name.endswith(f"-{os.getpid()}"):
            stale.unlink(missing_ok=True)
    return final


def find_checkpoint(path) -> Path:
    """A checkpoint file, or the newest ckpt_*.pt of a run folder (or of its checkpoints/ folder)."""
    p = Path(path)
    if p.is_dir():
        found = list_checkpoints(p.parent if p.name == "checkpoints" else p)
        if not found:
            raise ValueError(f"no checkpoint (ckpt_*.pt) found in {p}")
        p = found[-1]
    if not p.is_file():
        raise ValueError(f"checkpoint {p} does not exist")
    return p


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint file (or a run folder's newest); a missing or unreadable one is a ValueError
    with a one-line reason. This is the one reader: training, sampling and evaluation all use it."""
    p = find_checkpoint(path)
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


# ----------------------------------------------------------------------------------------------------
# Inference: the model and tokenizer a checkpoint was trained with (train.sample, text2sql.ask/evaluate)


def load_model(state: dict, device) -> GPT:
    """The GPT of a loaded checkpoint, on `device`, in eval mode."""
    model = GPT(GPTConfig(**state["model_config"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise ValueError(f"checkpoint weights do not fit its model config: {str(e).splitlines()[0]}") from None
    return model.to(device).eval()


def load_tokenizer(state: dict, override: str | Path | None = None) -> Tokenizer:
    """The tokenizer the training data was prepared with (recorded in the checkpoint), or `override`."""
    path = override or state.get("tokenizer")
    if not path:
        raise ValueError("the checkpoint records no tokenizer; pass --tokenizer PATH")
    if not Path(path).is_file():
        raise ValueError(f"tokenizer file {path} does not exist (moved data folder?); pass --tokenizer PATH")
    return Tokenizer.load(str(path))


def load_for_inference(checkpoint, device, tokenizer: str | Path | None = None):
    """(model, tokenizer, state, path) of a checkpoint file or run folder."""
    path = find_checkpoint(checkpoint)
    state = load_checkpoint(path)
    return load_model(state, device), load_tokenizer(state, tokenizer), state, path
