"""A Hugging Face dataset through `datasets.load_dataset`, for users with network access:

    --hf-dataset wikisql                                   # WikiSQL as the hub stores it
    --hf-dataset xlangai/spider --hf-spider-dir PATH       # Spider questions; schemas/databases from PATH
    --hf-dataset b-mc2/sql-create-context                  # {question, context: CREATE TABLE..., answer}
    --hf-dataset json --hf-data-files my.jsonl             # local files in any of these layouts (offline)

The record layout is recognised from its fields:
  * WikiSQL: `table` {id, header, types, rows} and `sql` {sel, agg, conds {column_index, operator_index,
    condition}}: converted as data/sources/wikisql.py does (SQLite files under <out>/wikisql-hf/);
  * Spider: `db_id`, `question`, `query`: schemas and databases come from a Spider-format folder;
  * anything else with a question, SQL (`sql`, `query` or `answer`) and a schema (`context`, `schema`:
    CREATE TABLE statements or text) or a `db` path: read like a custom JSONL record.
Splits: train -> train, validation/dev -> val, test -> test; a dataset with only a train split has
whole databases held out for val.
"""
from __future__ import annotations

from pathlib import Path

from text2sql.sources import Example, RecordErrors, require_text
from text2sql.sources import jsonl as jsonl_source
from text2sql.sources import wikisql
from text2sql.sources.spider import SpiderFolder

SPLIT_NAMES = {"train": "train", "validation": "val", "dev": "val", "val": "val", "test": "test"}


def _wikisql_parts(records) -> tuple[list[dict], list[dict]]:
    """Hub WikiSQL records -> (records, tables) in WikiSQL's own layout."""
    recs, tables = [], {}
    for r in records:
        t, s = r["table"], r["sql"]
        tables.setdefault(t["id"], {"id": t["id"], "header": t["header"], "types": t["types"], "rows": t["rows"]})
        conds = s.get("conds") or {}
        if isinstance(conds, dict):
            conds = list(zip(conds.get("column_index", []), conds.get("operator_index", []),
                             conds.get("condition", [])))
        recs.append({"table_id": t["id"], "question": r["question"],
                     "sql": {"sel": s["sel"], "agg": s["agg"], "conds": conds}})
    return recs, list(tables.values())


def convert_split(records: list[dict], split: str, where: str, out_dir: Path, errors: RecordErrors,
                  spider_dir: str | None = None) -> list[Example]:
    if not records:
        return []
    first = records[0]
    if isinstance(first.get("table"), dict) and isinstance(first.get("sql"), dict):
        recs, tables = _wikisql_parts(records)
        return wikisql.convert(recs, tables, out_dir / "wikisql-hf" / f"{split}.sqlite", errors, where)
    if {"db_id", "question", "query"} <= set(first):
        if not spider_dir:
            raise ValueError(f"{where}: Spider-style records (db_id, question, query) need --hf-spider-dir, "
                             f"a Spider-format folder with tables.json and database/")
        folder = SpiderFolder(spider_dir, errors)
        out = []
        for i, r in enumerate(records):
            try:
                db_id, q, sql = require_text(r, "db_id"), require_text(r, "question"), require_text(r, "query")
            except ValueError as e:
                errors.add(f"{where}: record {i}", str(e))
                continue
            schema, db = folder.schema(db_id, f"{where}: record {i}")
            if schema is not None:
                out.append(Example(db_id, q, sql, schema, db))
        return out
    out = []
    for i, r in enumerate(records):
        rec = dict(r)
        if "sql" not in rec and "query" not in rec and "answer" in rec:
            rec["sql"] = rec.pop("answer")
        if "schema" not in rec and "context" in rec:
            rec["schema"] = rec.pop("context")
        rec = {k: v for k, v in rec.items() if k in ("question", "sql", "query", "schema", "db", "db_id")}
        try:
            example, _ = jsonl_source.example_from_record(rec, Path.cwd(), {})
        except ValueError as e:
            errors.add(f"{where}: record {i}", str(e))
            continue
        out.append(example)
    return out


def load_hf(name: str, out_dir: str | Path, config: str | None = None, data_files: list[str] | None = None,
            spider_dir: str | None = None, errors: RecordErrors | None = None, val_fraction: float = 0.1,
            seed: int = 0) -> dict[str, list[Example]]:
    errors = errors if errors is not None else RecordErrors()
    try:
        import datasets
    except ImportError:
        raise ValueError("--source hf needs the `datasets` package (pip install datasets)") from None
    try:
        ds = datasets.load_dataset(name, config, data_files=data_files) if data_files else \
            datasets.load_dataset(name, config)
    except Exception as e:  # network, unknown name, bad files: one line for the user
        raise ValueError(f"cannot load Hugging Face dataset {name!r}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from None
    out: dict[str, list[Example]] = {}
    for hf_split in ds:
        split = SPLIT_NAMES.get(hf_split)
        if split is None:
            errors.add(f"{name}[{hf_split}]", "unknown split name (expected train/validation/dev/test); ignored")
            continue
        out.setdefault(split, []).extend(
            convert_split(list(ds[hf_split]), split, f"{name}[{hf_split}]", Path(out_dir), errors, spider_dir))
    if "train" not in out:
        raise ValueError(f"Hugging Face dataset {name!r} has no train split (it has {sorted(ds)})")
    if "val" not in out:
        out["train"], out["val"] = jsonl_source.split_by_database(out["train"], val_fraction, seed)
    return out
