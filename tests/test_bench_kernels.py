"""bench.kernels runs end to end on a CPU, with "ours" on the kernels' own path (Triton's interpreter),
and its correctness column compares those kernels with PyTorch."""
import csv
import os

import pytest

from bench import kernels as bench_kernels
from kernels.backend import triton_interpreting
from tests.kernel_testing import gamma


@pytest.fixture(autouse=True)
def restore_environment():
    """bench.kernels.main() sets KERNELS_BACKEND and the LayerNorm variant variables for its run: put
    the environment back, or every later test in the session runs on whatever it left (the main job
    through the Triton interpreter, for one)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def reduction_length(shape: str) -> int:
    """The longest sum one output element of a case depends on, from its label ("M=64,N=256",
    "B=1,H=2,T=64,D=32"): every dimension but the batch-like ones."""
    dims = dict(kv.split("=") for kv in shape.split(","))
    return max(int(v) for k, v in dims.items() if k not in ("M", "B", "H"))


def test_cpu_smoke_run_compares_our_kernels_with_pytorch(tmp_path, capsys):
    if not triton_interpreting():
        pytest.skip("run with TRITON_INTERPRET=1: 'ours' is then the Triton kernels, not PyTorch")
    assert bench_kernels.main(["--device", "cpu", "--no-plots", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("kernels-*.csv")
    rows = list(csv.DictReader(path.open()))
    assert not [r for r in rows if r["metric"] == "failed"]  # a provider that raised is recorded, not fatal
    ops = {"layernorm", "cross_entropy", "linear_cross_entropy", "attention"}
    assert {r["op"] for r in rows} >= ops | {"card"}
    assert {r["provider"] for r in rows} >= {"ours[interpreter]", "reference", "pytorch"}
    ms = [r for r in rows if r["metric"] == "ms" and r["mode"] == "forward"]
    assert ms and all(float(r["value"]) > 0 for r in ms)
    errs = [r for r in rows if r["metric"] == "max_rel_err_vs_pytorch"]
    assert {r["op"] for r in errs if r["provider"] == "ours[interpreter]"} == ops
    # Error model (tests/kernel_testing.py): ours and PyTorch each build an output from at most C = 3
    # chained fp32 sums of at most K terms (mean then variance; logits then log-sum-exp; QK^T, softmax
    # row sum, PV), each off by at most gamma(K) times the sum of its terms' magnitudes, which is at most
    # A = 4 times the largest output for these unit-normal inputs (attention: the scores' sum
    # |q_i k_i| / sqrt(D) is ~3.6 at D=32 and the softmax turns a score's absolute error into a relative
    # one; LayerNorm, log-sum-exp: ~1). Two such results differ by at most 2 * C * A * gamma(K).
    for r in errs:
        bound = 2 * 3 * 4 * gamma(reduction_length(r["shape"]))
        assert float(r["value"]) <= bound, (r["op"], r["provider"], r["value"], bound)
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
