"""Out-of-sample quality and speed of every law model (``law evaluate``) on paper-v3 and, when present, the
authors' released v1 table (../shared/reference). Target: ``auto`` on paper-v3 under 10 s on 2 cores."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.law import LAW_MODELS, evaluate_study
from engine.study import bundled_study
from engine.study.io import parse_study_file

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("LAW_EXPLORER_REFERENCE", ROOT.parent / "shared" / "reference"))
V1 = REFERENCE / "law_v1_released_ablations.csv"


def report(study, level: float = 0.8) -> None:
    print(f"\n{study.name}: leave one setting out of every benchmark, {level:.0%} jackknife+ intervals")
    print(f"{'model':<10} {'seconds':>8} {'vision':>7} {'ocr':>7} {'all':>7} {'coverage':>9} {'spearman':>9} "
          f"{'top1':>5} {'top3':>5}  chosen (auto: mean stacking weights over folds)")
    for model in LAW_MODELS:
        start = time.perf_counter()
        ev = evaluate_study(study, model, level)
        seconds = time.perf_counter() - start
        res = list(ev.benchmarks.values())
        rho = sum(r.spearman for r in res) / len(res)
        print(f"{model:<10} {seconds:>8.2f} {ev.mean.get('vision', float('nan')):>7.3f} {ev.mean.get('ocr', float('nan')):>7.3f} "
              f"{ev.mean['all']:>7.3f} {ev.coverage:>9.3f} {rho:>9.3f} {sum(r.top1_hit for r in res):>5} "
              f"{sum(r.top3_hit for r in res):>5}  {_chosen(ev)}")


def _chosen(ev) -> str:
    weights = [f["weights"] for f in ev.folds if "weights" in f]
    if not weights:
        return str(ev.chosen)
    return ", ".join(f"{k} {sum(w[k] for w in weights) / len(weights):.2f}" for k in weights[0])


def main() -> None:
    print(f"Law models bench (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; target: auto on paper-v3 < 10 s)")
    report(bundled_study())
    if V1.exists():
        report(parse_study_file(V1.read_bytes(), "released-v1"))
    else:
        print(f"\n(released v1 table not found at {V1}; set LAW_EXPLORER_REFERENCE)")


if __name__ == "__main__":
    main()
