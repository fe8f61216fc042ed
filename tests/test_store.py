"""The DuckDB store: schema registration, transactions, and retry while another process holds the lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from engine import store
from engine.errors import LawExplorerError

store.register_schema("test_store_kv", "CREATE TABLE IF NOT EXISTS test_kv (k VARCHAR PRIMARY KEY, v INTEGER)")


def test_write_then_read(isolated_home):
    with store.connect() as con:
        con.execute("INSERT INTO test_kv VALUES ('a', 1)")
    with store.connect(read_only=True) as con:
        assert con.execute("SELECT v FROM test_kv WHERE k = 'a'").fetchone() == (1,)


def test_failed_block_rolls_back(isolated_home):
    with pytest.raises(RuntimeError), store.connect() as con:
        con.execute("INSERT INTO test_kv VALUES ('b', 2)")
        raise RuntimeError("boom")
    with store.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM test_kv WHERE k = 'b'").fetchone() == (0,)


def _hold_lock(db_path, seconds: float) -> subprocess.Popen:
    code = textwrap.dedent(
        f"""
        import duckdb, sys, time
        con = duckdb.connect({str(db_path)!r})
        print("locked", flush=True)
        time.sleep({seconds})
        con.close()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_waits_for_another_process(isolated_home):
    from engine import config

    with store.connect() as con:
        con.execute("INSERT INTO test_kv VALUES ('c', 3)")
    holder = _hold_lock(config.db_path(), 1.5)
    start = time.monotonic()
    with store.connect(read_only=True, timeout_s=20) as con:
        value = con.execute("SELECT v FROM test_kv WHERE k = 'c'").fetchone()
    holder.wait()
    assert value == (3,)
    assert time.monotonic() - start >= 0.5


def test_gives_up_with_a_clear_message(isolated_home):
    from engine import config

    with store.connect() as con:
        con.execute("SELECT 1")
    holder = _hold_lock(config.db_path(), 4)
    try:
        with pytest.raises(LawExplorerError, match="locked by another process"), store.connect(timeout_s=0.5):
            pass
    finally:
        holder.wait()


def test_a_reader_thread_waits_for_a_writer_thread_of_the_same_process(isolated_home):
    """DuckDB refuses a read-only connection in a process holding a read-write one (a sweep's driver threads, app
    sessions): the store gives one connection at a time per process, so the reader sees the committed write."""
    import threading

    held = threading.Event()

    def write() -> None:
        with store.connect() as con:
            con.execute("INSERT INTO test_kv VALUES ('threads', 7)")
            held.set()
            time.sleep(0.5)  # still inside the transaction while the other thread asks for a connection

    writer = threading.Thread(target=write)
    writer.start()
    assert held.wait(30)
    with store.connect(read_only=True) as con:
        value = con.execute("SELECT v FROM test_kv WHERE k = 'threads'").fetchone()
    writer.join()
    assert value == (7,)
