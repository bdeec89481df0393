"""The GPU suite's CPU-checkable parts: its plan, the attention sweep's decision logic, the decisions
file it writes, the SDPA baseline bookkeeping, the pinned-SDPA training launcher, bench.explain,
and that nothing on its path imports `datasets` (the GPU machine has none)."""
import importlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels.backend import triton_interpreting

ROOT = Path(__file__).resolve().parents[1]
attn_mod = importlib.import_module("kernels.attention")


@pytest.fixture(autouse=True)
def restore_environment():
    """The bench CLIs called in-process here set KERNELS_* variables for their run: put them back."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "SUITE_SKIP")}
    env.update(extra)
    return env


def test_dry_run_plan_fits_the_budget():
    res = subprocess.run(["bash", "bench/gpu_suite.sh", "--dry-run"], cwd=ROOT, capture_output=True,
                         text=True, env=_env(), timeout=60)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for step in ("env", "build", "cuda_attention_d128", "cuda_attention_d64", "cuda_attention_rest",
                 "cuda_kernels", "sweep_warm", "explain", "train_warm_ours", "train_warm_torch", "sweep",
                 "tuned_check", "kernels", "profile", "train"):
        assert re.search(rf"\[dry-run\] +(\| )?{step} \(limit \d+s", out), f"step {step} not planned:\n{out}"
    # The limits are worst cases that the overall deadline (480 s) cuts; their sum still has to leave the
    # device call (600 s at most) room for the machine's start-up work and the packing.
    total = int(re.search(r"total of the time limits: (\d+)s", out).group(1))
    assert total <= 560, out
    assert "--write-tuned" in out and "KERNELS_TUNED" not in out.split("[dry-run] sweep ")[0]
    assert "-m cuda" in out and "--continue-on-collection-errors" in out


CUDA_FAKE_PYTHON = r"""#!/usr/bin/env bash
# python for the cuda pytest step: exit status FAKE_NO_CUDA answers torch.cuda.is_available() (python -c);
# as pytest it prints FAKE_SUMMARY and exits FAKE_RC
if [ "$1" = "-c" ]; then exit "$FAKE_NO_CUDA"; fi
echo "$*" >> "$FAKE_LOG"
echo "tests/test_x.py::test_a PASSED"
echo "$FAKE_SUMMARY"
exit "$FAKE_RC"
"""


@pytest.mark.parametrize("no_cuda, summary, pytest_rc, step_rc", [
    (0, "======= 3 passed in 1.00s =======", 0, 0),
    (0, "======= 3 passed, 2 deselected in 1.00s =======", 0, 0),
    (0, "======= 3 passed, 1 skipped in 1.00s =======", 0, 4),
    (0, "======= 62 skipped in 1.00s =======", 0, 4),            # what CPU-only torch gives
    (0, "======= 1 failed, 1 skipped in 1.00s =======", 1, 1),
    (1, "======= 3 passed in 1.00s =======", 0, 3),             # torch sees no GPU: pytest never runs
])
def test_cuda_pytest_step_fails_without_cuda_or_when_anything_skips(tmp_path, no_cuda, summary, pytest_rc,
                                                                    step_rc):
    fake = tmp_path / "python"
    fake.write_text(CUDA_FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    res = subprocess.run(["bash", "bench/gpu_suite.sh", "--cuda-pytest", str(fake), "-m", "pytest", "-m", "cuda",
                          "-v", "tests/test_layernorm.py"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=_env(FAKE_NO_CUDA=str(no_cuda), FAKE_SUMMARY=summary, FAKE_RC=str(pytest_rc),
                                  FAKE_LOG=str(log)))
    assert res.returncode == step_rc, res.stdout + res.stderr
    if no_cuda:
        assert "torch.cuda.is_available() is False" in res.stdout and not log.exists()
    else:
        assert log.read_text().split() == ["-m", "pytest", "-m", "cuda", "-v", "tests/test_layernorm.py"]
        assert summary in res.stdout  # the step's log keeps pytest's output
    if step_rc == 4:
        assert "skipped" in res.stdout.splitlines()[-1]


def test_every_cuda_pytest_step_goes_through_the_check():
    res = subprocess.run(["bash", "bench/gpu_suite.sh", "--dry-run"], cwd=ROOT, capture_output=True,
                         text=True, env=_env(), timeout=60)
    steps = [line for line in res.stdout.splitlines() if " -m pytest" in line]
    assert len(steps) == 6, res.stdout  # 5 in the prepare group, tuned_check
    assert all("--cuda-pytest" in line and "-m cuda" in line for line in steps), steps


def test_dry_run_rejects_unknown_options():
    res = subprocess.run(["bash", "bench/gpu_suite.sh", "--bogus"], cwd=ROOT, capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 2 and "unknown option" in res.stderr


# ----------------------------------------------------------------------------------------------
# The sweep's decision logic, driven through the interpreter with a fake timer
# ----------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:overflow encountered in exp2:RuntimeWarning")
def test_sweep_decides_and_checks_every_variant(monkeypatch):
    if not triton_interpreting():
        pytest.skip("run with TRITON_INTERPRET=1 to drive the sweep through the Triton interpreter")
    from bench import attention_cases as ac

    monkeypatch.setenv("KERNELS_BACKEND", "triton")
    monkeypatch.setattr(ac, "SWEEP_CANDIDATES", {64: {"forward": [(64, 64, 4, 3)], "dkdv": [(64, 64, 4, 3)],
                                                      "dq": [(64, 64, 4, 3)]}})
    # Plan order: table, reverse, longest_first, forward, dkdv, dq candidates, atomic dQ, then the
    # combination of the winners.
    times = iter([(10.0, 4.0), (9.0, 4.0), (9.9, 4.0), (10.0, 3.0), (10.5, 4.0), (8.5, 4.0), (12.5, 4.0),
                  (8.0, 3.0)])
    calls = []

    def fake_bench(fb, fwd, grads):
        calls.append(1)
        return next(times)
    lines = []
    res = ac.sweep_head_dim(64, 128, torch.float16, deadline=float("inf"), log=lines.append, device="cpu",
                            capability=(9, 0), heads=(1, 2), bench=fake_bench)
    assert len(calls) == 8, lines
    assert res["entry"] == {"forward": [64, 64, 4, 3], "dq": [64, 64, 4, 3], "schedule": "reverse",
                            "atomic_dq_speedup": 0.8}, lines
    assert all(r["status"] == "ok" and r["max_rel_diff"] < 2e-2 for r in res["results"].values()), res
    assert res["chosen_ms"] == 8.0 and res["table_ms"] == 10.0


def test_sweep_plan_covers_orders_and_candidates():
    from bench import attention_cases as ac

    for d in ac.SWEEP_CANDIDATES:
        table = attn_mod.pick_configs((9, 0), d, torch.bfloat16)
        plan = ac.sweep_plan(d, table)
        labels = [label for label, _ in plan]
        assert labels[:3] == ["table", "schedule=reverse", "schedule=longest_first"]
        assert labels[-1] == ac.ATOMIC and len(set(labels)) == len(labels)
        n_cands = sum(1 for kind, tiles in ac.SWEEP_CANDIDATES[d].items() for t in tiles
                      if attn_mod.TileConfig(*t) != getattr(table, kind))
        assert len(plan) == 4 + n_cands
        for t in (t for tiles in ac.SWEEP_CANDIDATES[d].values() for t in tiles):
            assert attn_mod._tile(list(t), None) == attn_mod.TileConfig(*t)  # loadable as a decision


def test_write_tuned_merges_and_is_readable(monkeypatch, tmp_path):
    from bench import attention_cases as ac

    base = tmp_path / "base.json"
    base.write_text(json.dumps({"attention": {"sm_80": {"64": {"schedule": "reverse"}},
                                              "sm_90": {"32": {"schedule": "reverse"}}}}))
    out = tmp_path / "out" / "tuned.json"
    ac.write_tuned(out, "sm_90", {128: {"dkdv": [32, 128, 8, 3]}, 64: {}}, {"device": "test"}, base)
    data = json.loads(out.read_text())
    assert data["attention"]["sm_80"] == {"64": {"schedule": "reverse"}}            # other cards kept
    assert data["attention"]["sm_90"]["128"] == {"dkdv": [32, 128, 8, 3]}
    assert data["attention"]["sm_90"]["64"] == {} and "32" in data["attention"]["sm_90"]
    assert data["measured"]["sm_90"] == {"device": "test"}
    monkeypatch.setenv("KERNELS_TUNED", str(out))
    monkeypatch.delenv("KERNELS_ATTENTION_SCHEDULE", raising=False)
    attn_mod._load_tuned.cache_clear()
    assert attn_mod.pick_configs((9, 0), 128, torch.bfloat16).dkdv == attn_mod.TileConfig(32, 128, 8, 3)
    assert attn_mod.pick_configs((9, 0), 64, torch.bfloat16) == attn_mod.pick_configs((9, 0), 64, torch.bfloat16)


def test_sweep_outputs_and_the_changed_marker(tmp_path, monkeypatch):
    """tuned_changed (the suite's cue for tuned_check) appears only when a launch changed."""
    import argparse

    from bench import attention_cases as ac

    monkeypatch.setattr(attn_mod, "TUNED_PATH", tmp_path / "absent.json")
    args = argparse.Namespace(json=tmp_path / "sweep.json", write_tuned=tmp_path / "tuned.json")
    ac._write_outputs(args, "sm_90", {128: {"atomic_dq_speedup": 1.1}, 64: {}}, {"x": 1})
    assert not (tmp_path / "tuned_changed").exists()
    assert json.loads((tmp_path / "tuned.json").read_text())["attention"]["sm_90"]["128"] == {"atomic_dq_speedup": 1.1}
    ac._write_outputs(args, "sm_90", {128: {"schedule": "reverse", "atomic_dq_speedup": 1.1}}, {"x": 1})
    assert json.loads((tmp_path / "tuned_changed").read_text()) == {"128": {"schedule": "reverse"}}
    assert json.loads((tmp_path / "sweep.json").read_text()) == {"x": 1}
    ac._write_outputs(args, "sm_90", {128: {}}, {"x": 2})
    assert not (tmp_path / "tuned_changed").exists()


# ----------------------------------------------------------------------------------------------
# SDPA baseline bookkeeping (bench.kernels / bench.attention_cases)
# ----------------------------------------------------------------------------------------------

def test_sdpa_info_records_unavailable_backends_without_raising():
    from bench import attention_cases as ac

    info = ac.sdpa_info(1, 2, 32, 16, torch.float32, "cpu")
    assert set(info["backends"]) == set(ac.SDPA_BACKENDS)
    assert info["default_backend"] in ("flash", "efficient", "cudnn", "math")
    # on CPU at least cuDNN cannot run: recorded as unavailable, not raised
    assert info["backends"]["sdpa-cudnn"].startswith("unavailable")


def test_sdpa_report_and_target_lines(monkeypatch):
    from bench import attention_cases as ac
    from bench import kernels as bk

    shape = ac.shape_label(16, 32, 1024, 64)
    rows = [dict(op="attention", shape=shape, mode="forward+backward", provider=p, metric=m, value=v)
            for p, m, v in [("ours", "ms", "10"), ("ours", "TFLOP/s", "300"), ("pytorch", "ms", "12"),
                            ("sdpa-flash", "ms", "12"), ("sdpa-cudnn", "ms", "8"), ("reference", "ms", "100")]]
    monkeypatch.setattr(bk, "SDPA_INFO", {shape: {"default_backend": "flash",
                                                 "backends": {"sdpa-flash": "ok", "sdpa-cudnn": "ok",
                                                              "sdpa-efficient": "unavailable: x"}}})
    rep = bk.sdpa_report(rows)
    assert rep["shapes"][shape]["fastest_fwd_bwd"] == "sdpa-cudnn"
    assert rep["training_baseline"] == "cudnn" and rep["training_baseline_shape"] == shape
    assert math.isnan(rep["shapes"][shape]["fwd_bwd_ms"]["sdpa-efficient"])
    lines = bk.sdpa_lines(rows)
    assert any("default picks flash" in ln and "unavailable: sdpa-efficient" in ln for ln in lines)
    (line,) = ac.target_lines(rows, "ours", bk._value)
    assert "1.20x SDPA-flash's speed" in line and "0.80x SDPA-cuDNN's" in line


def test_layernorm_target_line_reports_kernel_time_beside_wall_time():
    """The LayerNorm target line judges one call's wall time (do_bench) and, where bench.kernels measured
    it (GPU runs), the summed GPU kernel time: on the H200 the first was host-bound."""
    from bench import kernels as bk

    shape, fb = "M=16384,N=768", "forward+backward"
    rows = [dict(op="layernorm", shape=shape, mode=fb, provider=p, metric=m, value=v)
            for p, m, v in [("ours", "ms", "1.0"), ("ours", "GB/s", "200"), ("pytorch", "ms", "0.25"),
                            ("ours", "gpu_ms", "0.1"), ("ours", "gpu_GB/s", "2000"), ("pytorch", "gpu_ms", "0.2")]]
    text = bk.summary(rows, {"copy_GB/s": 4000.0}, "ours")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("target layernorm")]
    assert "speed-up vs pytorch 0.25x" in line and "5% of copy bandwidth" in line
    assert "GPU kernel time alone: 2.00x, 50% of copy bandwidth" in line
    text = bk.summary([r for r in rows if not r["metric"].startswith("gpu")], {"copy_GB/s": 4000.0}, "ours")
    assert "GPU kernel time" not in text


def test_bench_kernels_cpu_smoke_with_op_list(tmp_path, monkeypatch, capsys):
    """One op by --op, on the PyTorch path (main() picks it when the interpreter is off; in-process, the
    interpreter's state does not matter to that path). tests/test_bench_kernels.py runs every op on
    the kernels' own path."""
    from bench import kernels as bench_kernels

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setenv("KERNELS_BACKEND", "torch")  # main() sets it; restored after the test
    assert bench_kernels.main(["--device", "cpu", "--op", "attention", "--no-plots", "--budget-s", "600",
                               "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("kernels-*.csv")
    assert {r.split(",")[0] for r in path.read_text().splitlines()[1:]} == {"card", "attention"}
    assert "ours = ours[torch]" in capsys.readouterr().out
    assert bench_kernels.main(["--op", "attention,nope"]) == 2
    assert "nope" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Nothing on the suite's path needs `datasets`; the pinned-SDPA training launcher; bench.explain
# ----------------------------------------------------------------------------------------------

@pytest.fixture
def no_datasets(tmp_path):
    """A PYTHONPATH on which `import datasets` fails, as on the GPU machine (inherited by children)."""
    fake = tmp_path / "blocked" / "datasets"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('datasets is not installed on the GPU machine')\n")
    return os.pathsep.join([str(fake.parent), str(ROOT)])


def test_suite_modules_import_without_datasets(no_datasets):
    code = ("import bench.train, bench.kernels, bench.attention_cases, bench.explain, bench.profile_gpu, train.loop, "
            "train.config, data.shards, gpt.model, kernels; import train.__main__")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180,
                         env=_env(PYTHONPATH=no_datasets))
    assert res.returncode == 0, res.stderr[-3000:]


def test_pinned_sdpa_training_run_without_datasets(no_datasets, tmp_path, monkeypatch, capsys):
    """bench.train end to end on CPU, with the baseline's SDPA pinned (the launcher the suite uses),
    on synthetic data, with `datasets` unimportable in the training process it starts (bench.train's
    own imports are checked without `datasets` by test_suite_modules_import_without_datasets)."""
    from bench import train as bench_train

    monkeypatch.setenv("PYTHONPATH", no_datasets)  # inherited by the training process
    for name in ("OUT", "SUITE_SKIP"):
        monkeypatch.delenv(name, raising=False)
    rc = bench_train.main(["--config", "tiny", "--synthetic", "--vocab", "512", "--seconds", "2", "--skip-logs", "1",
                           "--log-interval", "2", "--startup-timeout", "240", "--variants", "torch[flash]+eager",
                           "--set", "train.device=cpu", "--out", str(tmp_path / "out")])
    out = capsys.readouterr()
    assert rc == 0, (out.out + out.err)[-3000:]
    rows = json.loads((tmp_path / "out" / "train.json").read_text())["rows"]
    assert rows[0]["variant"] == "torch[flash]+eager" and rows[0]["status"] == "ok"
    log = next((tmp_path / "out").glob("torch-flash-eager-0.log")).read_text()
    assert "SDPA pinned to flash" in log


def test_parse_variant_pins():
    from bench.train import parse_variant

    assert parse_variant("torch[cudnn]+compile") == ("torch[cudnn]", True)
    assert parse_variant("torch[default]+eager") == ("torch", False)
    for bad in ("ours[flash]+compile", "torch[fast]+compile", "torch[flash+compile", "torch+fast"):
        with pytest.raises(ValueError):
            parse_variant(bad)


def test_explain_counts_graph_breaks_on_cpu(tmp_path, monkeypatch, capsys):
    from bench import explain

    monkeypatch.setenv("KERNELS_BACKEND", "torch")  # main() sets it per backend; restored after the test
    rc = explain.main(["--preset", "tiny", "--batch-size", "2", "--device", "cpu", "--backend", "torch",
                       "--json", str(tmp_path / "e.json")])
    (r,) = json.loads((tmp_path / "e.json").read_text())
    assert "error" not in r, r
    assert r["graph_count"] >= 1 and r["graph_break_count"] >= 0
    assert rc == (0 if r["graph_break_count"] == 0 and r["graph_count"] == 1 else 1), capsys.readouterr().out


FAKE_PYTHON = r"""#!/usr/bin/env bash
# Stands in for python on a CPU machine: records each call, writes the files the suite reads next.
echo "$*" >> "$FAKE_LOG"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --write-tuned) f=${args[$((i + 1))]}; echo '{"attention": {"sm_90": {"128": {"schedule": "reverse"}}}}' > "$f"
                   echo '{"128": {"schedule": "reverse"}}' > "$(dirname "$f")/tuned_changed" ;;
    --out) mkdir -p "${args[$((i + 1))]}"
           case "$*" in *bench.kernels*) echo '{"training_baseline": "cudnn"}' > "${args[$((i + 1))]}/sdpa.json" ;; esac ;;
  esac
done
case "$*" in *"-c "*) echo '{"training_baseline": "cudnn"}' >/dev/null; echo cudnn ;; esac
exit 0
"""


def test_suite_runs_end_to_end_with_a_fake_python(tmp_path):
    """The bash plumbing: the parallel group, the wait for the build, the decisions file and its
    check, the SDPA pin handed to the training step, the summary and --pack."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    out, log = tmp_path / "out", tmp_path / "calls.log"
    res = subprocess.run(["bash", "bench/gpu_suite.sh", "--pack"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env=_env(PYTHON=str(fake), OUT=str(out), FAKE_LOG=str(log),
                                               PATH=f"{tmp_path}:{os.environ['PATH']}"))
    summary = (out / "summary.txt").read_text()
    calls = log.read_text()
    assert sorted(p.name for p in out.iterdir()) == ["results.tar.gz", "summary.txt", "tuned.json"], summary
    for step in ("build", "cuda_attention_d128", "cuda_other", "sweep_warm", "explain", "train_warm_ours",
                 "sweep", "tuned_check", "kernels", "profile", "train"):
        assert re.search(rf"^{step} +ok ", summary, re.M), f"{step} not ok:\n{summary}"
    assert "KERNELS_TUNED" not in calls  # passed through env, not as an argument
    assert "--variants ours+compile torch[cudnn]+compile" in calls
    assert "-m pip install --no-build-isolation --no-deps -e ." in calls
    assert res.returncode in (0, 1)  # env fails without nvidia-smi on a CPU machine


# bench.profile_gpu: the plumbing on a CPU (the kernel tables need CUDA's profiler events)
# ----------------------------------------------------------------------------------------------

def test_profile_gpu_kernel_families():
    from bench.profile_gpu import family

    assert family("_layer_norm_bwd_kernel") == "ours: layernorm"
    assert family("_attn_bwd_dkdv_scheduled") == "ours: attention"
    assert family("_cross_entropy_kernel") == "ours: cross-entropy"
    # Inductor's fused kernels hold the same words but are PyTorch's, not ours
    assert family("triton_per_fused__to_copy_add_native_layer_norm_3") == "layernorm (torch)"
    assert family("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64") == "matmul"
    assert family("cudnn_generated_fort_native_sdpa_sm90_flash_fprop") == "sdpa"
    assert family("triton_poi_fused_gelu_5") == "other"


def test_profile_gpu_cpu_smoke(tmp_path, capsys):
    from bench.profile_gpu import main

    assert main(["--device", "cpu", "--tiny", "--iters", "3", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "profile.json").read_text())["rows"]
    assert [(r["op"], r["provider"]) for r in rows] == [
        ("layernorm", "pytorch"), ("layernorm", "ours"), ("layernorm", "ours-blocked"),
        ("tiny step", "ours+eager"), ("tiny step", "torch+eager"), ("tiny step", "ours-packed+eager")]
    assert all(r["wall_ms"] > 0 and r["host_ms"] > 0 for r in rows)
    assert "ours-blocked" in (tmp_path / "profile.txt").read_text()
    assert main(["--device", "cpu", "--parts", "layernorm,bogus"]) == 2
