"""DuckDB store: short-lived connections with lock retry, so the app and job workers never block each other.

DuckDB lets only one process hold the file read-write, and that blocks even readers in other
processes. Every access therefore opens a connection, does its work and closes it at once; a
connection that finds the file locked waits and retries. Modules declare their tables with
``register_schema``; the DDL is idempotent and runs on first use of each database file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from engine import config
from engine.errors import LawExplorerError, first_line

_SCHEMAS: dict[str, str] = {}
_initialised: set[tuple[str, tuple[str, ...]]] = set()
_init_lock = threading.Lock()
# DuckDB refuses a read-only connection in a process that holds a read-write one to the same file (and the reverse),
# and two threads' read-change-write would interleave: one connection at a time per process (threads of a sweep's
# driver, sessions of the app). Re-entrant: a thread that opens a connection inside its own ``with`` keeps working.
_process_lock = threading.RLock()


def register_schema(name: str, ddl: str) -> None:
    """Declare the tables of one module (``CREATE TABLE IF NOT EXISTS ...``; several statements allowed)."""
    _SCHEMAS[name] = ddl


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text or "being used by another" in text


def _open(path: Path, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if not _is_lock_error(exc) or time.monotonic() > deadline:
                if _is_lock_error(exc):
                    raise LawExplorerError(
                        f"the store {path} stayed locked by another process for {timeout_s:.0f} s"
                    ) from exc
                raise LawExplorerError(
                    f"the store {path} cannot be opened ({first_line(exc, 160)}); move the file away (a new, empty "
                    "store is created in its place) or point LAW_EXPLORER_DB / LAW_EXPLORER_HOME elsewhere"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _ensure_schema(path: Path, timeout_s: float) -> None:
    key = (str(path), tuple(sorted(_SCHEMAS)))
    if key in _initialised:
        return
    with _init_lock:
        if key in _initialised:
            return
        con = _open(path, read_only=False, timeout_s=timeout_s)
        try:
            for ddl in _SCHEMAS.values():
                con.execute(ddl)
        finally:
            con.close()
        _initialised.add(key)


@contextmanager
def connect(read_only: bool = False, timeout_s: float = 30.0, path: Path | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the store briefly; writes inside one ``with`` block are one transaction.

    Hold the connection only for the queries themselves, never across slow work.
    """
    db = Path(path) if path is not None else config.db_path()
    with _process_lock:
        _ensure_schema(db, timeout_s)
        con = _open(db, read_only=read_only, timeout_s=timeout_s)
        try:
            if read_only:
                yield con
            else:
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
        finally:
            con.close()
