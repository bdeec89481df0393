"""Collect the main-job trainings of this folder into summary.json: for each NAME-sSEED.out/.err pair under a
run root, the held-out accuracies the demo printed (constrained and beam+exec, both splits), the lookup
baseline, the wall time, the training time and the final losses.

    python bench/results/main-job-8heads-2core/summarize.py RUN_ROOT [RUN_ROOT ...] > summary.json
"""
import json
import re
import sys
from pathlib import Path

PCT = r"([\d.]+)%"


def parse(out: Path, err: Path) -> dict:
    text, log = out.read_text(), err.read_text()
    row = {"run": out.stem}
    for split in ("test_domains", "test_wordings"):
        m = re.search(split + r"\s+model\s+" + PCT + r" \[" + PCT + "-" + PCT + r"\]\s+lookup baseline\s+" + PCT
                      + r".*\n\s+beam\+exec\s+" + PCT, text)
        if m:
            row[split] = {"constrained": float(m[1]), "ci95": [float(m[2]), float(m[3])],
                          "lookup": float(m[4]), "beam+exec": float(m[5])}
    if m := re.search(r"done in (\d+) s \(training (\d+) s\)", log):
        row["demo_seconds"], row["training_seconds"] = int(m[1]), int(m[2])
    if m := re.search(r"val loss ([\d.]+) \| weight average ([\d.]+)", log):
        row["val_loss"], row["val_loss_weight_average"] = float(m[1]), float(m[2])
    return row


rows = []
for root in sys.argv[1:]:
    for out in sorted(Path(root).glob("*.out")):
        err = out.with_suffix(".err")
        if err.exists():
            rows.append(parse(out, err))
print(json.dumps(rows, indent=1))
