"""train/: config errors, schedule, optimizer groups, loss falls (fp32, bf16), compile = eager,
2-process DDP = 1 process, SIGKILL + resume = uninterrupted, crash during a checkpoint write,
NaN stop, fine-tuning from a checkpoint on masked data.

The data is byte-level (vocab 256) text written straight into shards, so these tests need neither the
tokenizer nor ../shared."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from data.shards import write_dataset
from train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from train.config import load_config
from train.log import read_log
from train.loop import TrainingDiverged, run
from train.optim import build_optimizer, lr_at

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
WORDS = ("the cat dog sat ran on under a red big small house garden and then slowly quickly jumped "
         "over bird sang tree near river").split()


def sentences(rng: random.Random, n_chars: int) -> bytes:
    out = []
    while sum(map(len, out)) < n_chars:
        out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + ".\n")
    return "".join(out).encode()


@pytest.fixture(scope="module")
def byte_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("bytes")
    rng = random.Random(0)
    train = np.frombuffer(sentences(rng, 60_000), np.uint8)
    val = np.frombuffer(sentences(rng, 8_000), np.uint8)
    write_dataset(d, {"train": [(train, None)], "val": [(val, None)]}, vocab_size=256, eos_id=10)
    return d


def config(data_dir, out_dir, *sets):
    base = [f"data.dir={data_dir}", f"train.out_dir={out_dir}", "train.progress=false",
            "train.log_interval=1", "train.eval_interval=0", "train.ckpt_interval=-1", "train.threads=1"]
    return load_config("tiny", base + list(sets))


def train_losses(out_dir):
    return [r["loss"] for r in read_log(Path(out_dir) / "log.jsonl") if r["kind"] == "train"]


def cli(*args, timeout=120, env=None):
    return subprocess.run([PY, "-m", "train", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


# ---------------------------------------------------------------- config and pieces

@pytest.mark.parametrize("args, message", [
    (["--config", "tiny", "--set", "train.lrr=1"], "unknown config key 'train.lrr'"),
    (["--config", "tiny", "--set", "train.batch_size=big"], "train.batch_size: expected int"),
    (["--config", "no-such-config"], "neither a file nor a preset"),
    (["--config", "tiny", "--set", "data.dir=/nonexistent/data"], "prepare the data first"),
])
def test_cli_user_errors_are_one_line(args, message):
    res = cli(*args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.stderr


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"lr": 1e-3}, "optimizer": {}}')
    with pytest.raises(ValueError, match="unknown config section 'optimizer'"):
        load_config(str(bad))
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(str(bad))
    with pytest.raises(ValueError, match="train.dtype"):
        load_config("tiny", ["train.dtype=fp8"])
    cfg = load_config("tiny", ["train.lr=0.01", "model.n_layer=3", "train.compile=true", "data.dir=42"])
    assert (cfg.train.lr, cfg.model.n_layer, cfg.train.compile, cfg.data.dir) == (0.01, 3, True, "42")


def test_lr_schedule_warmup_then_cosine():
    lrs = [lr_at(s, 1.0, 0.1, 10, 110) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[60] == pytest.approx(0.55)  # halfway down the cosine
    assert lrs[110] == lrs[119] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_weight_decay_only_on_matrices():
    from gpt.model import GPT, build_model_config

    model = GPT(build_model_config("tiny", vocab_size=64))
    opt = build_optimizer(model, 1e-3, 0.1, (0.9, 0.95), "cpu")
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.dim() == 2 and name != "wpe.weight"), name
    assert opt.param_groups[1]["weight_decay"] == 0.0


def test_checkpoints_keep_last_and_reject_corrupt_files(tmp_path):
    state = {"model": {"w": torch.randn(4)}, "model_config": {}, "step": 0}
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, {**state, "step": step}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_0000003.pt", "ckpt_0000004.pt"]
    assert load_checkpoint(tmp_path)["step"] == 4  # a run folder means its newest checkpoint
    broken = tmp_path / "checkpoints" / "ckpt_0000009.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        load_checkpoint(broken)
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


# ---------------------------------------------------------------- training runs

@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_loss_falls(byte_data, tmp_path, dtype):
    summary = run(config(byte_data, tmp_path, f"train.dtype={dtype}", "train.max_steps=40",
                         "train.log_interval=10"))
    losses = train_losses(tmp_path)
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.5, losses  # from ~5.5 (uniform over 256 bytes) well down
    assert summary["val_loss"] is not None and summary["val_loss"] < 4.0
    assert (tmp_path / "loss.png").stat().st_size > 1000


@pytest.mark.slow
def test_compile_matches_eager(byte_data, tmp_path):
    sets = ["train.max_steps=5", "data.val_split=none"]
    run(config(byte_data, tmp_path / "eager", *sets))
    run(config(byte_data, tmp_path / "compiled", "train.compile=true", *sets))
    eager, compiled = train_losses(tmp_path / "eager"), train_losses(tmp_path / "compiled")
    assert len(eager) == len(compiled) == 5
    np.testing.assert_allclose(compiled, eager, rtol=2e-4)
    assert compiled[-1] < compiled[0]


# Runs `python -m train` under torchrun with a DDP communication hook that counts the gradient
# all-reduces of the first bucket (one per synchronised backward) and writes the count per rank.
COUNTING_TRAIN = """
import os, sys
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel
import train.loop
from train.__main__ import main

synced = []

class CountingDDP(DistributedDataParallel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

        def hook(process_group, bucket):
            if bucket.index() == 0:
                synced.append(1)
            return allreduce_hook(process_group, bucket)

        self.register_comm_hook(None, hook)

train.loop.DistributedDataParallel = CountingDDP
rc = main(sys.argv[1:])
with open(os.environ["ALLREDUCE_COUNT"] + os.environ["RANK"], "w") as f:
    f.write(str(len(synced)))
sys.exit(rc)
"""


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process(byte_data, tmp_path):
    """gloo DDP, 2 ranks x batch 2 == 1 process x batch 4: same weights after 6 AdamW steps. Without the
    gradient all-reduce each rank would drift by ~lr per step (1e-3), far above the tolerance. With
    grad_accum=2, the first micro-step of each step runs under `no_sync`: a comm hook counts exactly one
    all-reduce per optimizer step (an all-reduce on every micro-step gives the same weights, twice the
    communication)."""
    steps, accum = 6, 2
    sets = [f"data.dir={byte_data}", "train.progress=false", "train.eval_interval=0", "train.ckpt_interval=0",
            f"train.max_steps={steps}", "train.warmup_steps=2", f"train.grad_accum={accum}"]
    script = tmp_path / "counting_train.py"
    script.write_text(COUNTING_TRAIN)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALLREDUCE_COUNT": str(tmp_path / "allreduces_rank")}
    res = subprocess.run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
                          "--config", "tiny", "--set", *sets, "train.batch_size=2", f"train.out_dir={tmp_path / 'ddp'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    counts = [int((tmp_path / f"allreduces_rank{r}").read_text()) for r in range(2)]
    assert counts == [steps, steps], f"gradient all-reduces per rank {counts}, expected one per step ({steps})"
    run(load_config("tiny", sets + ["train.batch_size=4", f"train.out_dir={tmp_path / 'one'}", "train.threads=1"]))
    two = load_checkpoint(tmp_path / "ddp")
    one = load_checkpoint(tmp_path / "one")
    assert two["step"] == one["step"] == 6 and len(two["rng"]) == 2
    for name, w in one["model"].items():
        torch.testing.assert_close(two["model"][name], w, rtol=0, atol=2e-5, msg=name)
    # the steps moved the weights far more than the tolerance, so the comparison means something
    from gpt.model import GPT, GPTConfig

    torch.manual_seed(1337)
    init = GPT(GPTConfig(**one["model_config"])).state_dict()
    assert max((init[n] - w).abs().max().item() for n, w in one["model"].items()) > 1e-3


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_loss_curve(byte_data, tmp_path):
    steps, sets = 120, ["train.ckpt_interval=20", "train.eval_interval=50"]
    out = tmp_path / "killed"
    args = ["--config", "tiny", "--set", f"data.dir={byte_data}", f"train.out_dir={out}", "train.progress=false",
            "train.log_interval=1", f"train.max_steps={steps}", "train.threads=1", *sets]
    proc = subprocess.Popen([PY, "-m", "train", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "ckpt_0000020.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    logged = train_losses(out)
    assert proc.returncode == -signal.SIGKILL and len(logged) < steps, "the run was not interrupted"
    resumed = cli(*args, "--resume")
    assert resumed.returncode == 0 and "resumed from" in resumed.stderr, resumed.stderr[-2000:]

    run(config(byte_data, tmp_path / "straight", f"train.max_steps={steps}", *sets))
    straight = train_losses(tmp_path / "straight")
    assert len(straight) == steps
    assert train_losses(out) == straight  # bit for bit: weights, Adam moments, data position, RNG


def test_kill_during_checkpoint_write_keeps_the_previous_one(tmp_path):
    script = f"""
import os, signal, torch
from train import checkpoint as ck
ck.save_checkpoint({str(tmp_path)!r}, 1, {{"model": {{"w": torch.arange(5.0)}}, "model_config": {{}}, "step": 1}})
def dying_save(state, f):  # half a file on disk, then the process is gone
    f.write(b"PK\\x03\\x04 half a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
ck.torch.save = dying_save
ck.save_checkpoint({str(tmp_path)!r}, 2, {{"model": {{"w": torch.zeros(5)}}, "model_config": {{}}, "step": 2}})
"""
    res = subprocess.run([PY, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == -signal.SIGKILL
    assert list((tmp_path / "checkpoints").glob(".ckpt_0000002.pt.tmp-*"))  # it died mid-write
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_0000001.pt"]
    state = load_checkpoint(tmp_path)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.arange(5.0))
    save_checkpoint(tmp_path, 3, state)  # the next save clears the dead process's temporary file
    assert not list((tmp_path / "checkpoints").glob(".ckpt_*"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(byte_data, tmp_path):
    cfg = config(byte_data, tmp_path, "train.lr=1e30", "train.min_lr=0", "train.grad_clip=0",
                 "train.warmup_steps=0", "train.ckpt_interval=1", "train.max_steps=10")
    with pytest.raises(TrainingDiverged, match="the loss became (nan|inf).*Last good checkpoint: .*ckpt_0000001.pt"):
        run(cfg)
    good = load_checkpoint(tmp_path)
    assert good["step"] == 1
    assert all(torch.isfinite(w).all() for w in good["model"].values())


def test_finetune_learns_only_answers_with_a_fresh_optimizer(byte_data, tmp_path):
    """Pretrain, then fine-tune one AdamW step on (prompt, answer) pairs. The prompts are written in
    bytes >= 128 (an alphabet of their own) and the answers in ASCII, so which targets may be learned is
    known from the tokens alone, independently of the masks in the shards. Then, with weight decay and
    clipping off, a FRESH AdamW's first step moves each weight by exactly -lr * g / (|g| + eps), with g
    the gradient of the loss over the ANSWER targets at the pretrained weights:
    - a loss that also learned the prompt targets has another g (other signs), and another loss;
    - optimizer state carried over from the pretraining checkpoint (step 10, its moments) gives
      m_hat / (sqrt(v_hat) + eps) != g / |g|, and a step count of 11."""
    from data.shards import BatchLoader, ShardDataset
    from gpt.model import GPT, GPTConfig
    from tests.kernel_testing import U32, gamma

    run(config(byte_data, tmp_path / "pre", "train.max_steps=10", "train.ckpt_interval=0"))
    rng = random.Random(1)
    docs = []
    for _ in range(300):
        prompt = bytes(b + 128 for b in sentences(rng, 30))
        answer = sentences(rng, 20)
        docs.append((np.frombuffer(prompt + answer, np.uint8),
                     np.r_[np.zeros(len(prompt), np.uint8), np.ones(len(answer), np.uint8)]))
    write_dataset(tmp_path / "pairs", {"train": docs}, vocab_size=256, eos_id=10)
    write_dataset(tmp_path / "unmasked", {"train": [(ids, None) for ids, _ in docs]}, vocab_size=256, eos_id=10)
    pretrained = load_checkpoint(tmp_path / "pre")
    assert all(int(s["step"]) == 10 for s in pretrained["optimizer"]["state"].values())
    lr, eps = 1e-3, 1e-8  # eps: torch.optim.AdamW's default, which train/optim.py keeps
    cfg = config(tmp_path / "pairs", tmp_path / "ft", f"train.init_from={tmp_path / 'pre'}", "train.max_steps=1",
                 f"train.lr={lr}", "train.min_lr=0", "train.warmup_steps=0", "train.weight_decay=0",
                 "train.grad_clip=0", "train.ckpt_interval=0")
    summary = run(cfg)
    tuned = load_checkpoint(tmp_path / "ft")
    assert np.isfinite(summary["loss"]) and summary["val_loss"] is None  # no val split in this data
    assert all(int(s["step"]) == 1 for s in tuned["optimizer"]["state"].values())  # a fresh AdamW

    # the batch the trainer saw, with every target (the unmasked copy windows and shuffles alike)
    T = pretrained["model_config"]["block_size"]
    x, y_all = BatchLoader(ShardDataset(tmp_path / "unmasked", "train"), cfg.train.batch_size, T,
                           seed=cfg.train.seed).next()
    x_masked, y_masked = BatchLoader(ShardDataset(tmp_path / "pairs", "train"), cfg.train.batch_size, T,
                                     seed=cfg.train.seed).next()
    answers = torch.where(y_all < 128, y_all, -100)
    assert torch.equal(x_masked, x) and torch.equal(y_masked, answers)
    assert 0 < (answers >= 0).sum() < answers.numel() - 50  # both kinds of targets in the batch

    model = GPT(GPTConfig(**pretrained["model_config"]))
    model.load_state_dict(pretrained["model"])
    loss = model(x, answers)
    loss.backward()
    # fp32 evaluations of the same model in another order of operations agree within a few gamma(n) of
    # the loss (n = the widest sum: 4 x n_embd in the MLP, or the 256-byte softmax); the loss over all
    # targets (prompt bytes too) is hundreds of times that far away
    n = max(4 * model.config.n_embd, 256)
    bound = 16 * gamma(n) * loss.item()
    assert abs(summary["loss"] - loss.item()) < bound
    assert abs(model(x, y_all).item() - loss.item()) > 100 * bound

    checked = 0
    for name, p in model.named_parameters():
        w0, w1, g = pretrained["model"][name], tuned["model"][name], p.grad
        # w1 = fl(w0 - lr * fl(g / (|g| + eps))): the ratio to within its 2 roundings, the update's and
        # the subtraction's rounding (2u of |w0| + lr), and the gradient's own rounding error, which moves
        # g / (|g| + eps) by at most its relative error (taken <= 1e-3 where |g| >= 1e-3 max|g|)
        update = w0 - w1
        assert (update.abs() <= lr * (1 + 4 * U32) + 2 * U32 * (w0.abs() + lr)).all(), name  # never past lr
        big = (g.abs() >= 1e-3 * g.abs().max()) & (g.abs() > 1e4 * eps)
        want = lr * g / (g.abs() + eps)
        err = (update - want).abs()
        assert (err[big] <= 1e-3 * lr + 2 * U32 * (w0.abs()[big] + lr)).all(), \
            f"{name}: AdamW's first step off by {err[big].max().item():.3g} (lr {lr})"
        checked += int(big.sum())
    assert checked > 0.5 * sum(p.numel() for p in model.parameters())


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, compiled", [("bf16", True), ("fp16", False)])
def test_gpu_training_loss_falls(byte_data, tmp_path, dtype, compiled):
    """One GPU: bf16 autocast + torch.compile with our kernels, and fp16 with the GradScaler."""
    summary = run(config(byte_data, tmp_path, "train.device=cuda", f"train.dtype={dtype}",
                         f"train.compile={str(compiled).lower()}", "train.max_steps=40", "train.log_interval=10",
                         "train.batch_size=8", "train.ckpt_interval=0"))
    losses = train_losses(tmp_path)
    assert losses[-1] < losses[0] - 0.5, losses
    state = load_checkpoint(tmp_path)
    assert (state["scaler"] is not None) == (dtype == "fp16")
    assert summary["tokens_per_s"] > 0


# ---------------------------------------------------------------- the data's facts (meta.json)

def test_block_size_comes_from_the_data_and_a_disagreeing_config_is_one_line(tmp_path):
    """Data packed for a block size (text-to-SQL examples, window by window) fixes the model's context:
    training takes it from meta.json, and a config that says otherwise stops with both values named;
    the checkpoint carries the data's facts on to evaluation and sampling."""
    rng = random.Random(1)
    ids = np.frombuffer(sentences(rng, 20_000), np.uint8)
    data = tmp_path / "packed"
    write_dataset(data, {"train": [(ids, None)]}, vocab_size=256, eos_id=10, block_size=48, max_sql_tokens=16)
    run(config(data, tmp_path / "run", "train.max_steps=1", "train.ckpt_interval=0"))
    state = load_checkpoint(tmp_path / "run")
    assert state["model_config"]["block_size"] == 48
    assert state["data_meta"]["block_size"] == 48 and state["data_meta"]["max_sql_tokens"] == 16
    res = cli("--config", "tiny", "--set", f"data.dir={data}", f"train.out_dir={tmp_path / 'r2'}",
              "model.block_size=64", "train.max_steps=1")
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "64" in last and "48" in last and "block_size" in last, res.stderr


# ---------------------------------------------------------------- under load (issue 12)

def test_default_threads_leave_a_core_free(monkeypatch):
    from train import ddp

    for cores, local_world, expected in [(1, 1, 1), (2, 1, 1), (2, 2, 1), (16, 1, 15), (16, 2, 7), (64, 8, 7)]:
        monkeypatch.setattr(ddp, "usable_cores", lambda cores=cores: cores)
        assert ddp.default_threads(local_world) == expected, (cores, local_world)


def test_cpu_mfu_is_not_guessed(byte_data, tmp_path):
    from train.log import peak_flops

    assert peak_flops(torch.device("cpu")) == (None, "no CPU peak (set train.peak_flops for MFU)")
    assert peak_flops(torch.device("cpu"), 1e12)[0] == 1e12
    summary = run(config(byte_data, tmp_path / "a", "train.max_steps=2"))
    assert summary["mfu"] is None
    assert all(r["mfu"] is None for r in read_log(tmp_path / "a" / "log.jsonl") if r["kind"] == "train")
    summary = run(config(byte_data, tmp_path / "b", "train.max_steps=2", "train.peak_flops=1e12"))
    assert summary["mfu"] > 0
