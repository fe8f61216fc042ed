"""Pipeline timings: what the score-encoder page's 2 s live fragment costs (plan, status, launch) and place_on_law."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LAW_EXPLORER_HOME", tempfile.mkdtemp(prefix="law-explorer-bench-pipeline-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine import pipeline
from engine.study import load_study


def _median_ms(func, repeats: int = 7) -> float:
    func()  # warm caches (registry, bundled study)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def main() -> None:
    study = load_study("paper-v3")
    p = pipeline.plan("pixels-8", "paper-v3", limit=4)
    rows = [
        ("plan (3 store queries + study)", _median_ms(lambda: pipeline.plan("pixels-8", "paper-v3", limit=4))),
        ("status (re-plan + job lookups)", _median_ms(lambda: pipeline.status(p))),
        ("place_on_law (8 fits + LOO)", _median_ms(lambda: pipeline.place_on_law(study, "x", -2.0, 18.0))),
    ]
    print(f"LAW_EXPLORER_HOME={os.environ['LAW_EXPLORER_HOME']}")
    for name, ms in rows:
        print(f"{name:<34} {ms:8.1f} ms (median)")


if __name__ == "__main__":
    main()
