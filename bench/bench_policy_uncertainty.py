"""Speed of the ``uncertainty`` (optimistic) finetune order: ``policy simulate --strategy uncertainty`` per law model.

Usage: ``python bench/bench_policy_uncertainty.py [--models auto,paper] [--benchmarks mme,ok_vqa][--trials 1000]``;
prints wall and CPU seconds per benchmark and a hash of the orders, so two versions of the code can be compared
for speed and for equal results.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.policy.simulate import candidates, strategy_orders
from engine.study import bundled_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="auto,paper")
    parser.add_argument("--benchmarks", default="mme,ok_vqa")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--level", type=float, default=0.8)
    args = parser.parse_args()
    study = bundled_study()
    print(f"{study.name}: uncertainty orders, {args.trials} trials, seed {args.seed}, level {args.level}")
    print(f"{'model':<10} {'benchmark':<16} {'wall s':>8} {'cpu s':>8}  orders sha256")
    for model in args.models.split(","):
        total = cpu_total = 0.0
        for bench in args.benchmarks.split(","):
            cand = candidates(study, bench)
            start, cpu = time.perf_counter(), time.process_time()
            orders, _ = strategy_orders(cand, "uncertainty", args.trials, args.seed, model, args.level)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            total, cpu_total = total + seconds, cpu_total + cpu
            digest = hashlib.sha256(orders.tobytes()).hexdigest()[:16]
            print(f"{model:<10} {bench:<16} {seconds:>8.2f} {cpu:>8.2f}  {digest}")
        print(f"{model:<10} {'total':<16} {total:>8.2f} {cpu_total:>8.2f}")


if __name__ == "__main__":
    main()
