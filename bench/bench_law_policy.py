"""Speed of the law fit and the AC policy simulation on the bundled paper-v3 study (prints a small report)."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.law import fit_benchmark, fit_study
from engine.policy import recall_curve, simulate
from engine.study import bundled_study


def timed(func, repeat: int) -> tuple[float, float]:
    """Median and best wall time in ms over ``repeat`` runs (after one warm-up)."""
    func()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        runs.append(1000 * (time.perf_counter() - start))
    return statistics.median(runs), min(runs)


def main() -> None:
    study = bundled_study()
    rows = [
        ("fit_benchmark x 8 (ac_poly, incl. LOO)", timed(lambda: [fit_benchmark(study, b).loo_rmse for b in study.benchmarks], 20), 50),
        ("fit_study (6 feature sets, LOO, 200 random trials)", timed(lambda: fit_study(study), 20), 50),
        ("simulate 1000 trials x 8 benchmarks (paper)", timed(lambda: simulate(study, trials=1000), 3), 5000),
        ("simulate 1000 trials x 8 benchmarks (measured)", timed(lambda: simulate(study, trials=1000, variant="measured"), 3), 5000),
        ("recall_curve budgets 2..15, 1000 trials", timed(lambda: recall_curve(study, trials=1000), 3), None),
    ]
    print(f"Law Explorer law/policy bench (paper-v3, {len(study.benchmarks)} benchmarks, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})")
    for name, (median, best), target in rows:
        goal = f"  target < {target} ms {'OK' if median < target else 'SLOW'}" if target else ""
        print(f"  {name:<55} median {median:8.1f} ms  best {best:8.1f} ms{goal}")


if __name__ == "__main__":
    main()
