"""Checkpoints: written atomically with a checksum, verified on load, the last K kept, loaded with
weights_only=True. This is the one reader and writer: training, sampling, evaluation and export use it.

A checkpoint is one file, checkpoints/ckpt_<step>.pt, holding plain data only (tensors, numbers,
strings, lists, dicts), so `torch.load(weights_only=True)` can read it without running pickled code:
    model, optimizer, scaler     state dicts
    ema                          (runs with train.ema_decay > 0) the averaged weights (train/ema.py), which
                                 inference uses (`inference_weights`); "model" stays what --resume continues
    step, data_position          the next optimizer step and the next global batch of the loader
    rng                          per-rank torch CPU (and CUDA) generator states
    config, model_config         the run's Config and the GPTConfig as dicts
    tokenizer, eos_id            how to turn ids back into text (for train.sample, text2sql.ask and text2sql.evaluate)
    checksum                     "sha256:<hex>" of everything above (`state_checksum`), checked on every load:
                                 a flipped byte in a tensor is an error, never a silently different model
Writing goes through gpt/atomic_write.py (temporary file, fsync, os.replace, fsync of the folder): a crash at
any point leaves either the old set of checkpoints or the new one, never a truncated ckpt_*.pt. A run folder
given where a file is expected means its newest checkpoint that verifies; older-format files without a
checksum still load (nothing to verify).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Callable

import torch

from gpt.atomic_write import atomic_write
from gpt.model import GPT, GPTConfig
from gpt.tokenizer import Tokenizer

PATTERN = re.compile(r"^ckpt_(\d+)\.pt$")
RESUME_KEYS = ("optimizer", "step", "data_position", "rng")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def checkpoint_dir(out_dir) -> Path:
    return Path(out_dir) / "checkpoints"


def checkpoint_step(path) -> int | None:
    m = PATTERN.match(Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(out_dir) -> list[Path]:
    """ckpt_*.pt files of a run, oldest step first (temporary files are never listed)."""
    d = checkpoint_dir(out_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


# ----------------------------------------------------------------------------------------------------
# Checksum


def state_checksum(state: dict) -> str:
    """sha256 over a checkpoint's contents (every key except "checksum"), tensors by dtype, shape and bytes.

    It is over the contents, not the file's bytes, so that it can travel inside the file it checks."""
    h = hashlib.sha256()

    def feed(obj) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach()
            h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
            if t.numel():
                h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        elif isinstance(obj, dict):
            h.update(f"D{len(obj)}|".encode())
            for k, v in obj.items():
                feed(k)
                feed(v)
        elif isinstance(obj, (list, tuple)):
            h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}|".encode())
            for v in obj:
                feed(v)
        elif isinstance(obj, str):
            data = obj.encode("utf-8", "surrogatepass")
            h.update(f"S{len(data)}|".encode() + data)
        elif isinstance(obj, bytes):
            h.update(f"B{len(obj)}|".encode() + obj)
        else:  # None, bool, int, float (repr is exact and stable, nan included), torch.dtype, ...
            h.update(f"{type(obj).__name__}:{obj!r}|".encode())

    feed({k: v for k, v in state.items() if k != "checksum"})
    return "sha256:" + h.hexdigest()


# ----------------------------------------------------------------------------------------------------
# Writing


def save_checkpoint(out_dir, step: int, state: dict, keep_last: int = 3) -> Path:
    """Write ckpt_<step>.pt with its checksum; then keep the newest `keep_last` of this run's earlier steps.

    Never deletes the file just written, nor a checkpoint of a later step than `step` (not this run's to
    delete). A full disk is an OSError naming the file and the free space (the temporary file is removed)."""
    d = checkpoint_dir(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"ckpt_{step:07d}.pt"
    state = {**{k: v for k, v in state.items() if k != "checksum"}, "checksum": state_checksum(state)}
    try:
        final = atomic_write(path, lambda f: torch.save(state, f))
    except OSError as e:
        free = shutil.disk_usage(d).free
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise OSError(f"cannot write checkpoint {path}: no space left on the device ({free / 2**20:,.1f} MB "
                          f"free in {d}); free some space or lower train.keep_last, then --resume") from None
        raise OSError(f"cannot write checkpoint {path}: {e.strerror or e} ({free / 2**20:,.1f} MB free)") from None
    older = [p for p in list_checkpoints(out_dir) if checkpoint_step(p) < step]
    for old in older[:max(0, len(older) - (keep_last - 1))]:
        old.unlink(missing_ok=True)
    for stale in d.glob(".ckpt_*.tmp-*"):  # left by a run killed while writing
        if not stale.name.endswith(f"-{os.getpid()}"):
            stale.unlink(missing_ok=True)
    return final


def check_out_dir(out_dir, resume: bool, overwrite: bool) -> None:
    """Before a run does any work: a fresh run (no resume) must not mix with another run's checkpoints.

    A folder that already holds checkpoints is refused unless train.overwrite says to replace them (then
    `clear_checkpoints` deletes them once the run has checked its other inputs): a later --resume, sample
    or the keep-last pruning would otherwise mix the two runs."""
    found = list_checkpoints(out_dir)
    if resume or overwrite or not found:
        return
    names = found[0].name if len(found) == 1 else f"{found[0].name} .. {found[-1].name}"
    raise ValueError(f"train.out_dir {out_dir} already holds {len(found)} checkpoint(s) ({names}) of an earlier "
                     f"run: pass --resume to continue it, --set train.overwrite=true to replace it, or choose "
                     f"another train.out_dir")


def clear_checkpoints(out_dir, say: Callable[[str], None] = _stderr) -> None:
    """Delete a run folder's checkpoints (train.overwrite)."""
    found = list_checkpoints(out_dir)
    for p in found:
        p.unlink(missing_ok=True)
    if found:
        say(f"[train] train.overwrite: deleted {len(found)} checkpoint(s) of the earlier run in "
            f"{checkpoint_dir(out_dir)}")


# ----------------------------------------------------------------------------------------------------
# Reading


def find_checkpoint(path) -> Path:
    """A checkpoint file, or the newest ckpt_*.pt of a run folder (or of its checkpoints/ folder), unread."""
    p = Path(path)
    if p.is_dir():
        found = list_checkpoints(p.parent if p.name == "checkpoints" else p)
        if not found:
            raise ValueError(f"no checkpoint (ckpt_*.pt) found in {p}")
        p = found[-1]
    if not p.is_file():
        raise ValueError(f"checkpoint {p} does not exist")
    return p


def _read_file(p: Path, map_location) -> dict:
    """One checkpoint file, read and verified; a ValueError with a one-line reason otherwise."""
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holding non-plain data
        raise ValueError(f"checkpoint {p} cannot be read: truncated, or not written by `python -m train` "
                         f"({type(e).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise ValueError(f"{p} is not a text2sql-gpt checkpoint (no model / model_config entries)")
    stored = state.pop("checksum", None)
    if stored is not None and stored != state_checksum(state):
        raise ValueError(f"checkpoint {p} is corrupt: its contents do not match the checksum stored in it "
                         f"(damaged on disk or in transfer); use an earlier checkpoint")
    return state


def load_newest(out_dir, map_location="cpu", say: Callable[[str], None] = _stderr) -> tuple[dict, Path]:
    """(state, path) of the newest checkpoint of a run folder that reads and verifies; each newer one that
    does not is reported through `say`. A ValueError when there is none, or none verifies."""
    d = Path(out_dir)
    d = d.parent if d.name == "checkpoints" else d
    found = list_checkpoints(d)
    if not found:
        raise ValueError(f"no checkpoint (ckpt_*.pt) found in {d}")
    failures = []
    for p in reversed(found):
        try:
            state = _read_file(p, map_location)
        except ValueError as e:
            failures.append(str(e))
            say(f"[checkpoint] skipping {p.name}: {e}")
            continue
        if failures:
            say(f"[checkpoint] using {p.name}, the newest checkpoint in {d / 'checkpoints'} that verifies")
        return state, p
    raise ValueError(f"none of the {len(found)} checkpoint(s) in {d / 'checkpoints'} can be used: " + "; ".join(failures))


def load_checkpoint(path, map_location="cpu", say: Callable[[str], None] = _stderr) -> dict:
    """Load a checkpoint file, or a run folder's newest checkpoint that verifies; a missing, unreadable or
    corrupt file is a ValueError with a one-line reason."""
    p = Path(path)
    if p.is_dir():
        return load_newest(p, map_location, say)[0]
    return _read_file(find_checkpoint(p), map_location)


def latest_checkpoint(out_dir) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def check_resumable(state: dict, path) -> None:
    """A checkpoint to --resume from needs the optimizer, data position and RNG, not just weights."""
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint {path} cannot be resumed: it has no {', '.join(missing)} (weights only, e.g. "
                         f"an export); start a new run with train.init_from={path} instead")


# ----------------------------------------------------------------------------------------------------
# Weights into a model (training and inference)


def load_weights(model: torch.nn.Module, weights: dict, source) -> None:
    """model.load_state_dict with one-line errors that name the tensor: missing, unexpected, wrong shape."""
    if not isinstance(weights, dict):
        raise ValueError(f"{source}: the model entry is not a dict of tensors")
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}"] if unexpected else [])
        raise ValueError(f"{source}: the weights do not fit the model config: {'; '.join(parts)} tensor(s)")
    for k, t in weights.items():
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(expected[k].shape):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{source}: tensor {k} has shape {got}, the model config needs "
                             f"{tuple(expected[k].shape)}")
    model.load_state_dict(weights)


def model_config_from(state: dict, source) -> GPTConfig:
    cfg = state.get("model_config")
    if not isinstance(cfg, dict):
        raise ValueError(f"{source}: model_config is not a dict")
    known = set(GPTConfig.__dataclass_fields__)
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"{source}: model_config has unknown key(s) {', '.join(unknown)} (written by another "
                         f"version of this code?); GPTConfig takes {', '.join(sorted(known))}")
    try:
        return GPTConfig(**cfg)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: model_config {cfg} is not valid: {e}") from None


# ----------------------------------------------------------------------------------------------------
# Inference: the model and tokenizer a checkpoint was trained with (train.sample, text2sql.ask/evaluate)


def inference_weights(state: dict) -> dict:
    """The weights to predict with (and to fine-tune from): the run's average when it kept one, else the
    training weights."""
    ema = state.get("ema")
    return ema if isinstance(ema, dict) and ema else state["model"]


def load_model(state: dict, device, source="checkpoint") -> GPT:
    """The GPT of a loaded checkpoint (its inference weights), on `device`, in eval mode; non-finite weights
    are refused."""
    model = GPT(model_config_from(state, source))
    weights = inference_weights(state)
    load_weights(model, weights, source)
    for name, t in weights.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"{source}: tensor {name} holds {bad} NaN/inf value(s): the run diverged before this "
                             f"checkpoint; use an earlier one")
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
    """(model, tokenizer, state, path) of a checkpoint file or run folder (its newest that verifies)."""
    p = Path(checkpoint)
    if p.is_dir():
        state, path = load_newest(p)
    else:
        path = find_checkpoint(p)
        state = _read_file(path, "cpu")
    model = load_model(state, device, path)
    tok = load_tokenizer(state, tokenizer)
    if tok.n_vocab > model.config.vocab_size:
        raise ValueError(f"tokenizer {tokenizer or state.get('tokenizer')} has {tok.n_vocab} ids but the model of "
                         f"{path} only {model.config.vocab_size}: it is not the tokenizer this model was trained "
                         f"with; pass the right --tokenizer")
    return model, tok, state, path
