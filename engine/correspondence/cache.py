"""On-disk fp16 feature cache: one ``.npy`` per (encoder, weights, preprocessing, layer, image), LRU-capped, in DuckDB;
entries pinned by evaluations in progress are not evicted."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine import config, store
from engine.atomic import atomic_path
from engine.hashing import hash_obj

CACHE_VERSION = 1

store.register_schema(
    "correspondence_features",
    """
    CREATE TABLE IF NOT EXISTS corr_feature_cache (
        key VARCHAR PRIMARY KEY,
        path VARCHAR NOT NULL,
        bytes BIGINT NOT NULL,
        encoder VARCHAR,
        weights_hash VARCHAR,
        image_key VARCHAR,
        shape VARCHAR,
        patch_size DOUBLE,
        stride DOUBLE,
        created DOUBLE,
        last_used DOUBLE
    );
    """,
)


store.register_schema(
    "correspondence_feature_pins",
    """
    CREATE TABLE IF NOT EXISTS corr_feature_pins (
        owner VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        pid BIGINT,
        host VARCHAR,
        process_started VARCHAR,
        created DOUBLE
    );
    """,
)

# A pin whose process cannot be checked (another host sharing LAW_EXPLORER_HOME) stops protecting after this long.
PIN_TIMEOUT_S = 48 * 3600.0

_COLUMNS = ["key", "path", "bytes", "encoder", "weights_hash", "image_key", "shape", "patch_size", "stride", "created",
            "last_used"]


@dataclass
class CachedFeatures:
    """C x h x w fp16 features of one image plus the grid geometry they came with."""

    features: np.ndarray
    patch_size: float
    stride: float


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    written: int = 0
    evicted: int = 0
    keys_seen: set[str] = field(default_factory=set)


def feature_key(
    encoder_name: str, weights_hash: str, preprocessing: dict, layer: str, image_key: str, precision: str = "fp32"
) -> str:
    """Content key of one image's features; ``precision`` other than fp32 (tf32, bf16) keys its own entries, so
    features computed at different forward precisions never mix (fp32 keys are unchanged from earlier versions)."""
    parts = {
        "v": CACHE_VERSION,
        "encoder": encoder_name,
        "weights": weights_hash,
        "pre": preprocessing,
        "layer": layer,
        "image": image_key,
    }
    if precision != "fp32":
        parts["precision"] = precision
    return hash_obj(parts, length=32)


def features_folder() -> Path:
    return config.subdir("features")


def lookup(keys: list[str]) -> dict[str, tuple[str, float, float]]:
    """key -> (path, patch_size, stride) for the keys present in the index (and on disk)."""
    if not keys:
        return {}
    found: dict[str, tuple[str, float, float]] = {}
    with store.connect(read_only=True) as con:
        for start in range(0, len(keys), 2000):
            chunk = keys[start : start + 2000]
            rows = con.execute(
                "SELECT key, path, patch_size, stride FROM corr_feature_cache WHERE key IN (SELECT unnest(?))", [chunk]
            ).fetchall()
            for key, path, patch, stride in rows:
                found[key] = (path, patch, stride)
    return {k: v for k, v in found.items() if os.path.exists(v[0])}


def has_features(encoder: str) -> bool:
    """Whether any features of this encoder (by name, any weights, dataset or protocol) are cached."""
    with store.connect(read_only=True) as con:
        return con.execute("SELECT 1 FROM corr_feature_cache WHERE encoder = ? LIMIT 1", [encoder]).fetchone() is not None


def load(path: str, patch_size: float, stride: float) -> CachedFeatures:
    return CachedFeatures(np.load(path, allow_pickle=False), patch_size, stride)


def touch(keys: list[str]) -> None:
    """Mark entries as used now (LRU order)."""
    if not keys:
        return
    with store.connect() as con:
        con.execute("UPDATE corr_feature_cache SET last_used = ? WHERE key IN (SELECT unnest(?))", [time.time(), keys])


def write_files(entries: list[tuple[str, np.ndarray, float, float, str, str, str]]) -> list[tuple]:
    """Write each (key, C x h x w array, patch_size, stride, encoder, weights_hash, image_key) as an fp16 ``.npy``
    (atomic rename); returns the index rows for :func:`insert_rows`."""
    rows = []
    folder = features_folder()
    now = time.time()
    for key, array, patch, stride, encoder, weights, image_key in entries:
        sub = folder / key[:2]
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{key}.npy"
        arr = np.ascontiguousarray(array, dtype=np.float16)
        with atomic_path(path, suffix=".npy") as tmp:  # np.save appends .npy to any other name
            np.save(tmp, arr, allow_pickle=False)
        size = path.stat().st_size
        rows.append((key, str(path), size, encoder, weights, image_key, "x".join(map(str, arr.shape)), patch, stride, now, now))
    return rows


def insert_rows(rows: list[tuple]) -> None:
    """Index written files in one statement (``executemany`` costs ~10 ms a row: 0.3-0.6 s for a batch of 64)."""
    if not rows:
        return
    frame = pd.DataFrame(rows, columns=_COLUMNS)
    with store.connect() as con:
        con.register("new_feature_rows", frame)
        try:
            con.execute("INSERT OR REPLACE INTO corr_feature_cache SELECT * FROM new_feature_rows")
        finally:
            con.unregister("new_feature_rows")


def save_many(entries: list[tuple[str, np.ndarray, float, float, str, str, str]]) -> int:
    """Write (key, C x h x w array, patch_size, stride, encoder, weights_hash, image_key) as fp16; returns bytes."""
    rows = write_files(entries)
    insert_rows(rows)
    return sum(int(r[2]) for r in rows)


def _process_started(pid: int) -> str | None:
    """The start time of a process on this host (tells a reused pid apart), None where it cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pin_alive(pid: int | None, host: str | None, started: str | None, created: float | None, now: float) -> bool:
    """Whether a pin still protects: its process lives (the same process: same start time), or, where that cannot be
    told (another host), it is younger than ``PIN_TIMEOUT_S``."""
    from engine.jobs.state import process_alive

    alive = process_alive(pid, host)
    if alive is None:
        return now - float(created or 0.0) < PIN_TIMEOUT_S
    return alive and (started is None or _process_started(int(pid)) in (None, started))


def pin(owner: str, keys: Iterable[str]) -> None:
    """Keep these entries from eviction for ``owner`` (an evaluation in progress), tied to this process."""
    unique = list(dict.fromkeys(keys))
    if not unique:
        return
    pid = os.getpid()
    frame = pd.DataFrame({"owner": owner, "key": unique, "pid": pid, "host": socket.gethostname(),
                          "process_started": _process_started(pid), "created": time.time()})  # fmt: skip
    with store.connect() as con:
        con.register("new_feature_pins", frame)
        try:
            con.execute("INSERT INTO corr_feature_pins SELECT owner, key, pid, host, process_started, created "
                        "FROM new_feature_pins")  # fmt: skip
        finally:
            con.unregister("new_feature_pins")


def unpin(owner: str) -> None:
    with store.connect() as con:
        con.execute("DELETE FROM corr_feature_pins WHERE owner = ?", [owner])


@contextlib.contextmanager
def pinned(keys: Iterable[str]) -> Iterator[str]:
    """Pin ``keys`` while the block runs (the entries an evaluation writes or will read: another evaluation's
    eviction leaves them alone), released when it ends however it ends; a crashed process's pins are ignored."""
    owner = secrets.token_hex(8)
    pin(owner, keys)
    try:
        yield owner
    finally:
        with contextlib.suppress(Exception):  # the store failing now must not hide the block's own error; the
            unpin(owner)  # pins then lapse with this process


def _live_pins(con) -> tuple[set[str], list[str]]:
    """Keys pinned by live owners, and the owners whose process is gone (their pins are stale)."""
    now = time.time()
    owners = con.execute("SELECT owner, any_value(pid), any_value(host), any_value(process_started), min(created) "
                         "FROM corr_feature_pins GROUP BY owner").fetchall()  # fmt: skip
    live = [o for o, pid, host, started, created in owners if _pin_alive(pid, host, started, created, now)]
    dead = [o for o, *_ in owners if o not in set(live)]
    if not live:
        return set(), dead
    keys = con.execute("SELECT DISTINCT key FROM corr_feature_pins WHERE owner IN (SELECT unnest(?))", [live]).fetchall()
    return {k for (k,) in keys}, dead


def enforce_limit(limit_bytes: int | None = None, protect: set[str] | None = None) -> int:
    """Evict least-recently-used entries until the cache fits ``limit_bytes``, never one in ``protect`` or pinned by
    an evaluation in progress (:func:`pinned`; the cache may then stay over the cap until it ends); returns the
    number evicted."""
    limit = config.feature_cache_limit_bytes() if limit_bytes is None else int(limit_bytes)
    protect = set(protect or ())
    with store.connect(read_only=True) as con:
        total = con.execute("SELECT coalesce(sum(bytes), 0) FROM corr_feature_cache").fetchone()[0]
        if total <= limit:
            return 0
        rows = con.execute("SELECT key, path, bytes FROM corr_feature_cache ORDER BY last_used ASC").fetchall()
        pinned_keys, dead_owners = _live_pins(con)
    protect |= pinned_keys
    victims = []
    for key, path, size in rows:
        if total <= limit:
            break
        if key in protect:
            continue
        victims.append((key, path))
        total -= size
    with store.connect() as con:
        con.execute("DELETE FROM corr_feature_cache WHERE key IN (SELECT unnest(?))", [[k for k, _ in victims]])
        if dead_owners:
            con.execute("DELETE FROM corr_feature_pins WHERE owner IN (SELECT unnest(?))", [dead_owners])
    for _, path in victims:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    return len(victims)


def cache_summary() -> dict:
    """Entries and bytes in the feature cache, and its cap."""
    with store.connect(read_only=True) as con:
        count, size = con.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM corr_feature_cache").fetchone()
    return {"entries": int(count), "bytes": int(size), "limit_bytes": config.feature_cache_limit_bytes()}
