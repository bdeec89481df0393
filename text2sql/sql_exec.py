"""Run untrusted (model-generated) SQL on a SQLite database, read-only and bounded in time, memory, result
size and files touched, whatever the SQL.

Every query runs in a small worker process (this file run as a script: the standard library only), so that
what SQLite cannot interrupt is still bounded:

1. Time. A progress handler aborts the statement at its deadline (clean error, worker kept). One function
   call the handler cannot interrupt (`printf('%.*c', 1e9, 'x')`) is ended by the parent, which kills the
   worker at `KILL_AFTER` x the limit (and RLIMIT_CPU in the worker is a backstop should the parent die).
   The next query gets a fresh worker (started at once, in the background).
2. Memory. The worker's address space is capped at `MEMORY_LIMIT_BYTES` (RLIMIT_AS) and SQLite's own heap
   at `SQLITE_HEAP_LIMIT_BYTES`; a row of 1500 x `zeroblob(999999)` fails with "out of memory" instead of
   taking gigabytes from the caller.
3. Result size. At most `max_rows` rows (then `truncated`) and `MAX_RESULT_BYTES` in all (then an error).
4. Files. The database is opened `mode=ro&immutable=1`: no lock, no `-shm`/`-wal`/journal file is created
   next to it (a WAL database opened plain read-only gets both, left behind), and no busy wait on a writer's
   lock. Temporary tables/sorts stay in memory (`temp_store=MEMORY`, inside the memory cap) and the worker
   may not write any file at all (RLIMIT_FSIZE = 0). Because immutable skips SQLite's recovery, a database
   with a live write-ahead log or a hot rollback journal beside it is refused with a message, not read
   half-written.
5. What may run. An allow-list authorizer: SELECT, reading a column, calling a (non-blocklisted) function
   and recursive CTEs pass; everything else (INSERT/UPDATE/DELETE, CREATE/DROP, ATTACH, which also covers
   `VACUUM INTO`, PRAGMA of any kind, transactions) is denied; `load_extension()` is denied by name. One
   statement per call (sqlite3 refuses "a; b").

`execute_sql` returns an `ExecResult` instead of raising: the caller (evaluation, the sampler) wants
"this SQL failed because ..." as data, not as an exception. Queries from one process go through one
worker, one at a time (a lock makes it safe to call from threads).
"""
from __future__ import annotations

import marshal
import os
import sqlite3
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MAX_ROWS = 10_000
MAX_VALUE_BYTES = 1_000_000          # SQLITE_LIMIT_LENGTH: the longest string or blob a query may build
MAX_SQL_BYTES = 1_000_000            # SQLITE_LIMIT_SQL_LENGTH: the longest statement accepted
MAX_RESULT_BYTES = 64 * 2**20        # all values of one result together (strings/blobs by length, 8 B else)
MEMORY_LIMIT_BYTES = 512 * 2**20     # the worker's whole address space (RLIMIT_AS)
SQLITE_HEAP_LIMIT_BYTES = 256 * 2**20  # SQLite's own allocations (PRAGMA hard_heap_limit), inside the above
KILL_AFTER = 1.25                    # the parent kills a worker still busy at this multiple of the limit
WORKER_START_TIMEOUT_S = 60.0        # a worker that is not ready by then is reported as an error

_ALLOWED_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
_JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")  # the header of a rollback journal still to be played back


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
    worker_peak_mb: float | None = None  # peak resident memory of the worker process so far (an upper bound)

    @property
    def ok(self) -> bool:
        return self.error is None


def _authorizer(action, arg1, arg2, db_name, trigger):
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _check_no_pending_writes(path: Path) -> None:
    """immutable=1 ignores a write-ahead log and a hot journal; refuse rather than read a half-written file."""
    wal = Path(str(path) + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        raise ValueError(f"database {path} has a write-ahead log ({wal.name}, {wal.stat().st_size} bytes): it is "
                         f"being written or was not checkpointed; close the writer or run "
                         f"`sqlite3 {path} 'PRAGMA wal_checkpoint(TRUNCATE)'`, then retry")
    journal = Path(str(path) + "-journal")
    if journal.is_file():
        with open(journal, "rb") as f:
            if f.read(8) == _JOURNAL_MAGIC:
                raise ValueError(f"database {path} has a rollback journal ({journal.name}): a write is in "
                                 f"progress or was interrupted; open it once with sqlite3 to recover, then retry")


def open_readonly(db_path: str | Path) -> sqlite3.Connection:
    """A connection to an existing SQLite file that can only read and creates no file next to it.

    Raises FileNotFoundError, or ValueError for a database with pending writes (see `_check_no_pending_writes`).
    In-process use has no time or memory bound: untrusted SQL goes through `execute_sql`.
    """
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"SQLite database {path} does not exist")
    _check_no_pending_writes(path)
    # as_uri() percent-encodes odd characters in the path ('?', '#', spaces) so they cannot inject URI
    # parameters. mode=ro: never write. immutable=1: no locks, no -shm/-wal/journal files, no busy waits.
    uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=0)
    conn.execute("PRAGMA temp_store = MEMORY")  # sorts/DISTINCT/temp b-trees never spill to temp files
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_BYTES)
    conn.set_authorizer(_authorizer)
    # Text columns with invalid UTF-8 (seen in real datasets) should not make a whole query fail.
    conn.text_factory = lambda b: b.decode("utf-8", errors="replace")
    return conn


# ----------------------------------------------------------------------------------------------------
# The worker: this file run as `python -I -S sql_exec.py --worker`. Frames on stdin/stdout are a 4-byte
# length and a marshal payload (marshal: plain values only, nothing executable).


def _send(fd: int, obj) -> None:
    data = marshal.dumps(obj)
    data = struct.pack("<I", len(data)) + data
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """n bytes from fd, or None at end of file; TimeoutError once `deadline` (perf_counter) passes."""
    import select

    chunks, got = [], 0
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while got < n:
        if deadline is not None:
            wait_ms = (deadline - time.perf_counter()) * 1000
            if wait_ms <= 0 or not poller.poll(wait_ms):
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _recv(fd: int, deadline: float | None = None):
    head = _read_exact(fd, 4, deadline)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack("<I", head)[0], deadline)
    return None if body is None else marshal.loads(body)


def _peak_mb(pid: int | str = "self") -> float | None:
    """Peak resident memory (VmHWM) of a live process in MB. Not ru_maxrss: after fork+exec Linux carries
    the parent's peak into the child's, so a worker started by a 400 MB process would report 400 MB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _run_query(conns: dict, db_path: str, sql: str, timeout_s: float, max_rows: int, max_bytes: int) -> tuple:
    """One query in the worker -> ("ok", rows, columns, truncated) or ("error", message)."""
    path = Path(db_path)
    try:
        st = path.stat()
        key, sig = str(path.resolve()), (st.st_ino, st.st_size, st.st_mtime_ns)
        if key in conns and conns[key][1] != sig:  # the file changed: immutable=1 would not notice
            conns.pop(key)[0].close()
        if key not in conns:
            _check_no_pending_writes(path)
            while len(conns) >= 4:
                conns.pop(next(iter(conns)))[0].close()
            conns[key] = (open_readonly(path), sig)
        else:
            _check_no_pending_writes(path)
        conn = conns[key][0]
    except FileNotFoundError:
        return ("error", f"cannot open database: SQLite database {path} does not exist")
    except (ValueError, OSError, sqlite3.Error) as e:
        return ("error", f"cannot open database: {e}")

    deadline = time.perf_counter() + timeout_s
    timed_out = False

    def progress() -> int:  # called every N virtual-machine steps; non-zero aborts the statement
        nonlocal timed_out
        if time.perf_counter() > deadline:
            timed_out = True
            return 1
        return 0

    conn.set_progress_handler(progress, 1000)
    rows: list = []
    try:
        cursor = conn.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        size, truncated = 0, False
        while True:
            batch = cursor.fetchmany(64)
            if not batch:
                break
            for row in batch:
                if len(rows) == max_rows:
                    truncated = True
                    break
                size += 8 * len(row) + sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in row)
                if size > max_bytes:
                    return ("error", f"result too large: more than {max_bytes / 2**20:g} MB "
                                     f"(after {len(rows)} rows); ask for fewer rows or columns")
                rows.append(tuple(row))
            if truncated:
                break
        return ("ok", rows, columns, truncated)
    except MemoryError:
        rows.clear()
        return ("error", f"out of memory: the query needed more than {MEMORY_LIMIT_BYTES // 2**20} MB")
    except sqlite3.Error as e:
        if timed_out:
            return ("error", f"timed out after {timeout_s:g} s")
        return ("error", f"{type(e).__name__}: {e}")
    except Exception as e:  # sqlite3.Warning ("one statement at a time"), OverflowError, ...
        return ("error", f"{type(e).__name__}: {e}")
    finally:
        conn.set_progress_handler(None, 0)


def _worker_main() -> None:
    import resource
    import signal

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file write then fails with an error, not a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    probe = sqlite3.connect(":memory:")
    probe.execute(f"PRAGMA hard_heap_limit = {SQLITE_HEAP_LIMIT_BYTES}")  # process-wide
    probe.close()
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    _send(fd_out, ("ready",))
    conns: dict = {}
    while True:
        request = _recv(fd_in)
        if request is None:  # the parent closed the pipe (or died)
            return
        db_path, sql, timeout_s, max_rows, max_bytes = request
        used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        cpu_cap = int(used + timeout_s * KILL_AFTER) + 2  # backstop should the parent not kill us
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_cap, resource.RLIM_INFINITY))
        reply = _run_query(conns, db_path, sql, timeout_s, max_rows, max_bytes)
        try:
            _send(fd_out, reply + (_peak_mb(),))
        except (MemoryError, ValueError):
            _send(fd_out, ("error", "out of memory: the result could not be sent", _peak_mb()))


# ----------------------------------------------------------------------------------------------------
# The parent side


class _Worker:
    def __init__(self):
        import subprocess

        self.proc = subprocess.Popen([sys.executable, "-I", "-S", str(Path(__file__).resolve()), "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        self.ready = False

    def wait_ready(self) -> None:
        if not self.ready:
            reply = _recv(self.proc.stdout.fileno(), time.perf_counter() + WORKER_START_TIMEOUT_S)
            if reply != ("ready",):
                raise RuntimeError(f"SQL worker did not start ({sys.executable} {__file__} --worker)")
            self.ready = True

    def kill(self) -> tuple[int, float | None]:
        """Kill and reap the worker -> (wait status, its peak memory in MB when it could be read)."""
        peak = None
        if self.proc.returncode is None:
            peak = _peak_mb(self.proc.pid)
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            _, status = os.waitpid(self.proc.pid, 0)
            self.proc.returncode = -9
        else:
            status = 0
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        return status, peak

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # the worker exits at end of input
            self.proc.wait(timeout=2)
        except Exception:
            self.kill()


_lock = threading.Lock()
_worker: _Worker | None = None
_worker_pid = -1  # the process that started _worker (a forked child must start its own)


def _get_worker() -> _Worker:
    global _worker, _worker_pid
    if _worker is None or _worker_pid != os.getpid() or _worker.proc.poll() is not None:
        if _worker is None:
            import atexit

            atexit.register(shutdown_worker)
        _worker, _worker_pid = _Worker(), os.getpid()
    return _worker


def shutdown_worker() -> None:
    """Stop this process's SQL worker (it is started again on the next query)."""
    global _worker
    with _lock:
        if _worker is not None and _worker_pid == os.getpid():
            _worker.close()
        _worker = None


def execute_sql(
    db_path: str | Path,
    sql: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_result_bytes: int = MAX_RESULT_BYTES,
) -> ExecResult:
    """Run one SQL statement read-only on `db_path`; never raises for bad SQL, returns the error instead.

    Ends within KILL_AFTER x `timeout_s` (plus the start of a worker, ~0.05 s, when the last one was killed),
    in at most MEMORY_LIMIT_BYTES, whatever the SQL.
    """
    global _worker
    if not (timeout_s > 0):
        raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
    with _lock:
        try:
            worker = _get_worker()
            worker.wait_ready()
        except (OSError, RuntimeError, TimeoutError) as e:
            if _worker is not None:
                _worker.kill()
                _worker = None
            return ExecResult(error=f"cannot start the SQL worker: {e}")
        start = time.perf_counter()
        try:
            _send(worker.proc.stdin.fileno(), (str(db_path), sql, float(timeout_s), int(max_rows),
                                               int(max_result_bytes)))
            reply = _recv(worker.proc.stdout.fileno(), start + timeout_s * KILL_AFTER)
        except TimeoutError:
            reply = "timeout"
        except (OSError, ValueError, EOFError):  # broken pipe, garbled frame: the worker died
            reply = None
        seconds = time.perf_counter() - start
        if isinstance(reply, tuple) and reply and reply[0] in ("ok", "error"):
            if reply[0] == "ok":
                _, rows, columns, truncated, peak = reply
                return ExecResult(rows=rows, columns=columns, truncated=truncated, seconds=seconds,
                                  worker_peak_mb=peak)
            return ExecResult(error=reply[1], seconds=seconds, worker_peak_mb=reply[2])
        # Killed at the deadline, or died on its own (CPU limit, a crash): reap it and start the next one now,
        # so its start-up overlaps the caller's work instead of the next query's time limit.
        status, peak = worker.kill()
        _worker = None
        _get_worker()
        if reply == "timeout":
            error = f"timed out after {timeout_s:g} s (query process killed)"
        elif os.WIFSIGNALED(status) and os.WTERMSIG(status) == 24:  # SIGXCPU: the CPU-time backstop
            error = f"timed out after {timeout_s:g} s (CPU limit)"
        else:
            error = f"the query process died (wait status {status}); the query may need too much memory"
        return ExecResult(error=error, seconds=time.perf_counter() - start, worker_peak_mb=peak)


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


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker_main()
