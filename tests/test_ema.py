"""train/ema.py and its use in the training loop: the average follows its recurrence exactly (against a
float64 reference), a checkpoint carries it and inference loads it, and a run resumed half-way ends with the
same average as an uninterrupted one."""
import pytest
import torch

from tests.test_train import byte_data, config  # noqa: F401  (byte_data is a fixture)
from train.checkpoint import inference_weights, latest_checkpoint, load_checkpoint, load_model
from train.config import load_config
from train.ema import WeightEMA
from train.loop import run


def test_average_follows_the_recurrence_with_warmup():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Linear(5, 3))
    decay = 0.9
    ema = WeightEMA(model, decay)
    ref = {n: p.detach().double().clone() for n, p in model.named_parameters()}
    for t in range(40):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))  # a fresh random step: the average must lag and smooth it
        ema.update()
        d = min(decay, (1 + t) / (10 + t))
        for n, p in model.named_parameters():
            ref[n] = d * ref[n] + (1 - d) * p.detach().double()
    # fp32 accumulation of 40 lerps of O(5)-sized values: errors ~ 40 * 2^-24 * 5, far below 1e-4
    for n, r in ref.items():
        torch.testing.assert_close(ema.shadow[n].double(), r, rtol=0, atol=1e-4)
        assert (ema.shadow[n].double() - dict(model.named_parameters())[n].double()).abs().max() > 0.1


def test_swap_twice_restores_both():
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 4)
    ema = WeightEMA(model, 0.5)
    with torch.no_grad():
        model.weight.add_(torch.randn(4, 4))
    ema.update()
    w, s = model.weight.detach().clone(), ema.shadow["weight"].clone()
    ema.swap()
    assert torch.equal(model.weight, s) and torch.equal(ema.shadow["weight"], w)
    ema.swap()
    assert torch.equal(model.weight, w) and torch.equal(ema.shadow["weight"], s)


def test_config_rejects_a_decay_outside_0_1(tmp_path):
    with pytest.raises(ValueError, match="ema_decay"):
        load_config("tiny", [f"train.out_dir={tmp_path}", "train.ema_decay=1.0"])


def test_checkpoint_keeps_the_average_and_inference_uses_it(byte_data, tmp_path):  # noqa: F811
    run(config(byte_data, tmp_path / "r", "train.max_steps=12", "train.ema_decay=0.8", "train.ckpt_interval=0"))
    state = load_checkpoint(latest_checkpoint(tmp_path / "r"))
    assert set(state["ema"]) == set(state["model"])
    gap = max((state["ema"][k] - state["model"][k]).abs().max().item() for k in state["model"])
    assert gap > 1e-4  # training moved the weights; the average lags behind them
    assert inference_weights(state) is state["ema"]
    model = load_model(state, "cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(v, state["ema"][k]), k
    without = {k: v for k, v in state.items() if k != "ema"}
    assert inference_weights(without) is state["model"]


def test_resume_continues_the_same_average(byte_data, tmp_path):  # noqa: F811
    sets = ["train.ema_decay=0.8", "train.ckpt_interval=5", "train.keep_last=5", "data.val_split=none"]
    run(config(byte_data, tmp_path / "whole", "train.max_steps=10", *sets))
    run(config(byte_data, tmp_path / "half", "train.max_steps=5", *sets))
    run(config(byte_data, tmp_path / "half", "train.max_steps=10", "train.resume=true", *sets))
    whole = load_checkpoint(latest_checkpoint(tmp_path / "whole"))
    resumed = load_checkpoint(latest_checkpoint(tmp_path / "half"))
    assert whole["step"] == resumed["step"] == 10
    for k, v in whole["ema"].items():  # same arithmetic in the same order on 1 thread: equal to fp32 rounding
        torch.testing.assert_close(resumed["ema"][k], v, rtol=0, atol=2e-5, msg=k)
