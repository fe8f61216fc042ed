"""Feature-cache eviction between evaluations running at once: an evaluation's entries are pinned until it ends."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest

from engine import store
from engine.correspondence import cache, features
from engine.correspondence import evaluate as ev


def _cache_keys() -> set[str]:
    with store.connect(read_only=True) as con:
        return {k for (k,) in con.execute("SELECT key FROM corr_feature_cache").fetchall()}


def _pins() -> int:
    with store.connect(read_only=True) as con:
        return con.execute("SELECT count(*) FROM corr_feature_pins").fetchone()[0]


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return int(done.stdout)


def test_a_concurrent_evaluations_eviction_spares_the_features_another_one_is_still_using(isolated_home, monkeypatch,
                                                                                         tiny_encoders):
    # a cap far below one evaluation's features, and no in-memory reuse: every read after encoding goes to the cache
    monkeypatch.setenv("LAW_EXPLORER_FEATURE_CACHE_GB", "1e-9")
    monkeypatch.setattr(features, "_MEMORY_LIMIT_BYTES", 0)
    seen: dict[str, set[str]] = {}
    second: list = []
    encoded: list[str] = []

    def note(done: int, total: int, message: str) -> None:
        if message.startswith("encoded") and done == total:
            encoded.append(message)

    def run_second_meanwhile() -> bool:
        # asked before each chunk is matched: the first time after the first evaluation wrote (and indexed) all its
        # features and before it read any of them back, the second evaluation runs to its end
        if encoded and not second:
            seen["first"] = _cache_keys()
            second.append(ev.evaluate("builtin", "test-tiny-pixels", limit=6, record=False,
                                      batch_size=4))  # fmt: skip
            seen["after second"] = _cache_keys()
        return False

    # some of its images cached already: its chunk is matched from the cache after the encoding (as a resumed or partly
    # cached run is), not beside it from memory, so the features it wrote are read back
    cached = ev.evaluate("builtin", "pixels-8", limit=3, record=False, batch_size=4).stats.images
    first = ev.evaluate("builtin", "pixels-8", limit=6, record=False, batch_size=4, progress=note,
                        cancelled=run_second_meanwhile)  # fmt: skip
    [other] = second
    assert first.stats.images == len(seen["first"]) > cached > 0
    # each image encoded once (none was evicted under it), the others read from the cache
    assert first.stats.images_encoded == first.stats.images - cached and first.stats.cache_hits == cached
    assert other.stats.images_encoded == other.stats.images and other.stats.cache_evicted == 0
    assert seen["first"] <= seen["after second"]  # the second's eviction left every entry of the first
    # when the first ends, the second's entries (a finished evaluation's, unpinned) go to respect the cap
    assert first.stats.cache_evicted == other.stats.images
    assert _cache_keys() == seen["first"] and _pins() == 0
    assert cache.enforce_limit() == first.stats.images and _cache_keys() == set()  # nothing pinned any more

    # the same interleaving without pins (what an evaluation did before): the first encodes what was evicted again
    monkeypatch.setattr(cache, "pinned", lambda keys: contextlib.nullcontext())
    second.clear()
    encoded.clear()
    ev.evaluate("builtin", "pixels-8", limit=3, record=False, batch_size=4)
    again = ev.evaluate("builtin", "pixels-8", limit=6, record=False, batch_size=4, progress=note,
                        cancelled=run_second_meanwhile)  # fmt: skip
    assert again.stats.images_encoded > again.stats.images


def test_a_pin_of_a_dead_process_is_ignored_and_removed_and_a_live_one_protects(isolated_home):
    ev.evaluate("builtin", "pixels-8", limit=3, record=False)
    keys = sorted(_cache_keys())
    assert len(keys) >= 2
    cache.pin("live-owner", keys[:1])  # this (live) process
    cache.pin("dead-owner", keys[1:])
    with store.connect() as con:  # as if a process that has exited had pinned them (a crashed evaluation)
        con.execute("UPDATE corr_feature_pins SET pid = ? WHERE owner = 'dead-owner'", [_dead_pid()])
    assert cache.enforce_limit(limit_bytes=0) == len(keys) - 1
    assert _cache_keys() == set(keys[:1])
    with store.connect(read_only=True) as con:
        assert {o for (o,) in con.execute("SELECT DISTINCT owner FROM corr_feature_pins").fetchall()} == {"live-owner"}
    # a pid reused by another process (another start time) does not keep a pin alive either
    with store.connect() as con:
        con.execute("UPDATE corr_feature_pins SET process_started = 'another start' WHERE owner = 'live-owner'")
    assert cache.enforce_limit(limit_bytes=0) == 1 and _cache_keys() == set() and _pins() == 0


def test_a_cancelled_evaluation_releases_its_pins(isolated_home):
    from engine.jobs.context import JobCancelled

    calls: list[str] = []

    def cancel_once_encoding(done: int, total: int, message: str) -> None:
        calls.append(message)

    with pytest.raises(JobCancelled):
        ev.evaluate("builtin", "pixels-8", limit=3, record=False, batch_size=1, progress=cancel_once_encoding,
                    cancelled=lambda: any(m.startswith("encoded") for m in calls))  # fmt: skip
    assert _pins() == 0
