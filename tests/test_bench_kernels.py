"""bench.kernels runs end to end on a CPU (smoke check of the harness, PyTorch backend for "ours")."""
import csv

import pytest

from bench import kernels as bench_kernels


def test_cpu_smoke_run_writes_csv(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # "ours" = the PyTorch path: seconds, not minutes
    monkeypatch.setenv("KERNELS_BACKEND", "torch")
    assert bench_kernels.main(["--device", "cpu", "--no-plots", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("kernels-*.csv")
    rows = list(csv.DictReader(path.open()))
    assert {r["op"] for r in rows} >= {"card", "layernorm", "cross_entropy", "linear_cross_entropy"}
    assert {r["provider"] for r in rows} >= {"ours[torch]", "reference", "pytorch"}
    ms = [r for r in rows if r["metric"] == "ms" and r["mode"] == "forward"]
    assert ms and all(float(r["value"]) > 0 for r in ms)
    errs = [float(r["value"]) for r in rows if r["metric"] == "max_rel_err_vs_pytorch"]
    assert errs and max(errs) < 1e-4  # every provider computes the same thing as PyTorch
    assert "card:" in capsys.readouterr().out


def test_unknown_op_is_a_one_line_error(capsys):
    assert bench_kernels.main(["--op", "nope", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown --op" in err and "Traceback" not in err


def test_card_measurement_on_cpu():
    card = bench_kernels.measure_card("cpu", copy_mib=8, matmul_n=64)
    assert card["copy_GB/s"] > 0 and card["bf16_matmul_TFLOP/s"] > 0


@pytest.mark.cuda
def test_card_measurement_on_gpu():
    card = bench_kernels.measure_card("cuda")
    assert card["copy_GB/s"] > 100 and card["bf16_matmul_TFLOP/s"] > 10
