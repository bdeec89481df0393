"""bench/threads.py: one worker case runs and reports a step time (the full sweep is run by hand)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_threads_worker_reports_a_step_time():
    res = subprocess.run([sys.executable, "-m", "bench.threads", "--worker", "1", "--steps", "1", "--warmup", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    row = json.loads(res.stdout.strip().splitlines()[-1])
    assert row["threads"] == 1 and row["step_s"] > 0 and row["tokens_per_s"] > 0


def test_results_file_records_the_chosen_default():
    report = json.loads((ROOT / "bench" / "results" / "threads-2core.json").read_text())
    cases = {c["case"]: c for c in report["cases"]}
    auto = next(c for name, c in cases.items() if name.startswith("auto") and not c["compiled"])
    assert auto["threads"] == 1 and auto["slowdown_when_busy"] < 2
