"""An evaluation report to look at: PNG charts and one self-contained HTML page, from the JSON that
`python -m text2sql.evaluate` writes.

    python -m text2sql.evaluate --checkpoint runs/text2sql --data data/processed/text2sql --report reports/t2s
    python -m text2sql.report runs/a/eval_test.json runs/b/eval_test.json --out reports/t2s [--baseline B.json]

Written to the report folder:
    accuracy_by_shape.png      execution accuracy per SQL shape (text2sql/metrics.py), n under each bar
    accuracy_by_hardness.png   the same per Spider hardness level (text2sql/hardness.py)
    accuracy_by_step.png       accuracy against training step, when several checkpoints were evaluated
    index.html                 the summary, the charts (embedded, so the page needs no other file and no
                               server) and every wrong answer: question, gold SQL, predicted SQL, the error
                               and both results (re-run read-only on the example's database)
    report.json                the numbers behind the charts
    evaluations/               a copy of each evaluation added with --report (so evaluating checkpoint
                               after checkpoint into one folder draws the curve)
The lookup baseline is drawn as a second bar (and a dashed line on the step chart) only when there is
one: per-example `baseline_match` fields in the evaluation (text2sql.evaluate scores the baseline beside
the model), or a separate evaluation-format JSON given as `baseline` (its examples' exec_match).
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

from text2sql.hardness import LEVELS, hardness
from text2sql.metrics import SHAPE_ORDER

EVALUATIONS_DIR = "evaluations"
CHARTS = {"shape": "accuracy_by_shape.png", "hardness": "accuracy_by_hardness.png", "step": "accuracy_by_step.png"}
MAX_ROWS_SHOWN = 10
UNKNOWN = "unknown"  # the hardness of a query that does not parse


# ----------------------------------------------------------------------------------------------------
# Numbers


def _hardness_of(record: dict) -> str:
    return record.get("hardness") or hardness(record.get("gold", ""))


def _usable(record: dict) -> bool:
    """Examples whose gold SQL ran: the accuracy denominators (as in text2sql/metrics.py)."""
    return not record.get("gold_error")


def accuracy_by(records: list[dict], key, order, baseline: dict[str, bool] | None = None) -> dict[str, dict]:
    """{group: {"n", "correct", "accuracy", and "baseline_accuracy" when a baseline is known}} over the
    usable records, groups in `order` first. `baseline` maps a record's identity to the baseline's match
    (used when the records carry no baseline_match of their own)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if _usable(r):
            groups[key(r)].append(r)
    rank = {name: i for i, name in enumerate(order)}
    out = {}
    for name in sorted(groups, key=lambda k: (rank.get(k, len(rank)), k)):
        items = groups[name]
        correct = sum(bool(r.get("exec_match")) for r in items)
        block = {"n": len(items), "correct": correct, "accuracy": correct / len(items)}
        base = [_baseline_match(r, baseline) for r in items]
        base = [b for b in base if b is not None]
        if base:
            block["baseline_accuracy"] = sum(base) / len(base)
            block["baseline_n"] = len(base)
        out[name] = block
    return out


def _identity(record: dict) -> str:
    return f"{record.get('db_id')}\0{record.get('question')}\0{record.get('gold')}"


def _baseline_match(record: dict, baseline: dict[str, bool] | None):
    if record.get("baseline_match") is not None:
        return bool(record["baseline_match"])
    if baseline is not None:
        return baseline.get(_identity(record))
    return None


def _overall(records: list[dict], baseline) -> dict:
    return accuracy_by(records, lambda r: "all", ["all"], baseline).get("all", {"n": 0, "correct": 0, "accuracy": 0.0})


# ----------------------------------------------------------------------------------------------------
# Charts (matplotlib, Agg: no display needed)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(groups: dict[str, dict], title: str, path: Path) -> Path:
    """Execution accuracy per group; the baseline as a second bar when the groups have one."""
    plt = _pyplot()
    names = list(groups)
    has_baseline = any("baseline_accuracy" in g for g in groups.values())
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(names) + 2), 4.2), dpi=110)
    width = 0.4 if has_baseline else 0.65
    xs = range(len(names))
    model_x = [x - width / 2 for x in xs] if has_baseline else list(xs)
    bars = ax.bar(model_x, [100 * groups[n]["accuracy"] for n in names], width, label="model", color="#3b6fb6")
    for b, n in zip(bars, names):
        ax.annotate(f"{100 * groups[n]['accuracy']:.0f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center", va="bottom", fontsize=8)
    if has_baseline:
        ax.bar([x + width / 2 for x in xs], [100 * groups[n].get("baseline_accuracy", 0.0) for n in names], width,
               label="lookup baseline", color="#c8873a")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{n}\nn={groups[n]['n']}" for n in names], fontsize=8, rotation=0 if len(names) < 8 else 45)
    ax.set_ylim(0, 105)
    ax.set_ylabel("execution accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def step_chart(points: dict[str, list[tuple[int, float]]], baseline: float | None, title: str, path: Path) -> Path:
    """Accuracy against training step, one line per run; the baseline as a dashed line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for run, pts in sorted(points.items()):
        pts = sorted(pts)
        ax.plot([s for s, _ in pts], [100 * a for _, a in pts], marker="o", label=run)
    if baseline is not None:
        ax.axhline(100 * baseline, linestyle="--", color="#c8873a", label="lookup baseline")
    ax.set_xlabel("training step")
    ax.set_ylabel("execution accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------------
# The page


def _esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _rows_table(result) -> str:
    """A query result as an HTML table (first rows), or its error."""
    if result is None:
        return '<p class="muted">database not available</p>'
    if result.error:
        return f'<p class="err">error: {_esc(result.error)}</p>'
    head = "".join(f"<th>{_esc(c)}</th>" for c in result.columns)
    body = "".join("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>"
                   for row in result.rows[:MAX_ROWS_SHOWN])
    more = len(result.rows) - MAX_ROWS_SHOWN
    note = f'<p class="muted">{len(result.rows)} rows{", more not fetched" if result.truncated else ""}' \
           f'{f"; {more} not shown" if more > 0 else ""}</p>'
    if not result.rows:
        return '<p class="muted">(no rows)</p>'
    return f"<table><tr>{head}</tr>{body}</table>{note}"


def _run(db_path, sql: str, timeout_s: float):
    from text2sql.sql_exec import ExecResult, execute_sql

    if not db_path or not Path(db_path).is_file():
        return None
    if not (sql or "").strip():
        return ExecResult(error="empty prediction")
    return execute_sql(db_path, sql, timeout_s=timeout_s)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{_esc(path.stem)}" src="data:image/png;base64,{data}"><figcaption>' \
           f'<a href="{_esc(path.name)}">{_esc(path.name)}</a></figcaption></figure>'


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em} .muted{color:#777;font-size:.85em}
.err{color:#a00;font-family:monospace;font-size:.85em;white-space:pre-wrap}
figure{display:inline-block;margin:.5em} img{max-width:100%;border:1px solid #ddd}
.wrong{border:1px solid #ddd;border-left:4px solid #c33;border-radius:4px;padding:.6em 1em;margin:1em 0;background:#fff}
.q{font-weight:600} pre{background:#f6f6f6;padding:.4em .6em;white-space:pre-wrap;word-break:break-word;margin:.2em 0}
.cols{display:flex;gap:1.5em;flex-wrap:wrap} .cols>div{flex:1;min-width:300px}
table{border-collapse:collapse;font-size:.85em} td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
th{background:#eee} .tag{display:inline-block;background:#eef;border-radius:3px;padding:0 5px;margin-left:4px;font-size:.8em}
"""


def render_page(evaluation: dict, overall: dict, charts: list[Path], wrong: list[dict], n_wrong: int,
                timeout_s: float) -> str:
    title = f"Evaluation of {evaluation.get('checkpoint', '?')}"
    acc = f"{100 * overall['accuracy']:.1f}%" if overall.get("n") else "n/a"
    base = f", lookup baseline {100 * overall['baseline_accuracy']:.1f}%" if "baseline_accuracy" in overall else ""
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_esc(title)}</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{_esc(title)}</h1>",
             f"<p>step {_esc(evaluation.get('step'))} &middot; data {_esc(evaluation.get('data'))} &middot; split "
             f"{_esc(evaluation.get('split'))} &middot; written {_esc(time.strftime('%Y-%m-%d %H:%M'))}</p>",
             f"<p><b>execution accuracy {acc}</b> ({overall.get('correct', 0)} of {overall.get('n', 0)} examples"
             f"{_esc(base)})</p>",
             "<h2>Charts</h2>", "".join(_img(p) for p in charts),
             f"<h2>Wrong answers ({n_wrong}{f', first {len(wrong)} shown' if len(wrong) < n_wrong else ''})</h2>"]
    if not wrong:
        parts.append("<p>none</p>")
    for i, r in enumerate(wrong, 1):
        gold_res, pred_res = _run(r.get("db_path"), r.get("gold", ""), timeout_s), _run(r.get("db_path"), r.get("pred", ""), timeout_s)
        tags = "".join(f'<span class="tag">{_esc(t)}</span>' for t in (r.get("db_id"), r.get("shape"), _hardness_of(r)) if t)
        error = f'<p class="err">{_esc(r["error"])}</p>' if r.get("error") else ""
        parts.append(
            f'<div class="wrong" id="wrong-{i}"><p class="q">{i}. {_esc(r.get("question"))}{tags}</p>'
            f'<div class="cols"><div><b>gold SQL</b><pre>{_esc(r.get("gold"))}</pre>{_rows_table(gold_res)}</div>'
            f'<div><b>predicted SQL</b><pre>{_esc(r.get("pred"))}</pre>{error}{_rows_table(pred_res)}</div></div></div>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------------
# Putting it together


def write_report(evaluations: list[dict], out_dir, baseline: dict | None = None, max_wrong: int = 200,
                 timeout_s: float = 2.0) -> dict[str, Path]:
    """Charts, index.html and report.json for `evaluations` (payloads of text2sql.evaluate); the last one
    is the one broken down and whose wrong answers are listed; all of them (with their steps) make the
    step chart. `baseline`: an optional evaluation-format payload of the lookup baseline."""
    if not evaluations:
        raise ValueError("no evaluations to report on")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    current = evaluations[-1]
    records = current.get("examples", [])
    base_map = {_identity(r): bool(r.get("exec_match")) for r in baseline.get("examples", [])} if baseline else None
    by_shape = accuracy_by(records, lambda r: r.get("shape", "other"), SHAPE_ORDER, base_map)
    by_hardness = accuracy_by(records, _hardness_of, [*LEVELS, UNKNOWN], base_map)
    overall = _overall(records, base_map)
    label = f"{current.get('split', '')} split, step {current.get('step')}"
    files = {"shape": bar_chart(by_shape, f"Execution accuracy by SQL shape ({label})", out / CHARTS["shape"]),
             "hardness": bar_chart(by_hardness, f"Execution accuracy by Spider hardness ({label})",
                                   out / CHARTS["hardness"])}
    points: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for ev in evaluations:
        if ev.get("step") is not None and ev.get("examples"):
            run = Path(ev.get("checkpoint", "run")).parent.parent.name or "run"
            points[run].append((int(ev["step"]), _overall(ev["examples"], base_map)["accuracy"]))
    steps = {p[0] for pts in points.values() for p in pts}
    stale = out / CHARTS["step"]
    if len(steps) >= 2:
        files["step"] = step_chart(points, overall.get("baseline_accuracy"),
                                   f"Execution accuracy against training step ({current.get('split', '')} split)", stale)
    elif stale.exists():
        stale.unlink()
    wrong_all = [r for r in records if _usable(r) and not r.get("exec_match")]
    page = render_page(current, overall, list(files.values()), wrong_all[:max_wrong], len(wrong_all), timeout_s)
    files["html"] = out / "index.html"
    files["html"].write_text(page, encoding="utf-8")
    numbers = {"checkpoint": current.get("checkpoint"), "step": current.get("step"), "data": current.get("data"),
               "split": current.get("split"), "overall": overall, "by_shape": by_shape, "by_hardness": by_hardness,
               "by_step": {run: sorted(pts) for run, pts in points.items()}, "n_wrong": len(wrong_all)}
    files["json"] = out / "report.json"
    files["json"].write_text(json.dumps(numbers, indent=1, default=str) + "\n")
    return files


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def add_evaluation(evaluation: dict, out_dir, **kwargs) -> dict[str, Path]:
    """Keep a copy of `evaluation` in <out_dir>/evaluations/ and rebuild the report from every kept
    evaluation of the same data and split (the hook behind `text2sql.evaluate --report DIR`); a
    baseline.json in out_dir (evaluation format) is drawn as the baseline."""
    out = Path(out_dir)
    kept = out / EVALUATIONS_DIR
    kept.mkdir(parents=True, exist_ok=True)
    run = Path(evaluation.get("checkpoint", "run")).parent.parent.name or "run"
    name = f"{_safe(run)}_{_safe(str(evaluation.get('split')))}_step{evaluation.get('step')}.json"
    (kept / name).write_text(json.dumps(evaluation, indent=1, default=str))
    same = []
    for p in sorted(kept.glob("*.json")):
        ev = json.loads(p.read_text())
        if (ev.get("data"), ev.get("split")) == (evaluation.get("data"), evaluation.get("split")) and p.name != name:
            same.append(ev)
    same.sort(key=lambda ev: (ev.get("step") is None, ev.get("step") or 0))
    baseline_path = out / "baseline.json"
    if "baseline" not in kwargs and baseline_path.is_file():
        kwargs["baseline"] = load_evaluation(baseline_path)
    return write_report(same + [evaluation], out, **kwargs)


def load_evaluation(path) -> dict:
    try:
        ev = json.loads(Path(path).read_text())
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON ({e.msg}); give the file text2sql.evaluate wrote") from None
    if not isinstance(ev, dict) or not isinstance(ev.get("examples"), list):
        raise ValueError(f"{path} has no 'examples' list: not a text2sql.evaluate report")
    return ev


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m text2sql.report", description=__doc__.split("\n\n")[0])
    p.add_argument("evaluations", nargs="+", help="JSON files written by python -m text2sql.evaluate")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--baseline", default=None, help="the lookup baseline's evaluation JSON (optional)")
    p.add_argument("--max-wrong", type=int, default=200, help="wrong answers listed on the page")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per query when re-running results")
    args = p.parse_args(argv)
    try:
        evaluations = [load_evaluation(f) for f in args.evaluations]
        evaluations.sort(key=lambda ev: (ev.get("step") is None, ev.get("step") or 0))  # stable: the last
        baseline = load_evaluation(args.baseline) if args.baseline else None       # given wins a tie
        files = write_report(evaluations, args.out, baseline, args.max_wrong, args.timeout)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {', '.join(f.name for f in files.values())} (open {files['html']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
