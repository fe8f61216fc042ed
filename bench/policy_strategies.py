"""The AC policy strategy table: mean Recall@T per strategy x metric x budget on paper-v3 and the released v1
table (when ../shared/reference or /work/shared/reference holds it), with the time each simulation takes.

python bench/policy_strategies.py [--trials 2000] [--seed 0] [--top 3] [--budgets 3,4] [--v1 PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.policy import METRICS, STRATEGIES, simulate  # noqa: E402
from engine.study import bundled_study, parse_study_file  # noqa: E402

V1_CANDIDATES = [ROOT.parent / "shared" / "reference", Path("/work/shared/reference")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--budgets", default="3,4")
    parser.add_argument("--v1", default=None, help="path of law_v1_released_ablations.csv")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    studies = [bundled_study()]
    v1 = Path(args.v1) if args.v1 else next((d / "law_v1_released_ablations.csv" for d in V1_CANDIDATES
                                             if (d / "law_v1_released_ablations.csv").exists()), None)
    if v1 is not None:
        studies.append(parse_study_file(v1, "v1-released"))
    print(f"mean Recall@{args.top} over benchmarks, {args.trials} trials, seed {args.seed}, paper ranking")
    print("| study | strategy | metric | " + " | ".join(f"k'={k}" for k in budgets) + " | chance | seconds |")
    print("|---|---|---|" + "---|" * (len(budgets) + 2))
    for study in studies:
        n = len(study.setting_names)
        for strategy in STRATEGIES:
            start = time.perf_counter()
            result = simulate(study, budget=min(budgets), trials=args.trials, seed=args.seed, top=args.top,
                              strategy=strategy)
            seconds = time.perf_counter() - start
            for metric in METRICS:
                cells = " | ".join(f"{result.mean_recall(k, metric):.3f}" for k in budgets)
                chance = ", ".join(f"{k / n:.2f}" for k in budgets)
                print(f"| {study.name} | {strategy} | {metric} | {cells} | {chance} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
