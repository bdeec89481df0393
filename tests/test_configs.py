"""Promises of train/ that no run checks by itself (issue 15): every shipped config loads and validates,
`train.dtype=auto` resolves per device, AdamW is fused only on CUDA, and MFU is the formula the README
states (tokens/s x FLOPs per token / peak), checked against a hand-computed FLOP count."""
import json

import pytest
import torch

from gpt.model import GPT, GPTConfig, PRESETS, build_model_config
from train.config import CONFIG_DIR, load_config
from train.loop import model_config_for, resolve_dtype
from train.optim import build_optimizer

SHIPPED = sorted(CONFIG_DIR.glob("*.json"))


def test_configs_are_shipped():
    # the presets the README and the recipes name; a glob over an empty folder would test nothing
    names = {p.stem for p in SHIPPED}
    assert {"tiny", "small", "gpt2-124m", "spider_pretrain", "spider_finetune"} <= names, names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_config_loads_and_validates(path):
    raw = json.loads(path.read_text())
    config = load_config(str(path))  # unknown sections/keys, wrong types and bad values raise ValueError
    by_name = load_config(path.stem)  # the preset name resolves to the same file
    assert by_name.to_dict() == config.to_dict()
    for section, values in raw.items():  # every value in the file reached the config
        for key, value in values.items():
            assert getattr(getattr(config, section), key) == value, f"{path.name}: {section}.{key}"
    # the model it describes can be built (shape only, no weights): heads divide the width, etc.
    gcfg = model_config_for(config, data_vocab=50257)
    assert gcfg.vocab_size % 64 == 0 and gcfg.vocab_size >= 50257
    with torch.device("meta"):
        model = GPT(gcfg)
    assert model.num_params() > 0


def test_dtype_auto_resolves_per_device(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_dtype("auto", cpu) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # e.g. a V100 or T4
    assert resolve_dtype("auto", cuda) == torch.float16
    assert [resolve_dtype(n, cpu) for n in ("bf16", "fp32")] == [torch.bfloat16, torch.float32]
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        resolve_dtype("fp16", cpu)
    assert load_config("tiny").train.dtype == "auto"  # the default that the resolution applies to


def test_fused_adamw_only_on_cuda():
    model = GPT(build_model_config("tiny", vocab_size=64))
    assert not build_optimizer(model, 1e-3, 0.1, (0.9, 0.95), "cpu").defaults["fused"]
    fused = build_optimizer(model, 1e-3, 0.1, (0.9, 0.95), "cuda")
    assert fused.defaults["fused"] is True and isinstance(fused, torch.optim.AdamW)
    assert [g["weight_decay"] for g in fused.param_groups] == [0.1, 0.0]


def test_flops_per_token_and_mfu_by_hand(tmp_path):
    """The tiny preset with a 256-byte vocabulary, counted by hand: token embedding (the tied LM head)
    256 x 32 = 8192; per block 2 LayerNorms 2 x 64, qkv 32 x 96 + 96 = 3168, attention projection
    32 x 32 + 32 = 1056, MLP 32 x 128 + 128 = 4224 and 128 x 32 + 32 = 4128: 12704, two blocks 25408;
    final LayerNorm 64. N = 33664 (the position table left out). FLOPs per token at T = 64:
    6 N + 12 x n_layer x n_embd x T = 201984 + 49152 = 251136."""
    import random

    import numpy as np

    from data.shards import write_dataset
    from train.log import read_log
    from train.loop import run

    assert PRESETS["tiny"] == dict(n_layer=2, n_head=2, n_embd=32, block_size=64)
    model = GPT(GPTConfig(**PRESETS["tiny"], vocab_size=256))
    assert model.num_params() == 33664 and model.flops_per_token(64) == 251136

    rng = random.Random(0)
    ids = np.array([rng.randrange(256) for _ in range(20_000)], np.uint8)
    write_dataset(tmp_path / "data", {"train": [(ids, None)]}, vocab_size=256, eos_id=0)
    peak = 3e11
    summary = run(load_config("tiny", [f"data.dir={tmp_path / 'data'}", f"train.out_dir={tmp_path / 'run'}",
                                       "train.max_steps=4", "train.log_interval=2", "train.ckpt_interval=-1",
                                       "train.eval_interval=0", "train.threads=1", f"train.peak_flops={peak}"]))
    records = read_log(tmp_path / "run" / "log.jsonl")
    start = next(r for r in records if r["kind"] == "run")
    assert start["flops_per_token"] == 251136 and start["peak_flops"] == peak
    assert start["dtype"] == "float32"  # dtype=auto on a CPU
    assert start["tokens_per_step"] == 4 * 64  # batch 4 x block 64 x 1 micro-step x 1 process
    logged = [r for r in records if r["kind"] == "train"]
    assert len(logged) == 2
    for r in logged:
        assert r["mfu"] == pytest.approx(r["tokens_per_s"] * 251136 / peak, rel=1e-12)
        # tokens/s is the interval's tokens over its wall time
        assert r["tokens_per_s"] == pytest.approx(r["steps"] * 256 / r["interval_s"], rel=1e-12)
    assert summary["mfu"] == logged[-1]["mfu"]
