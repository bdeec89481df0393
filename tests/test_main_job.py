"""The main job (python -m text2sql.demo) on a tiny budget: it prepares synthetic data, trains,
evaluates on the held-out test databases and prints examples with generated SQL and result rows; the
report it writes has the metrics. (Accuracy is not asserted here: a 15-step model is not meant to be
accurate. The real run's numbers are in the README.)"""
import json
from pathlib import Path

from text2sql import demo


def test_main_job_tiny_budget(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    args = ["--data", str(data), "--out", str(run), "--databases", "10", "--train-per-db", "24",
            "--eval-per-db", "6", "--vocab-size", "400", "--block-size", "128", "--questions-per-schema", "4",
            "--max-steps", "12", "--eval-limit", "6", "--show", "2", "--no-progress",
            "--set", "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "train.batch_size=4", "train.compile=false",
            "train.eval_iters=1", "train.warmup_steps=2", "train.log_interval=4"]
    assert demo.main(args) == 0
    out, err = capsys.readouterr()
    assert out.count("generated: ") == 4 and "exec acc" in out and "execution accuracy" in out  # 2 per test split
    assert "held-out evaluation" in out and "lookup baseline" in out
    report = json.loads((run / "eval_test_domains.json").read_text())
    assert json.loads((run / "eval_test_wordings.json").read_text())["summary"]["n"] == 6
    assert report["summary"]["n"] == 6 and report["step"] == 12
    assert {"execution_accuracy", "ci95", "baseline_accuracy", "exact_match", "valid_sql_rate", "by_shape",
            "by_hardness"} <= set(report["summary"])
    assert all(r["db_path"] and "synthetic" in r["db_path"] for r in report["examples"])
    # the default decode (which meets the speed target), and beam+exec scored beside it on the same questions
    from text2sql.decoding import DEFAULT_DECODE

    assert report["decode"] == DEFAULT_DECODE != "beam+exec"
    assert [r["decode"] for r in report["compare"]] == ["beam+exec"] and report["compare"][0]["n"] == 6
    assert out.count("beam+exec ") >= 2 and f"decoded {DEFAULT_DECODE}" in out
    # it ends with an ask command on a held-out-domain database that exists
    hint = err.rsplit("python -m text2sql.ask", 1)[1]
    db = hint.split("--db ")[1].split()[0]
    assert db == report["examples"][0]["db_path"] and Path(db).is_file()
    # a second run reuses the prepared data and starts training afresh
    args[args.index("--max-steps") + 1] = "2"
    args[args.index("--eval-limit") + 1] = "1"
    assert demo.main(args) == 0
    assert "reusing" in capsys.readouterr().err
    assert len(list((run / "checkpoints").glob("ckpt_*.pt"))) == 1
