"""Checkpoints that are never lost, mixed up or silently corrupt (issue 12), and one-line errors for
checkpoints and sampling flags a careless user gets wrong.

- a fresh run refuses an out_dir that holds another run's checkpoints (train.overwrite=true replaces them);
  pruning never deletes the file just written
- a checksum inside each checkpoint is verified on load; --resume falls back to the newest that verifies
- a partial last line in log.jsonl does not stop --resume; disk full is one line naming path and free space
- wrong model_config keys, tensor shapes, missing data_position, NaN weights, a tokenizer with more ids
  than the model, --temperature nan, --top-k -3: one-line errors
"""
import dataclasses
import errno
import random

import pytest
import torch

from gpt.model import GPT, GPTConfig
from gpt.tokenizer import Tokenizer
from tests.test_train import byte_data, cli, config  # noqa: F401  (byte_data is a fixture)
from train import checkpoint as ck
from train.checkpoint import list_checkpoints, load_checkpoint, load_for_inference, load_model, save_checkpoint
from train.log import read_log
from train.loop import run


def names(out_dir):
    return [p.name for p in list_checkpoints(out_dir)]


def flip_bytes(path, n=4000, seed=0):
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    start = len(data) // 4  # inside the tensor data, past the pickled header
    for i in rng.sample(range(start, start + len(data) // 2), n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def small_state(step=1, seed=0):
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32, vocab_size=320)
    torch.manual_seed(seed)
    return {"model": GPT(cfg).state_dict(), "model_config": dataclasses.asdict(cfg), "step": step}


# ---------------------------------------------------------------- another run's checkpoints

def test_fresh_run_refuses_an_out_dir_with_checkpoints_and_overwrite_replaces_them(byte_data, tmp_path):
    out = tmp_path / "run"
    run(config(byte_data, out, "train.max_steps=4", "train.ckpt_interval=2"))
    assert names(out) == ["ckpt_0000002.pt", "ckpt_0000004.pt"]
    before = {p.name: p.read_bytes() for p in list_checkpoints(out)}
    with pytest.raises(ValueError, match="already holds 2 checkpoint.*--resume.*train.overwrite=true"):
        run(config(byte_data, out, "train.max_steps=1", "train.ckpt_interval=1"))
    assert {p.name: p.read_bytes() for p in list_checkpoints(out)} == before  # untouched
    res = cli("--config", "tiny", "--set", f"data.dir={byte_data}", f"train.out_dir={out}", "train.progress=false",
              "train.max_steps=1", "train.threads=1")
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "already holds" in res.stderr, res.stderr
    run(config(byte_data, out, "train.max_steps=1", "train.ckpt_interval=1", "train.overwrite=true"))
    assert names(out) == ["ckpt_0000001.pt"]  # the earlier run's checkpoints are gone, the new one kept
    with pytest.raises(ValueError, match="exclude each other"):
        run(config(byte_data, out, "train.max_steps=1", "train.overwrite=true", "train.resume=true"))


def test_pruning_never_deletes_the_file_just_written_nor_later_steps(tmp_path):
    for step in (10, 20):
        save_checkpoint(tmp_path, step, small_state(step))
    save_checkpoint(tmp_path, 5, small_state(5), keep_last=1)
    assert "ckpt_0000005.pt" in names(tmp_path) and load_checkpoint(tmp_path / "checkpoints" / "ckpt_0000005.pt")
    for step in (6, 7, 8):
        save_checkpoint(tmp_path, step, small_state(step), keep_last=2)
    assert names(tmp_path) == ["ckpt_0000007.pt", "ckpt_0000008.pt", "ckpt_0000010.pt", "ckpt_0000020.pt"]


# ---------------------------------------------------------------- corruption

def test_flipped_bytes_are_detected_on_load(tmp_path):
    state = small_state()
    path = save_checkpoint(tmp_path, 1, state)
    assert load_checkpoint(path)["step"] == 1
    data = bytearray(path.read_bytes())
    weights = state["model"]["wte.weight"].numpy().tobytes()  # stored raw: flip 4000 of its bytes in place
    at = data.find(weights)
    assert at > 0
    for i in range(4000):
        data[at + 3 * i] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(path)


def test_checksum_covers_every_tensor_and_value(tmp_path):
    state = small_state()
    path = save_checkpoint(tmp_path, 1, state)
    loaded = torch.load(path, weights_only=True)
    assert str(loaded["checksum"]).startswith("sha256:")
    loaded["model"]["wte.weight"][3, 4] += 1e-3  # one changed weight, written back without a new checksum
    torch.save(loaded, path)
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(path)
    loaded = torch.load(save_checkpoint(tmp_path, 2, state), weights_only=True)
    loaded["step"] = 3
    torch.save(loaded, path)
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(byte_data, tmp_path, damage):
    out = tmp_path / "run"
    sets = ["train.max_steps=6", "train.ckpt_interval=3", "train.seed=3"]
    run(config(byte_data, tmp_path / "straight", *sets))
    run(config(byte_data, out, *sets))
    newest = out / "checkpoints" / "ckpt_0000006.pt"
    if damage == "flip":
        flip_bytes(newest)
    else:
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    res = cli("--config", "tiny", "--set", f"data.dir={byte_data}", f"train.out_dir={out}", "train.progress=false",
              "train.log_interval=1", "train.eval_interval=0", "train.threads=1", *sets, "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "skipping ckpt_0000006.pt" in res.stderr and "resumed from" in res.stderr, res.stderr
    assert "ckpt_0000003.pt at step 3" in res.stderr, res.stderr
    assert load_checkpoint(out)["step"] == 6  # step 6 written again, and it verifies
    straight = [r["loss"] for r in read_log(tmp_path / "straight" / "log.jsonl") if r["kind"] == "train"]
    resumed = [r["loss"] for r in read_log(out / "log.jsonl") if r["kind"] == "train"]
    assert resumed == straight


def test_sampling_a_run_folder_skips_a_corrupt_newest_checkpoint(tmp_path, capsys):
    save_checkpoint(tmp_path, 1, small_state(1))
    save_checkpoint(tmp_path, 2, small_state(2))
    flip_bytes(tmp_path / "checkpoints" / "ckpt_0000002.pt")
    assert load_checkpoint(tmp_path)["step"] == 1
    assert "skipping ckpt_0000002.pt" in capsys.readouterr().err
    (tmp_path / "checkpoints" / "ckpt_0000001.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="none of the 2 checkpoint"):
        load_checkpoint(tmp_path)


def test_partial_last_log_line_does_not_stop_resume(byte_data, tmp_path):
    out = tmp_path / "run"
    run(config(byte_data, out, "train.max_steps=4", "train.ckpt_interval=2"))
    with open(out / "log.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 5, "lo')  # killed mid-write
    run(config(byte_data, out, "train.max_steps=6", "train.ckpt_interval=2", "train.resume=true"))
    steps = [r["step"] for r in read_log(out / "log.jsonl") if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_disk_full_while_saving_is_one_line_with_path_and_free_space(tmp_path, monkeypatch):
    def full_disk(state, f):
        f.write(b"PK partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", full_disk)
    with pytest.raises(OSError) as info:
        save_checkpoint(tmp_path, 7, small_state())
    message = str(info.value)
    assert "\n" not in message and "ckpt_0000007.pt" in message and "MB free" in message, message
    assert not list((tmp_path / "checkpoints").iterdir())  # no temporary file left behind


# ---------------------------------------------------------------- one-line errors

def test_bad_model_config_and_tensor_shapes_are_named(tmp_path):
    state = small_state()
    bad = {**state, "model_config": {**state["model_config"], "n_experts": 8}}
    with pytest.raises(ValueError, match="unknown key.*n_experts"):
        load_model(bad, "cpu")
    weights = dict(state["model"])
    weights["wte.weight"] = torch.zeros(7, 32)
    with pytest.raises(ValueError, match=r"tensor wte\.weight has shape \(7, 32\)"):
        load_model({**state, "model": weights}, "cpu")
    nan = dict(state["model"])
    nan["wpe.weight"] = torch.full_like(nan["wpe.weight"], float("nan"))
    with pytest.raises(ValueError, match="wpe.weight holds .* NaN"):
        load_model({**state, "model": nan}, "cpu")


def test_resume_from_a_weights_only_checkpoint_is_one_line(byte_data, tmp_path):
    out = tmp_path / "run"
    cfg = config(byte_data, out, "train.max_steps=2", "train.resume=true")
    gcfg = GPTConfig(**{**dataclasses.asdict(GPTConfig()), "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 64,
                        "vocab_size": 256})
    save_checkpoint(out, 1, {"model": GPT(gcfg).state_dict(), "model_config": dataclasses.asdict(gcfg),
                             "step": 1, "optimizer": {}, "rng": []})
    with pytest.raises(ValueError, match="cannot be resumed: it has no data_position"):
        run(cfg)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("sample_errors")
    rng = random.Random(0)
    texts = [" ".join("".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 6))) for _ in range(200))
             for _ in range(20)]
    tok = Tokenizer.train(texts, 300, ["<|endoftext|>"])
    tok.save(str(d / "tok.tiktoken"))
    big = Tokenizer.train(texts, 400, ["<|endoftext|>"])
    big.save(str(d / "big.tiktoken"))
    state = small_state()
    state.update(tokenizer=str(d / "tok.tiktoken"), eos_id=299)
    save_checkpoint(d / "run", 1, state)
    nan = small_state()
    nan["model"]["blocks.0.mlp.fc.weight"][0] = float("nan")
    nan.update(tokenizer=str(d / "tok.tiktoken"), eos_id=299)
    save_checkpoint(d / "nan", 1, nan)
    return d


@pytest.mark.parametrize("args, message", [
    (["--temperature", "nan"], "--temperature must be a finite number"),
    (["--temperature", "inf"], "--temperature must be a finite number"),
    (["--top-k", "-3"], "--top-k must be >= 0"),
    (["--top-p", "nan"], "--top-p must be in (0, 1]"),
    (["--tokenizer", "{d}/big.tiktoken"], "has 400 ids but the model"),
    (["--checkpoint", "{d}/nan"], "NaN/inf"),
])
def test_sample_user_errors_are_one_line(sample_run, capsys, args, message):
    from train.sample import main

    argv = ["--checkpoint", str(sample_run / "run"), "--prompt", "select", "--max-new-tokens", "3"]
    argv += [a.format(d=sample_run) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err


def test_sample_still_works(sample_run, capsys):
    from train.sample import main

    assert main(["--checkpoint", str(sample_run / "run"), "--prompt", "select", "--max-new-tokens", "3",
                 "--top-k", "0", "--temperature", "0"]) == 0
    model, tok, state, path = load_for_inference(sample_run / "run", "cpu")
    assert path.name == "ckpt_0000001.pt" and tok.n_vocab == 300
