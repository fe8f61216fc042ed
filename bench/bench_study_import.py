"""Time to import (or refuse) study files of 1e6 rows under the 10 MiB cap, and of the largest accepted size.

Usage: ``python bench/bench_study_import.py [--rows 1000000]``. Each case runs ``parse_study_file`` +
``save_study`` in an isolated state folder and prints seconds and the outcome (imported / refused: message),
plus the longest gap of a second thread that ticks every 10 ms meanwhile (what another app session, a thread of
the same Streamlit server, would feel).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _paper_csv(rows: int, scored: bool = False) -> bytes:
    # the densest layout: setting,A,C,mme with short base-36 names, ~10 bytes a row
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"

    def name(i: int) -> str:
        out = ""
        while True:
            i, r = divmod(i, 36)
            out = digits[r] + out
            if not i:
                return out

    body = "".join(f"{name(i)},{i % 7},{i % 5},{i % 3 if scored else ''}\n" for i in range(rows))
    return ("setting,A,C,mme\n" + body).encode()


def _tidy_csv(rows: int) -> bytes:
    return ("setting,benchmark,A,C,score\n" + "".join(f"s{i},mme,{i % 7},{i % 5},{i % 3}\n" for i in range(rows))).encode()


def _json(rows: int) -> bytes:
    settings = [{"setting": f"s{i}", "A": i % 7, "C": i % 5} for i in range(rows)]
    long = [{"setting": f"s{i}", "benchmark": "mme", "A": i % 7, "C": i % 5, "score": i % 3} for i in range(rows)]
    return json.dumps({"kind": "law-explorer-study", "version": 1, "name": "big", "meta": {},
                       "settings": settings, "long": long}).encode()


def _run(label: str, data: bytes) -> None:
    from engine.errors import InputError
    from engine.study import parse_study_file, save_study

    done = threading.Event()
    gaps = [0.0]

    def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.01)
            now = time.perf_counter()
            gaps[0] = max(gaps[0], now - last - 0.01)
            last = now

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    t0 = time.perf_counter()
    try:
        study = parse_study_file(data, name="bench-big")
        save_study(study, overwrite=True)
        outcome = f"imported ({len(study.setting_names):,} settings)"
    except InputError as exc:
        outcome = f"refused: {exc}"
    seconds = time.perf_counter() - t0
    done.set()
    ticker.join()
    print(f"{label:<34} {len(data) / 2**20:6.2f} MiB  {seconds:7.2f} s  other thread stalled <= {gaps[0] * 1000:5.0f} ms  "
          f"{outcome[:120]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    os.environ["LAW_EXPLORER_HOME"] = tempfile.mkdtemp(prefix="bench-study-")
    from engine.study.io import MAX_ROWS

    _run(f"paper CSV, {args.rows:,} rows", _paper_csv(args.rows))
    _run(f"tidy CSV, {args.rows:,} rows", _tidy_csv(args.rows))
    _run(f"JSON, {args.rows:,} rows", _json(args.rows))
    _run(f"paper CSV, {MAX_ROWS:,} rows (cap)", _paper_csv(MAX_ROWS, scored=True))
    _run(f"tidy CSV, {MAX_ROWS:,} rows (cap)", _tidy_csv(MAX_ROWS))
    _run(f"JSON, {MAX_ROWS // 2:,} rows", _json(MAX_ROWS // 2))


if __name__ == "__main__":
    main()
