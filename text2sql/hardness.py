"""Spider's hardness levels (easy, medium, hard, extra) of a gold SQL query, by the rules of Spider's
evaluation script, computed on a sqlglot parse tree.

The script counts three things on the outermost query (for A UNION/INTERSECT/EXCEPT B, on A):
  component1  one each for WHERE, GROUP BY, ORDER BY and LIMIT; the tables in FROM minus one (joins);
              each OR and each LIKE condition among the join conditions, WHERE and HAVING
  component2  the nested queries: one for a set operation, one per condition operand that is a
              subquery (in the join conditions, WHERE and HAVING; a subquery in FROM is not counted)
  others      one each for: more than one aggregate, more than one selected column, more than one
              WHERE condition, more than one GROUP BY column
and then
  easy    c1 <= 1 and others == 0 and c2 == 0
  medium  (others <= 2 and c1 <= 1 and c2 == 0) or (c1 <= 2 and others < 2 and c2 == 0)
  hard    (others > 2 and c1 <= 2 and c2 == 0) or (2 < c1 <= 3 and others <= 2 and c2 == 0)
          or (c1 <= 1 and others == 0 and c2 <= 1)
  extra   everything else.
The aggregate count reproduces the script as it runs, quirks included, so that levels agree with the
published ones: a WHERE condition counts as an aggregate when it is negated (NOT IN, NOT LIKE, ...),
and in HAVING it is the negated conditions and the AND/OR between conditions that count, not the
aggregates themselves (the script tests the first field of each unit, which for a condition is its NOT
flag). Aggregates count in SELECT, GROUP BY and ORDER BY. A query sqlglot cannot parse is "unknown".
"""
from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp

LEVELS = ("easy", "medium", "hard", "extra")
UNKNOWN = "unknown"
_SET_OPS = (exp.Union, exp.Intersect, exp.Except)


@dataclass(frozen=True)
class Components:
    component1: int
    component2: int
    others: int

    @property
    def level(self) -> str:
        c1, c2, others = self.component1, self.component2, self.others
        if c1 <= 1 and others == 0 and c2 == 0:
            return "easy"
        if (others <= 2 and c1 <= 1 and c2 == 0) or (c1 <= 2 and others < 2 and c2 == 0):
            return "medium"
        if ((others > 2 and c1 <= 2 and c2 == 0) or (2 < c1 <= 3 and others <= 2 and c2 == 0)
                or (c1 <= 1 and others == 0 and c2 <= 1)):
            return "hard"
        return "extra"


def _unparen(node):
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _conditions(node) -> tuple[list, list[str]]:
    """A boolean expression flattened as the script sees it: (conditions, the 'and'/'or' between them)."""
    if node is None:
        return [], []
    node = _unparen(node)
    if isinstance(node, (exp.And, exp.Or)):
        left, left_ops = _conditions(node.this)
        right, right_ops = _conditions(node.expression)
        return left + right, left_ops + ["and" if isinstance(node, exp.And) else "or"] + right_ops
    return [node], []


def _negated(cond) -> bool:
    """The script's NOT flag: NOT IN / NOT LIKE / NOT BETWEEN ... (not IS NOT NULL, where NOT follows IS)."""
    if isinstance(cond, exp.Not):
        return not isinstance(_unparen(cond.this), exp.Is)
    return bool(cond.args.get("negate"))


def _operator(cond):
    return _unparen(cond.this) if isinstance(cond, exp.Not) else cond


def _is_query(node) -> bool:
    node = _unparen(node)
    return isinstance(node, (exp.Subquery, exp.Select, *_SET_OPS))


def _subqueries(cond) -> int:
    """Operands of one condition that are queries (the script's val1 / val2 holding a SQL)."""
    op = _operator(cond)
    n = 0
    for value in op.args.values():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, exp.Expression) and _is_query(v):
                n += 1
    return n


def _is_agg(node) -> bool:
    node = _unparen(node)
    if isinstance(node, exp.Alias):
        node = _unparen(node.this)
    return isinstance(node, exp.AggFunc)


def components(tree: exp.Expression) -> Components:
    """Spider's three counts of a parsed query (see the module docstring)."""
    c2 = 0
    if isinstance(tree, _SET_OPS):
        c2 += 1
        while isinstance(tree, _SET_OPS):
            tree = tree.this
    tree = _unparen(tree)
    if isinstance(tree, exp.Subquery):
        tree = tree.this
    if not isinstance(tree, exp.Select):
        raise ValueError(f"not a SELECT query: {type(tree).__name__}")
    joins = tree.args.get("joins") or []
    join_conds, join_ops = [], []
    for j in joins:
        conds, ops = _conditions(j.args.get("on"))
        if join_conds and conds:
            join_ops.append("and")
        join_conds += conds
        join_ops += ops
    where = tree.args.get("where")
    where_conds, where_ops = _conditions(where.this if where else None)
    having = tree.args.get("having")
    having_conds, having_ops = _conditions(having.this if having else None)
    group = tree.args.get("group")
    group_items = list(group.expressions) if group else []
    order = tree.args.get("order")
    order_items = [o.this if isinstance(o, exp.Ordered) else o for o in (order.expressions if order else [])]

    c1 = sum(bool(x) for x in (where_conds, group_items, order_items, tree.args.get("limit")))
    if tree.args.get("from") or tree.args.get("from_"):
        c1 += len(joins)  # tables in FROM minus one
    all_conds = join_conds + where_conds + having_conds
    c1 += (join_ops + where_ops + having_ops).count("or")
    c1 += sum(isinstance(_operator(c), (exp.Like, exp.ILike)) for c in all_conds)
    c2 += sum(_subqueries(c) for c in all_conds)

    aggs = sum(_is_agg(e) for e in tree.expressions)
    aggs += sum(_negated(c) for c in where_conds)
    aggs += sum(_is_agg(g) for g in group_items)
    for item in order_items:  # the script looks at both column units of an ORDER BY value
        item = _unparen(item)
        if isinstance(item, exp.Binary) and not isinstance(item, (exp.And, exp.Or)):
            aggs += _is_agg(item.this) + _is_agg(item.expression)
        else:
            aggs += _is_agg(item)
    aggs += sum(_negated(c) for c in having_conds) + len(having_ops)
    others = (aggs > 1) + (len(tree.expressions) > 1) + (len(where_conds) > 1) + (len(group_items) > 1)
    return Components(c1, c2, int(others))


def hardness(sql: str) -> str:
    """easy | medium | hard | extra for a query, or "unknown" when it does not parse."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
        return components(tree).level
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError, ValueError, AttributeError):
        return UNKNOWN


sql_hardness = hardness
