"""Text-to-SQL metrics: execution accuracy, exact match (normalised by sqlglot), valid-SQL rate, and a
breakdown by SQL shape.

Execution accuracy: the predicted query, run read-only (data.sql_exec), returns the same result as the
gold query. "Same" means:
  * the same multiset of rows (duplicates count, row order ignored), unless the gold query sorts its
    final result (a top-level ORDER BY), in which case the row order must match too;
  * values compared after a light normalisation: 3 == 3.0, floats rounded to 6 significant digits (AVG
    computed in another order differs in the last bits), NULL equals NULL;
  * columns may come in another order (SELECT a, b vs SELECT b, a) for results of up to 4 columns:
    the question rarely fixes the order, and the rows must still match column for column under one
    permutation.
A query that fails (syntax, denied, time limit) is invalid and never matches. An example whose gold
query fails is counted in `n_gold_errors` and left out of the accuracy denominators.

Exact match: both queries parsed by sqlglot (SQLite dialect) and printed back in its canonical form
with identifiers lower-cased; equal strings match. Unparseable SQL never matches.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot import exp

from text2sql.hardness import LEVELS, hardness
from text2sql.sql_exec import DEFAULT_TIMEOUT_S, ExecResult, execute_sql

MAX_PERMUTED_COLUMNS = 4


# ----------------------------------------------------------------------------------------------------
# Result comparison


def _norm_value(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if v.is_integer() and abs(v) < 2 ** 53:
            return int(v)
        return float(f"{v:.6g}")
    return v


def _norm_rows(rows) -> list[tuple]:
    return [tuple(_norm_value(v) for v in row) for row in rows]


def _same(a: list[tuple], b: list[tuple], ordered: bool) -> bool:
    return a == b if ordered else Counter(a) == Counter(b)


def results_match(gold_rows, pred_rows, ordered: bool = False) -> bool:
    """True when two query results are equal in the module's sense (see the docstring)."""
    gold, pred = _norm_rows(gold_rows), _norm_rows(pred_rows)
    if len(gold) != len(pred):
        return False
    if _same(gold, pred, ordered):
        return True
    width = len(gold[0]) if gold else 0
    if not gold or any(len(r) != width for r in pred) or not 1 < width <= MAX_PERMUTED_COLUMNS:
        return False
    for perm in itertools.permutations(range(width)):
        if _same(gold, [tuple(r[i] for i in perm) for r in pred], ordered):
            return True
    return False


def _parse(sql: str):
    try:
        return sqlglot.parse_one(sql, read="sqlite")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError, ValueError, RecursionError):
        return None


def has_order_by(sql: str) -> bool:
    """Whether the query's final result is sorted (ORDER BY on the outermost query or set operation)."""
    tree = _parse(sql)
    if tree is None:
        return "order by" in " ".join(sql.lower().split())
    return tree.args.get("order") is not None


# ----------------------------------------------------------------------------------------------------
# Exact match


def normalize_sql(sql: str) -> str | None:
    """sqlglot's canonical SQLite text of `sql`, identifiers lower-cased; None when it does not parse."""
    tree = _parse(sql.strip().rstrip(";"))
    if tree is None:
        return None
    try:
        return tree.sql(dialect="sqlite", normalize=True, pretty=False)
    except Exception:  # sqlglot raises assorted errors on odd trees; unprintable is unparseable here
        return None


def exact_match(gold: str, pred: str) -> bool:
    g, p = normalize_sql(gold), normalize_sql(pred)
    return g is not None and g == p


# ----------------------------------------------------------------------------------------------------
# SQL shape (for the breakdown); the first matching rule wins, so each query has one shape

SHAPE_ORDER = ["set_op", "nested", "join", "having", "group_by", "limit", "order_by", "aggregate",
               "distinct", "like", "between", "in", "where_and_or", "where", "select", "other", "unparsed"]


def sql_shape(sql: str) -> str:
    tree = _parse(sql)
    if tree is None:
        return "unparsed"
    if isinstance(tree, (exp.Union, exp.Intersect, exp.Except)):
        return "set_op"
    if not isinstance(tree, exp.Select):
        return "other"
    if any(sub is not tree for sub in tree.find_all(exp.Select)):
        return "nested"
    if tree.args.get("joins"):
        return "join"
    if tree.args.get("having"):
        return "having"
    if tree.args.get("group"):
        return "group_by"
    if tree.args.get("limit"):
        return "limit"
    if tree.args.get("order"):
        return "order_by"
    if tree.find(exp.AggFunc):
        return "aggregate"
    if tree.args.get("distinct"):
        return "distinct"
    where = tree.args.get("where")
    if where is None:
        return "select"
    if where.find(exp.Like):
        return "like"
    if where.find(exp.Between):
        return "between"
    if where.find(exp.In):
        return "in"
    if where.find(exp.And) or where.find(exp.Or):
        return "where_and_or"
    return "where"


# ----------------------------------------------------------------------------------------------------
# Scoring a set of predictions


@dataclass
class Scored:
    exec_match: bool
    exact_match: bool
    valid: bool          # the predicted SQL executed without error
    gold_ok: bool        # the gold SQL executed (else the example is left out of accuracies)
    shape: str
    pred_result: ExecResult
    gold_result: ExecResult
    hardness: str = "unknown"            # Spider's level of the gold query (text2sql/hardness.py)
    baseline_match: bool | None = None  # the lookup baseline's execution match on the same example


def score_example(db_path: str | Path, gold: str, pred: str, shape: str | None = None,
                  timeout_s: float = DEFAULT_TIMEOUT_S, gold_result: ExecResult | None = None) -> Scored:
    """Run both queries read-only on db_path and compare them."""
    gold_result = gold_result or execute_sql(db_path, gold, timeout_s=timeout_s)
    pred_result = execute_sql(db_path, pred, timeout_s=timeout_s) if pred.strip() else \
        ExecResult(error="empty prediction")
    match = (gold_result.ok and pred_result.ok
             and results_match(gold_result.rows, pred_result.rows, ordered=has_order_by(gold)))
    return Scored(match, exact_match(gold, pred), pred_result.ok, gold_result.ok, shape or sql_shape(gold),
                  pred_result, gold_result, hardness(gold))


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (sound at 0%, 100% and small n, unlike p +- 2 SE)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(scored: list[Scored]) -> dict:
    """Totals, and breakdowns by SQL shape and by Spider hardness, as a JSON-ready dict; each block has
    the execution accuracy's 95% interval and, when it was run, the lookup baseline's accuracy."""
    def block(items: list[Scored]) -> dict:
        usable = [s for s in items if s.gold_ok]
        n = len(usable)
        hits = sum(s.exec_match for s in usable)
        out = {"n": len(items),
               "execution_accuracy": hits / n if n else 0.0,
               "ci95": list(wilson_interval(hits, n)),
               "exact_match": sum(s.exact_match for s in items) / len(items) if items else 0.0,
               "valid_sql_rate": sum(s.valid for s in items) / len(items) if items else 0.0}
        with_baseline = [s for s in usable if s.baseline_match is not None]
        if with_baseline:
            out["baseline_accuracy"] = sum(s.baseline_match for s in with_baseline) / len(with_baseline)
        return out

    out = block(scored)
    out["n_gold_errors"] = sum(not s.gold_ok for s in scored)
    groups = defaultdict(list)
    for s in scored:
        groups[s.shape].append(s)
    rank = {name: i for i, name in enumerate(SHAPE_ORDER)}
    out["by_shape"] = {k: block(groups[k]) for k in sorted(groups, key=lambda k: (rank.get(k, len(rank)), k))}
    levels = defaultdict(list)
    for s in scored:
        levels[s.hardness].append(s)
    order = {name: i for i, name in enumerate(LEVELS)}
    out["by_hardness"] = {k: block(levels[k]) for k in sorted(levels, key=lambda k: (order.get(k, 9), k))}
    return out


def format_table(summary: dict) -> str:
    """The summary as two small fixed-width tables, by SQL shape and by Spider hardness (what
    `python -m text2sql.evaluate` prints); the lookup baseline's column when it was run."""
    baseline = "baseline_accuracy" in summary
    head = f"{'n':>6}{'exec acc':>10}{'95% CI':>14}" + (f"{'lookup':>8}" if baseline else "") + \
        f"{'exact':>8}{'valid':>8}"

    def row(name: str, b: dict) -> str:
        lo, hi = b.get("ci95", (0.0, 1.0))
        line = f"{name:<14}{b['n']:>6}{b['execution_accuracy']:>10.1%}{f'{lo:.0%}-{hi:.0%}':>14}"
        if baseline:
            line += f"{b.get('baseline_accuracy', 0.0):>8.1%}"
        return line + f"{b['exact_match']:>8.1%}{b['valid_sql_rate']:>8.1%}"

    lines = []
    for title, key in (("shape", "by_shape"), ("hardness", "by_hardness")):
        if key not in summary:
            continue
        lines.append(f"{title:<14}" + head)
        lines += [row(name, b) for name, b in summary[key].items()]
        lines.append("-" * (14 + len(head)))
        lines.append(row("all", summary))
        lines.append("")
    return "\n".join(lines).rstrip()
