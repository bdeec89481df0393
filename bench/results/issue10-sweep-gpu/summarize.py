"""Summarise sweep.sh: per variant and seed, the final step, held-out accuracies and training facts;
per variant, the mean, the spread (min-max) and the standard deviation over seeds."""
import json
import statistics
import sys
from pathlib import Path

root, out = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for ev in sorted((root / "evals").glob("*-test_domains.json")):
    name = ev.name[: -len("-test_domains.json")]
    variant, seed = name.rsplit("-s", 1)
    row = {"variant": variant, "seed": int(seed)}
    for split in ("test_domains", "test_wordings"):
        f = root / "evals" / f"{name}-{split}.json"
        if f.is_file():
            r = json.loads(f.read_text())
            row["step"] = r.get("step")
            row[split] = r["modes"][0]["execution_accuracy"]
            row[f"{split}_n"] = r["modes"][0]["n"]
    log = root / "runs" / name / "log.jsonl"
    if log.is_file():
        recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        vals = [r for r in recs if r.get("kind") == "val"]
        if vals:
            row["val_loss_ema"] = vals[-1].get("val_loss_ema")
        steps = [r for r in recs if "elapsed_s" in r]
        if steps:
            row["train_seconds"] = steps[-1]["elapsed_s"]
    rows.append(row)
by = {}
for r in rows:
    by.setdefault(r["variant"], []).append(r)
lines = [f"{'variant':12s} {'seeds':>5s} {'domains mean':>12s} {'min-max':>13s} {'sd':>5s} {'wordings mean':>13s} {'min-max':>13s}"]
summary = {}
for v, rs in by.items():
    d = [r["test_domains"] for r in rs if "test_domains" in r]
    w = [r["test_wordings"] for r in rs if "test_wordings" in r]
    if not d:
        continue
    summary[v] = {"seeds": len(d), "domains": d, "wordings": w, "domains_mean": statistics.mean(d),
                  "domains_sd": statistics.stdev(d) if len(d) > 1 else 0.0,
                  "wordings_mean": statistics.mean(w) if w else None}
    lines.append(f"{v:12s} {len(d):5d} {statistics.mean(d):12.1%} {min(d):6.1%}-{max(d):6.1%} "
                 f"{summary[v]['domains_sd']:5.1%} {statistics.mean(w) if w else float('nan'):13.1%} "
                 f"{min(w) if w else 0:6.1%}-{max(w) if w else 0:6.1%}")
text = "\n".join(lines)
print(text)
for r in rows:
    print(json.dumps(r))
(out / "summary.txt").write_text(text + "\n")
(out / "summary.json").write_text(json.dumps({"variants": summary, "runs": rows}, indent=1))
