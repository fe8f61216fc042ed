"""Choose ``auto``'s stack members on synthetic studies, not on the two tables the targets are measured on.

Design A stacks paper, linear, ridge and multitask; design G stacks only the penalised ridge and multitask. Both
were run on paper-v3 and the released v1 table (docs/law.md), so choosing between them there would be choosing on
the evaluation data. This script decides on fresh synthetic studies instead. Everything below was fixed before
the first run:

- a study: n in {12, 15} settings, 8 benchmarks; A ~ U(0, 1), C = (A + U(0, 1)) / 2; features [A, C, A², AC, C²];
  score_b = features @ beta_b + noise, noise variance set so the true law explains 85% of the variance;
- scenarios: ``shared`` beta_b = w + 0.3 z_b (w, z_b standard normal: benchmarks share the law's shape, the
  issue's premise), ``independent`` beta_b standard normal each, ``linear`` as shared with zero quadratic terms;
- 25 studies per scenario and n (seeded); metric: mean over benchmarks of the leave-one-setting-out R²;
- rule: G replaces A if its mean is at least A's in two of the three scenarios (averaged over n) and never more
  than 0.02 below A's.

Run: ``python bench/bench_auto_designs.py`` (about 10 min on 2 cores).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from engine.law.models.auto import AutoFamily
from engine.law.models.base import LawModel
from engine.law.models.multitask import MultitaskFamily
from engine.law.models.paper import LINEAR, PAPER
from engine.law.models.ridge import RidgeFamily
from engine.law.ols import r2_score

DESIGNS = {
    "A (paper, linear, ridge, multitask)": lambda: AutoFamily((PAPER, LINEAR, RidgeFamily(), MultitaskFamily())),
    "G (ridge, multitask)": lambda: AutoFamily((RidgeFamily(), MultitaskFamily())),
    "multitask alone": MultitaskFamily,
}
SCENARIOS = ("shared", "independent", "linear")
N_SETTINGS = (12, 15)
STUDIES = 25
BENCHMARKS = 8
SIGNAL_SHARE = 0.85


def synthetic_study(scenario: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A, C, scores (n, B) of one synthetic study drawn as the module docstring says."""
    a = rng.uniform(0, 1, n)
    c = (a + rng.uniform(0, 1, n)) / 2
    X = np.column_stack([a, c, a * a, a * c, c * c])
    if scenario == "independent":
        beta = rng.normal(size=(BENCHMARKS, 5))
    else:
        beta = rng.normal(size=5) + 0.3 * rng.normal(size=(BENCHMARKS, 5))
        if scenario == "linear":
            beta[:, 2:] = 0.0
    signal = X @ beta.T
    noise_sd = np.sqrt(signal.var(axis=0) * (1 - SIGNAL_SHARE) / SIGNAL_SHARE)
    y = signal + rng.normal(size=signal.shape) * noise_sd
    return np.tile(a[:, None], (1, BENCHMARKS)), np.tile(c[:, None], (1, BENCHMARKS)), y


def loo_r2(family, a: np.ndarray, c: np.ndarray, y: np.ndarray) -> float:
    """Mean over benchmarks of the leave-one-setting-out R² (the setting leaves every benchmark at once)."""
    law = LawModel("design", family)
    n = len(y)
    pred = np.empty_like(y)
    for k in range(n):
        keep = np.arange(n) != k
        cand = law.select(a[keep], c[keep], y[keep])
        pred[k] = cand.predictor.predict(a[k : k + 1], c[k : k + 1])[0]
    return float(np.mean([r2_score(y[:, b], pred[:, b]) for b in range(y.shape[1])]))


def main() -> None:
    print(f"auto designs on synthetic studies ({STUDIES} per scenario and n; mean leave-one-setting-out R²)")
    means: dict[str, dict[str, float]] = {d: {} for d in DESIGNS}
    for scenario in SCENARIOS:
        for n in N_SETTINGS:
            rng = np.random.default_rng([SCENARIOS.index(scenario), n])
            studies = [synthetic_study(scenario, n, rng) for _ in range(STUDIES)]
            row = []
            for design, make in DESIGNS.items():
                score = float(np.mean([loo_r2(make(), *s) for s in studies]))
                means[design][scenario] = means[design].get(scenario, 0.0) + score / len(N_SETTINGS)
                row.append(f"{design.split()[0]} {score:.3f}")
            print(f"{scenario:<12} n={n:<3} " + "  ".join(row), flush=True)
    a_key, g_key = list(DESIGNS)[:2]
    wins = sum(means[g_key][s] >= means[a_key][s] for s in SCENARIOS)
    worst = min(means[g_key][s] - means[a_key][s] for s in SCENARIOS)
    print("\nper scenario (mean over n): " + "; ".join(
        f"{s}: A {means[a_key][s]:.3f}, G {means[g_key][s]:.3f}" for s in SCENARIOS))
    verdict = "G replaces A" if wins >= 2 and worst >= -0.02 else "A stays"
    print(f"G at least A in {wins} of {len(SCENARIOS)} scenarios, worst difference {worst:+.3f}: {verdict}")


if __name__ == "__main__":
    main()
