"""gpt/atomic_write.py (the one atomic writer) and gpt/device.py (the one device picker)."""
import os

import pytest
import torch

from gpt.atomic_write import atomic_write
from gpt.device import pick_device


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "meta.json"
    atomic_write(target, "old")
    atomic_write(target, b"new bytes")
    assert target.read_bytes() == b"new bytes"
    atomic_write(target, lambda f: f.write(b"from a writer"))
    assert target.read_bytes() == b"from a writer"
    assert sorted(os.listdir(tmp_path)) == ["meta.json"]


def test_a_writer_that_fails_keeps_the_old_file(tmp_path):
    target = tmp_path / "ckpt.pt"
    atomic_write(target, b"good")

    def crash(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, crash)
    assert target.read_bytes() == b"good" and sorted(os.listdir(tmp_path)) == ["ckpt.pt"]


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not one of"):
        pick_device("tpu")
    if torch.cuda.is_available():
        assert pick_device("auto").type == "cuda"
    else:
        assert pick_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            pick_device("cuda")
