"""Token shards on disk: the writer used by `python -m data.prepare`, the memory-mapped reader used by
the trainer.

Layout of a prepared dataset folder (everything the trainer needs, nothing else):

    <dir>/meta.json              format, version, dtype, vocab_size, eos_id, tokenizer file, splits
    <dir>/<split>_<n>.tokens.npy token ids, one long stream of documents each ending with the end token
    <dir>/<split>_<n>.mask.npy   uint8, 1 = learn this token as a target, 0 = context only (prompt);
                                 absent when every token of the shard is learned (plain text)
    <dir>/tokenizer.*            the tokenizer that produced the ids (written by data.prepare)

Token ids are stored as uint16 when the vocabulary has at most 65536 ids, else uint32. Files are .npy
(a small header that records dtype and length) so they can be opened with `np.load(mmap_mode="r")`:
nothing is read until a batch touches it, and N ranks share the page cache.

Reading: the stream of a split is cut into windows of T+1 tokens with stride T (windows never cross a
shard boundary). Inputs are window[:-1], targets window[1:], and a target whose mask is 0 becomes -100
(the `ignore_index` of the loss). Each epoch visits the windows in a permutation drawn from
(seed, epoch). Global batch number g takes windows perm[g*B*W : (g+1)*B*W] (W = world size) and rank r
reads its slice [r*B : (r+1)*B] of those. So the data a step sees depends only on (seed, g), and
    * one process with batch B*W reads exactly the union of what W ranks with batch B read;
    * resuming only needs g (`BatchLoader.position`), which checkpoints store.
Packed documents may attend to the end of the previous document within a window (as in GPT-2
pretraining); the end token between them tells the model a new one starts.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from gpt.atomic_write import atomic_write

FORMAT = "text2sql-gpt-shards"
VERSION = 1
IGNORE_INDEX = -100
DEFAULT_SHARD_TOKENS = 1 << 26  # 64M tokens: 128 MiB of uint16 per shard file


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (vocab_size <= 65536), else uint32."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _write(path: Path, content) -> None:
    """atomic_write (a reader never sees a half-written file; the temporary file is removed on failure),
    with a full disk reported in one line that names the file and the free space."""
    try:
        atomic_write(path, content)
    except OSError as e:
        import errno
        import shutil

        free = shutil.disk_usage(path.parent).free / 2**20
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise OSError(f"cannot write {path}: no space left on the device ({free:,.1f} MB free in "
                          f"{path.parent}); free some space or write to another --out") from None
        raise OSError(f"cannot write {path}: {e.strerror or e} ({free:,.1f} MB free)") from None


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    _write(path, lambda f: np.save(f, array))


class ShardWriter:
    """Appends tokenized documents of one split and cuts them into shard files.

        writer = ShardWriter(out_dir, "train", vocab_size)
        writer.add(ids, mask)        # mask: 0/1 per token, None = learn every token
        shards = writer.close()      # [{"tokens": file, "mask": file or None, "n_tokens": n}, ...]
    """

    def __init__(self, out_dir, split: str, vocab_size: int, shard_tokens: int = DEFAULT_SHARD_TOKENS):
        if not split or any(c in split for c in "/\\. "):
            raise ValueError(f"split name {split!r} must be a plain word such as 'train' or 'val'")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.split, self.vocab_size = split, vocab_size
        self.dtype = token_dtype(vocab_size)
        if isinstance(shard_tokens, bool) or int(shard_tokens) != shard_tokens or shard_tokens <= 0:
            raise ValueError(f"shard_tokens (--shard-tokens) must be a positive number of tokens, got {shard_tokens}")
        self.shard_tokens = int(shard_tokens)
        self.shards: list[dict] = []
        self.n_documents = 0
        self._ids: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        self._buffered = 0
        self._closed = False

    def add(self, ids: Sequence[int], mask: Sequence[int] | None = None) -> None:
        ids_arr = np.asarray(ids, dtype=np.int64)
        if ids_arr.ndim != 1:
            raise ValueError("ids must be a flat sequence of token ids")
        if ids_arr.size and (ids_arr.min() < 0 or ids_arr.max() >= self.vocab_size):
            raise ValueError(f"token id out of range [0, {self.vocab_size}) in document {self.n_documents}")
        if mask is None:
            mask_arr = np.ones(ids_arr.size, dtype=np.uint8)
        else:
            mask_arr = np.asarray(mask, dtype=np.uint8)
            if mask_arr.shape != ids_arr.shape:
                raise ValueError(f"mask has {mask_arr.size} entries for {ids_arr.size} tokens")
        self._ids.append(ids_arr.astype(self.dtype))
        self._masks.append(mask_arr)
        self._buffered += ids_arr.size
        self.n_documents += 1
        while self._buffered >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def _flush(self, n: int) -> None:
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, self.dtype)
        mask = np.concatenate(self._masks) if self._masks else np.zeros(0, np.uint8)
        head_ids, head_mask = ids[:n], mask[:n]
        self._ids, self._masks = [ids[n:]], [mask[n:]]
        self._buffered = ids.size - n
        index = len(self.shards)
        tokens_name = f"{self.split}_{index:04d}.tokens.npy"
        _save_npy_atomic(self.out_dir / tokens_name, head_ids)
        mask_name = None
        if not head_mask.all():  # plain text: every target learned, no mask file needed
            mask_name = f"{self.split}_{index:04d}.mask.npy"
            _save_npy_atomic(self.out_dir / mask_name, head_mask)
        self.shards.append({"tokens": tokens_name, "mask": mask_name, "n_tokens": int(head_ids.size),
                            "n_learned": int(head_mask.sum())})

    def close(self) -> list[dict]:
        if not self._closed:
            if self._buffered > 0 or not self.shards:
                self._flush(self._buffered)
            self._closed = True
        return self.shards


def write_meta(out_dir, vocab_size: int, eos_id: int, splits: dict[str, list[dict]], **extra) -> dict:
    """Write <out_dir>/meta.json describing the shards; `extra` (tokenizer file, source, ...) is kept."""
    meta = {"format": FORMAT, "version": VERSION, "dtype": token_dtype(vocab_size).name,
            "vocab_size": int(vocab_size), "eos_id": int(eos_id), "splits": splits, **extra}
    _write(Path(out_dir) / "meta.json", json.dumps(meta, indent=2) + "\n")
    return meta


def write_dataset(out_dir, splits: dict[str, Iterable[tuple[Sequence[int], Sequence[int] | None]]],
                  vocab_size: int, eos_id: int, shard_tokens: int = DEFAULT_SHARD_TOKENS, **extra) -> dict:
    """Write every split's (ids, mask) documents as shards plus meta.json; returns the metadata."""
    written = {}
    for split, documents in splits.items():
        writer = ShardWriter(out_dir, split, vocab_size, shard_tokens)
        for ids, mask in documents:
            writer.add(ids, mask)
        written[split] = writer.close()
    return write_meta(out_dir, vocab_size, eos_id, written, **extra)


def read_meta(data_dir) -> dict:
    path = Path(data_dir) / "meta.json"
    if not path.is_file():
        raise ValueError(f"{path} not found: prepare the data first with `python -m data.prepare`")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); prepare the data again") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} metadata file")
    return meta


class ShardDataset:
    """The memory-mapped shards of one split of a prepared folder."""

    def __init__(self, data_dir, split: str):
        self.data_dir = Path(data_dir)
        self.meta = read_meta(data_dir)
        if split not in self.meta["splits"]:
            raise ValueError(f"{self.data_dir} has no split {split!r} (it has {sorted(self.meta['splits'])})")
        self.split = split
        self.vocab_size = int(self.meta["vocab_size"])
        self.tokens: list[np.ndarray] = []
        self.masks: list[np.ndarray | None] = []
        for shard in self.meta["splits"][split]:
            self.tokens.append(np.load(self.data_dir / shard["tokens"], mmap_mode="r"))
            self.masks.append(np.load(self.data_dir / shard["mask"], mmap_mode="r") if shard["mask"] else None)

    @property
    def n_tokens(self) -> int:
        return sum(t.size for t in self.tokens)

    def windows(self, seq_len: int) -> np.ndarray:
        """(n_windows, 2) array of (shard index, start offset) of every window of seq_len + 1 tokens."""
        rows = []
        for i, t in enumerate(self.tokens):
            n = (t.size - 1) // seq_len
            if n > 0:
                rows.append(np.stack([np.full(n, i), np.arange(n) * seq_len], axis=1))
        return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 2), np.int64)

    def window(self, shard: int, start: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets (masked targets set to IGNORE_INDEX) of one window, as int64 arrays."""
        chunk = self.tokens[shard][start:start + seq_len + 1].astype(np.int64)
        x, y = chunk[:-1], chunk[1:].copy()
        mask = self.masks[shard]
        if mask is not None:
            y[mask[start + 1:start + seq_len + 1] == 0] = IGNORE_INDEX
        return x, y


class BatchLoader:
    """Deterministic batches for one rank: batch g depends only on (seed, g); see the module docstring.

    `position` is the next global batch number; set it to resume. `shuffle=False` reads windows in order
    (validation)."""

    def __init__(self, dataset: ShardDataset, batch_size: int, seq_len: int, rank: int = 0,
                 world_size: int = 1, seed: int = 0, shuffle: bool = True):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.dataset, self.batch_size, self.seq_len = dataset, batch_size, seq_len
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, shuffle
        self._windows = dataset.windows(seq_len)
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = len(self._windows) // self.global_batch
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"split {dataset.split!r} of {dataset.data_dir} has {dataset.n_tokens} tokens: too few for one "
                f"global batch of {self.global_batch} sequences of {seq_len + 1} tokens; use a smaller "
                f"batch_size/block_size or more data")
        self.position = 0
        self._perm_epoch, self._perm = -1, None

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self._windows))
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self._windows))
            self._perm_epoch = epoch
        return self._perm

    def batch(self, g: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of global batch g for this rank, int64 tensors of shape (batch_size, seq_len)."""
        epoch, i = divmod(g, self.batches_per_epoch)
        first = i * self.global_batch + self.rank * self.batch_size
        picks = self._order(epoch)[first:first + self.batch_size]
        xs, ys = zip(*(self.dataset.window(int(s), int(o), self.seq_len) for s, o in self._windows[picks]))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.batch(self.position)
        self.position += 1
        return out
