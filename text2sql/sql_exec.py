"""Run untrusted (model-generated) SQL on a SQLite database, read-only, with a time limit and a row cap.

Four independent layers, so that a mistake in one is caught by another:

1. The file is opened through a read-only URI (`file:...?mode=ro`): SQLite itself refuses every write.
2. An authorizer that allows reads only. It is an allow-list, not a deny-list: SELECT, reading a column,
   calling a (non-blocklisted) function and recursive CTEs pass; everything else (INSERT/UPDATE/DELETE,
   CREATE/DROP, ATTACH, which also covers `VACUUM INTO` (it writes a new file even on a read-only
   database), PRAGMA of any kind, transactions) is denied. `load_extension()` is denied by name.
3. A progress handler that aborts the statement once its wall-clock deadline has passed, so an endless
   recursive CTE or a huge cross join ends with an error within the limit.
4. A cap on the rows fetched and SQLite's length limit on strings/blobs (`randomblob(1e9)` fails fast).

Only one statement runs per call (sqlite3 refuses "a; b").

`execute_sql` returns an `ExecResult` instead of raising: the caller (evaluation, the sampler) wants
"this SQL failed because ..." as data, not as an exception.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MAX_ROWS = 10_000
MAX_VALUE_BYTES = 1_000_000  # SQLITE_LIMIT_LENGTH: the longest string or blob a query may build

_ALLOWED_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}


class SQLExecutionError(ValueError):
    """Raised by `execute_sql_or_raise` for SQL that failed (denied, timed out, or invalid)."""


@dataclass
class ExecResult:
    """What happened when one query ran. `ok` is False when `error` says why it failed."""

    rows: list[tuple] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    error: str | None = None
    truncated: bool = False  # more rows existed than max_rows
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def _authorizer(action, arg1, arg2, db_name, trigger):
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def open_readonly(db_path: str | Path) -> sqlite3.Connection:
    """A connection to an existing SQLite file that can only read. Raises FileNotFoundError."""
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"SQLite database {path} does not exist")
    # as_uri() percent-encodes odd characters in the path ('?', '#', spaces) so they cannot inject URI
    # parameters. mode=ro: never write; the connection cannot create the file or a journal.
    uri = path.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
    conn.set_authorizer(_authorizer)
    # Text columns with invalid UTF-8 (seen in real datasets) should not make a whole query fail.
    conn.text_factory = lambda b: b.decode("utf-8", errors="replace")
    return conn


def execute_sql(
    db_path: str | Path,
    sql: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_rows: int = DEFAULT_MAX_ROWS,
    conn: sqlite3.Connection | None = None,
) -> ExecResult:
    """Run one SQL statement read-only on `db_path`; never raises for bad SQL, returns the error instead.

    `conn` lets a caller reuse a connection made by `open_readonly` for many queries on one database.
    """
    start = time.perf_counter()
    own = conn is None
    try:
        if own:
            conn = open_readonly(db_path)
    except (FileNotFoundError, sqlite3.Error) as e:
        return ExecResult(error=f"cannot open database: {e}", seconds=time.perf_counter() - start)
    deadline = start + timeout_s
    timed_out = False

    def progress() -> int:  # called every N virtual-machine steps; non-zero aborts the statement
        nonlocal timed_out
        if time.perf_counter() > deadline:
            timed_out = True
            return 1
        return 0

    conn.set_progress_handler(progress, 1000)
    try:
        cursor = conn.execute(sql)
        rows = cursor.fetchmany(max_rows + 1)
        columns = [d[0] for d in cursor.description or []]
        truncated = len(rows) > max_rows
        return ExecResult(rows=[tuple(r) for r in rows[:max_rows]], columns=columns, truncated=truncated,
                          seconds=time.perf_counter() - start)
    except sqlite3.Error as e:  # also covers sqlite3.Warning-like "one statement at a time" errors
        msg = f"timed out after {timeout_s:g} s" if timed_out else f"{type(e).__name__}: {e}"
        return ExecResult(error=msg, seconds=time.perf_counter() - start)
    except (sqlite3.Warning, ValueError, OverflowError, MemoryError) as e:
        return ExecResult(error=f"{type(e).__name__}: {e}", seconds=time.perf_counter() - start)
    finally:
        conn.set_progress_handler(None, 0)
        if own:
            conn.close()


def execute_sql_or_raise(db_path: str | Path, sql: str, **kwargs) -> ExecResult:
    """`execute_sql`, raising SQLExecutionError with the reason when the query fails."""
    result = execute_sql(db_path, sql, **kwargs)
    if not result.ok:
        raise SQLExecutionError(f"{result.error} (query: {sql!r}, database: {db_path})")
    return result


def format_rows(result: ExecResult, limit: int = 10) -> str:
    """A small text table of a result for printing (the sampler and the demo use it)."""
    if not result.ok:
        return f"error: {result.error}"
    lines = [" | ".join(result.columns)] if result.columns else []
    for row in result.rows[:limit]:
        lines.append(" | ".join("NULL" if v is None else str(v) for v in row))
    more = len(result.rows) - limit
    if more > 0 or result.truncated:
        lines.append(f"... ({len(result.rows)}{'+' if result.truncated else ''} rows)")
    if not result.rows:
        lines.append("(no rows)")
    return "\n".join(lines)
