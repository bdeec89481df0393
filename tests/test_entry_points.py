"""Entry points that no other test runs (issue 15): `python -m train --print-config`, the Spider recipe's
command line and its five steps (with the heavy functions replaced by recorders: what each step is
given is checked, nothing is trained), and `python -m bench.train` (its argument checks, and one tiny
CPU run of a single variant). Each calls main() in-process where a subprocess would add nothing.
`bash bench/gpu_suite.sh --dry-run` is tested in tests/test_gpu_suite.py."""
import csv
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- python -m train --print-config

def test_train_print_config_prints_the_resolved_config_and_trains_nothing(tmp_path, capsys):
    from train.__main__ import main

    out_dir = tmp_path / "never-created"
    rc = main(["--config", "tiny", "--set", "train.lr=0.01", "model.n_layer=3", f"train.out_dir={out_dir}",
               "--resume", "--print-config"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"model", "data", "train"}
    assert printed["train"]["lr"] == 0.01 and printed["model"]["n_layer"] == 3
    assert printed["train"]["resume"] is True  # --resume is part of the resolved config
    assert printed["train"]["batch_size"] == 4  # from configs/tiny.json, over the defaults (16)
    assert not out_dir.exists()
    # a bad override is still a one-line user error, not a printed config
    assert main(["--config", "tiny", "--set", "train.lr=-1", "--print-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error:") and "train.lr" in captured.err


# ---------------------------------------------------------------- python -m text2sql.spider_recipe

def test_spider_recipe_help(capsys):
    from text2sql.spider_recipe import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--spider-dir", "--scale", "--pretrain-steps", "--finetune-steps", "--holdout-databases"):
        assert option in text
    with pytest.raises(SystemExit) as exit_info:
        main(["--scale", "tpu"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("scale, prefix", [("cpu", "spider_"), ("h100", "spider_h100_")])
def test_spider_recipe_runs_its_five_steps_in_order(monkeypatch, tmp_path, scale, prefix):
    """The recipe's steps with prepare/run/evaluate replaced by recorders: each training stage gets its
    shipped config (loaded and validated for real) with the recipe's data folders, step counts and
    fine-tuning from the pretraining run; evaluation reads the fine-tuned run on the val split."""
    import data.prepare
    import text2sql.evaluate
    import train.loop
    from text2sql.spider_recipe import main

    calls = []
    monkeypatch.setattr(data.prepare, "prepare", lambda source, out, **kw: calls.append(("prepare", source, Path(out), kw)))
    monkeypatch.setattr(train.loop, "run", lambda config: calls.append(("train", config)))
    monkeypatch.setattr(text2sql.evaluate, "evaluate_checkpoint",
                        lambda run_dir, data_dir, split, **kw: calls.append(("evaluate", Path(run_dir), Path(data_dir), split)))
    work, runs = tmp_path / "work", tmp_path / "runs"
    (tmp_path / "spider").mkdir()
    (tmp_path / "spider" / "train.json").write_text("[]")  # (the recipe checks its inputs before step 1)
    text = tmp_path / "english.txt"
    text.write_text("Some English.\n")
    rc = main(["--spider-dir", str(tmp_path / "spider"), "--text", str(text), "--work", str(work), "--runs", str(runs), "--scale", scale,
               "--pretrain-steps", "7", "--finetune-steps", "3", "--block-size", "256", "--no-progress",
               "--set", "train.batch_size=2"])
    assert rc == 0
    assert [c[0] for c in calls] == ["prepare", "train", "prepare", "train", "evaluate"]
    (_, src1, out1, kw1), (_, pre), (_, src2, out2, kw2), (_, ft), (_, ev_run, ev_data, split) = calls
    assert (src1, out1, kw1["corpus_spider_dir"]) == ("sqltext", work / "spider-pretrain", str(tmp_path / "spider"))
    assert (src2, out2, kw2["block_size"]) == ("spider", work / "spider", 256)
    assert kw2["tokenizer"].startswith(str(work / "spider-pretrain"))  # the pretraining tokenizer
    assert kw1["holdout_databases"] == kw2["holdout_databases"] == 14  # the same databases held out
    from train.config import load_config

    for config, stage, steps in ((pre, "pretrain", 7), (ft, "finetune", 3)):
        shipped = load_config(prefix + stage)
        assert config.model.preset == shipped.model.preset and config.train.lr == shipped.train.lr
        assert config.train.max_steps == config.train.lr_decay_steps == steps
        assert config.train.batch_size == 2 and config.train.progress is False  # --set and --no-progress
    assert (pre.data.dir, pre.train.out_dir, pre.model.block_size) == (str(work / "spider-pretrain"),
                                                                      str(runs / "spider-pretrain"), 256)
    assert (ft.data.dir, ft.train.out_dir, ft.train.init_from) == (str(work / "spider"), str(runs / "spider"),
                                                                  str(runs / "spider-pretrain"))
    assert (ev_run, ev_data, split) == (runs / "spider", work / "spider", "val")


# ---------------------------------------------------------------- python -m bench.train

@pytest.mark.parametrize("args, message", [
    (["--seconds", "0"], "--seconds and --repeat must be positive"),
    (["--variants", "mine+compile"], "mine+compile"),
    (["--config", "no-such-config"], "neither a file nor a preset"),
    (["--set", "train.lrr=1"], "unknown config key"),
])
def test_bench_train_argument_errors(tmp_path, capsys, args, message):
    from bench.train import main

    assert main(["--config", "tiny", "--synthetic", "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err, err
    assert not (tmp_path / "out" / "train.csv").exists()


def test_bench_train_one_tiny_cpu_variant(tmp_path):
    """One eager variant of the tiny model on synthetic bytes for a second: a row with throughput and the
    MFU of the given peak, in train.csv and train.json."""
    from bench.train import main

    out = tmp_path / "out"
    rc = main(["--config", "tiny", "--synthetic", "--vocab", "256", "--variants", "torch+eager", "--seconds", "1",
               "--skip-logs", "1", "--log-interval", "2", "--out", str(out),
               "--set", "train.peak_flops=1e12", "train.threads=1", "train.device=cpu"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "train.csv")))
    assert [r["variant"] for r in rows] == ["torch+eager"] and rows[0]["status"] == "ok", rows
    row = rows[0]
    tokens_per_s, mfu = float(row["tokens_per_s"]), float(row["mfu"])
    assert tokens_per_s > 0 and float(row["peak_flops"]) == 1e12
    assert mfu == pytest.approx(tokens_per_s * 251136 / 1e12, rel=1e-6)  # tiny, vocab 256 (test_configs)
    assert json.loads((out / "train.json").read_text())


def test_bench_train_timeout_kills_the_run_and_its_children_and_keeps_the_log(tmp_path, monkeypatch):
    """A variant that outlives --seconds + --startup-timeout (a compile that never ends) is killed with
    its whole process group, also a child that holds its output open (torch.compile's workers), and
    its log keeps what it printed: the row says how far it got."""
    import os
    import sys
    import time
    from types import SimpleNamespace

    from bench import train as bench_train

    pid_file = tmp_path / "child.pid"
    fake = tmp_path / "python"
    fake.write_text(f"#!/usr/bin/env bash\necho compiling step 1\nsleep 300 &\necho $! > {pid_file}\nsleep 300\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    args = SimpleNamespace(seconds=0.5, startup_timeout=1.5, log_interval=5, config="tiny", set=[])
    t0 = time.time()
    row = bench_train.run_variant(args, "ours", True, tmp_path / "data", tmp_path)
    assert time.time() - t0 < 30
    assert row["status"].startswith("timeout after") and "compiling step 1" in row["status"], row
    assert "compiling step 1" in (tmp_path / "ours-compile-0.log").read_text()
    child = int(pid_file.read_text())
    for _ in range(50):  # the kill is asynchronous for the grandchild: give it a moment
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the run's child {child} outlived the time limit")
