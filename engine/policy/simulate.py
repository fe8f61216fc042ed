"""Simulate the AC policy: a finetune order (strategy), refit on the finetuned settings, top-T recall vs random.

Strategies (the order in which settings are finetuned): ``region`` (the paper's region sampling over the
A-C grid), ``random`` (uniformly random order), ``greedy`` (two region picks, then always the not-yet-finetuned
setting with the best prediction of the law refitted on the finetuned ones), ``uncertainty`` (two region picks,
then the setting with the highest upper bound of the chosen law model's prediction interval).
Variants (how settings are ranked after each finetune): ``paper`` ranks ALL settings by the law's prediction
(as the authors' ``validate_run``), so a finetuned optimum can still be missed; ``measured`` ranks finetuned
settings by their measured score and only the others by prediction. The law is refitted (minimum-norm when
underdetermined) on the finetuned settings with A, C min-max normalised over all candidates of the benchmark.
Metrics (when a trial counts as a success at budget k): ``at-budget``, the optimum is in the predicted top-T
after exactly k finetunes; ``first-hit`` (the authors' ``AC_sample.py``), it entered the top-T after any
budget <= k.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import InputError
from engine.hashing import hash_obj
from engine.law import DEFAULT_LEVEL, get_law_model
from engine.law.fit import features, minmax
from engine.law.models import check_level, jackknife_plus
from engine.law.ols import ols_batch
from engine.policy.sampling import level_cells, region_sequence
from engine.policy.subsets import SubsetSolver, prefix_masks
from engine.study.model import Study

VARIANTS = ("paper", "measured")
METRICS = ("at-budget", "first-hit")
STRATEGIES = ("region", "random", "greedy", "uncertainty")
NEEDS_A = ("region", "greedy", "uncertainty")  # the orders that rank by the law, so need A for every candidate
DEFAULT_LAW_MODEL = "paper"  # the law model whose interval drives ``uncertainty``
GREEDY_WARMUP = 2  # region picks before greedy takes over: the fewest points whose refit is not a constant
MAX_TRIALS = 100_000


@dataclass
class Candidates:
    """The settings of one benchmark that have A, C and a score (true scores known for the simulation)."""

    benchmark: str
    names: list[str]
    a_norm: np.ndarray
    c_norm: np.ndarray
    score: np.ndarray

    @property
    def optimum(self) -> int:
        return int(np.argmax(self.score))


def candidates(study: Study, benchmark: str) -> Candidates:
    names, A, C, score = study.arrays(benchmark)
    return Candidates(benchmark, names, minmax(A, A.min(), A.max()), minmax(C, C.min(), C.max()), score)


def _success(cand: Candidates, solver: SubsetSolver, index: np.ndarray, fit_ok: np.ndarray, top: int, variant: str) -> np.ndarray:
    """success[t, k-1]: the optimum is in the top-T after finetuning the first k settings of trial t.

    ``index`` (T, n) maps each prefix to its row in ``solver``; ``fit_ok`` marks rows with >= 2 settings.
    """
    n = len(cand.names)
    rank_score = solver.predict(cand.score)
    if variant == "measured":
        rank_score = np.where(solver.w > 0, cand.score[None, :], rank_score)
    opt = cand.optimum
    s_opt = rank_score[:, opt : opt + 1]
    ahead = (rank_score > s_opt).sum(axis=1) + ((rank_score == s_opt) & (np.arange(n) < opt)).sum(axis=1)
    ok = (ahead < top) & fit_ok
    return ok[index]


def _base_orders(cand: Candidates, trials: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Region-sampling and uniformly random finetune orders, seeded by the seed and the A-C geometry only,
    so benchmarks that share A and C (and a one-benchmark run) see the same trials."""
    geometry = hash_obj([cand.a_norm.round(12).tolist(), cand.c_norm.round(12).tolist()])
    rng = np.random.default_rng([int(seed), int(geometry, 16)])
    levels = level_cells(cand.a_norm, cand.c_norm)
    n = len(cand.names)
    region = np.array([region_sequence(levels, n, rng) for _ in range(trials)], dtype=np.int64).reshape(trials, n)
    random = rng.permuted(np.tile(np.arange(n, dtype=np.int64), (trials, 1)), axis=1)
    return region, random


def greedy_continuation(cand: Candidates, starts: np.ndarray) -> np.ndarray:
    """Complete each start (P, w) into a full order (P, n): next is always the not-yet-finetuned setting with
    the highest prediction of the law (ac_poly, minimum-norm OLS) refitted on the finetuned ones; ties go to
    the lower index."""
    starts = np.asarray(starts, dtype=np.int64)
    n_starts, width = starts.shape
    n = len(cand.names)
    X = np.broadcast_to(features(cand.a_norm, cand.c_norm, "ac_poly"), (n_starts, n, 5))
    y = np.broadcast_to(cand.score, (n_starts, n))
    taken = np.zeros((n_starts, n), dtype=bool)
    taken[np.arange(n_starts)[:, None], starts] = True
    order = [starts[:, j] for j in range(width)]
    for _ in range(n - width):
        coef, intercept = ols_batch(X, y, weights=taken)
        predicted = intercept[:, None] + np.einsum("bnp,bp->bn", X, coef)
        pick = np.argmax(np.where(taken, -np.inf, predicted), axis=1)
        taken[np.arange(n_starts), pick] = True
        order.append(pick)
    return np.stack(order, axis=1)


def _greedy_orders(cand: Candidates, region: np.ndarray) -> np.ndarray:
    """Greedy orders whose first GREEDY_WARMUP picks are the region orders' (one continuation per distinct start)."""
    width = min(GREEDY_WARMUP, region.shape[1])
    starts, inverse = np.unique(region[:, :width], axis=0, return_inverse=True)
    return greedy_continuation(cand, starts)[inverse.reshape(-1)]


def optimistic_continuation(cand: Candidates, starts: np.ndarray, law_model: str = DEFAULT_LAW_MODEL,
                            level: float = DEFAULT_LEVEL) -> np.ndarray:
    """Complete each start (P, w) into a full order (P, n): next is always the not-yet-finetuned setting with the
    highest upper bound of ``law_model``'s ``level`` prediction interval, fitted on the finetuned settings; where
    the bound is infinite (too few finetunes for the level) the higher predicted mean decides, then the lower
    index.

    Three savings leave every pick unchanged: picks are memoised on the finetuned set (many runs reach it by
    different paths, and later calls on the same candidates, model and level reuse them); the model's selections
    are memoised on their set of rows, so a jackknife+ refit without setting i is computed once for every
    finetuned set that contains the same other settings; and no interval is computed where it cannot be finite
    (then only the mean fit is needed) nor where one setting is left."""
    model = get_law_model(law_model)
    a, c, y = cand.a_norm[:, None], cand.c_norm[:, None], cand.score[:, None]
    n = len(cand.names)
    memo = _pick_memo(cand, law_model, level)
    selections: dict[tuple[int, ...], Any] = {}

    def select(rows: np.ndarray) -> Any:
        key = tuple(int(i) for i in rows)
        if key not in selections:
            selections[key] = model.select(a[rows], c[rows], y[rows])
        return selections[key]

    def pick(taken: frozenset[int]) -> int:
        if taken not in memo:
            rows = np.array(sorted(taken), dtype=np.int64)
            free = np.array([i for i in range(n) if i not in taken])
            if len(free) == 1:
                memo[taken] = int(free[0])
                return memo[taken]
            if _upper_is_infinite(len(rows), level):
                mean, upper = select(rows).predictor.predict(a, c)[:, 0], np.full(n, np.inf)
            else:
                pred = model.fit_rows(a, c, y, rows, select).predict(a, c, level)
                mean, upper = pred.mean[:, 0], pred.upper[:, 0]
            key = np.lexsort((-free, mean[free], upper[free]))
            memo[taken] = int(free[key[-1]])
        return memo[taken]

    orders = []
    for start in np.asarray(starts, dtype=np.int64):
        order = list(start)
        while len(order) < n:
            order.append(pick(frozenset(order)))
        orders.append(order)
    return np.array(orders, dtype=np.int64).reshape(len(orders), n)


_PICKS: OrderedDict[str, dict[frozenset[int], int]] = OrderedDict()
_PICKS_LOCK = threading.Lock()
MAX_PICK_MEMOS = 64


def _pick_memo(cand: Candidates, law_model: str, level: float) -> dict[frozenset[int], int]:
    """The optimistic picks already made on these candidates (A, C, scores) with this model and level: a pick
    depends on nothing else, so a rerun with other trials, seed, budget, top or metric reuses them."""
    key = hash_obj([cand.a_norm.tolist(), cand.c_norm.tolist(), cand.score.tolist(), law_model, float(level)])
    with _PICKS_LOCK:
        memo = _PICKS.setdefault(key, {})
        _PICKS.move_to_end(key)
        while len(_PICKS) > MAX_PICK_MEMOS:
            _PICKS.popitem(last=False)
    return memo


def _upper_is_infinite(n_rows: int, level: float) -> bool:
    """Whether a jackknife+ upper bound from ``n_rows`` leave-one-out refits is infinite whatever the data."""
    return bool(np.isinf(jackknife_plus(np.zeros((n_rows, 1, 1)), np.zeros((n_rows, 1)), level)[1]).all())


def strategy_orders(cand: Candidates, strategy: str, trials: int, seed: int, law_model: str = DEFAULT_LAW_MODEL,
                    level: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """``(orders, random_orders)``, each (trials, n): the finetune orders of ``strategy`` and of the random-order
    baseline (indices into ``cand.names``); ``law_model`` and ``level`` drive ``uncertainty``."""
    region, random = _base_orders(cand, int(trials), int(seed))
    if strategy == "region":
        return region, random
    if strategy == "random":
        return random, random
    if strategy == "greedy":
        return _greedy_orders(cand, region), random
    if strategy == "uncertainty":
        width = min(GREEDY_WARMUP, region.shape[1])
        starts, inverse = np.unique(np.sort(region[:, :width], axis=1), axis=0, return_inverse=True)
        rest = optimistic_continuation(cand, starts, law_model, level)[inverse.reshape(-1), width:]
        return np.concatenate([region[:, :width], rest], axis=1), random
    raise InputError(f"unknown strategy '{strategy}' (choose from {', '.join(STRATEGIES)})")


def _cumulative(success: np.ndarray, metric: str) -> np.ndarray:
    return np.logical_or.accumulate(success, axis=1) if metric == "first-hit" else success


@dataclass(frozen=True, eq=False)
class BenchmarkPolicy:
    """Policy outcome on one benchmark: success per trial and budget, for the strategy's and random order.

    ``success[t, k-1]`` is the at-budget success (optimum in the top-T after exactly k finetunes); ``metric``
    decides how :meth:`recall` reads it.
    """

    benchmark: str
    optimum: str
    n_candidates: int
    success: np.ndarray
    random_success: np.ndarray
    metric: str = "at-budget"

    def recall(self, budget: int, metric: str | None = None) -> float:
        return float(_cumulative(self.success[:, :budget], metric or self.metric)[:, budget - 1].mean())

    def random_sampling_recall(self, budget: int, metric: str | None = None) -> float:
        return float(_cumulative(self.random_success[:, :budget], metric or self.metric)[:, budget - 1].mean())

    def runs_to_hit(self) -> np.ndarray:
        """Finetunes until the optimum first enters the top-T (n_candidates when it never does)."""
        return _first_hit(self.success, self.n_candidates)

    def random_runs_to_hit(self) -> np.ndarray:
        """The same for the random-order baseline."""
        return _first_hit(self.random_success, self.n_candidates)


def _first_hit(success: np.ndarray, n: int) -> np.ndarray:
    hit = success.any(axis=1)
    return np.where(hit, success.argmax(axis=1) + 1, n)


@dataclass(frozen=True)
class BenchmarkSummary:
    """Policy outcome on one benchmark at the result's budget: recall (strategy, chance k/n, random order), the
    best setting, and the finetunes each trial needed until it first ranked in the top-T (mean and histogram)."""

    recall: float
    random_recall: float
    random_sampling_recall: float
    optimum: str
    mean_runs: float
    runs_distribution: dict[int, int]
    n_candidates: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PolicyResult:
    """AC policy simulation over one or all benchmarks of a study (same seed, same result)."""

    study: str
    budget: int
    trials: int
    seed: int
    top: int
    variant: str
    benchmarks: dict[str, BenchmarkPolicy] = field(default_factory=dict)
    metric: str = "at-budget"
    strategy: str = "region"
    law_model: str = DEFAULT_LAW_MODEL
    level: float = DEFAULT_LEVEL

    def summary(self, benchmark: str) -> BenchmarkSummary:
        res = self.benchmarks[benchmark]
        runs = res.runs_to_hit()
        return BenchmarkSummary(
            recall=res.recall(self.budget, self.metric),
            random_recall=self.budget / res.n_candidates,
            random_sampling_recall=res.random_sampling_recall(self.budget, self.metric),
            optimum=res.optimum,
            mean_runs=float(runs.mean()),
            runs_distribution={int(k): int(v) for k, v in zip(*np.unique(runs, return_counts=True), strict=True)},
            n_candidates=res.n_candidates,
        )

    def mean_recall(self, budget: int | None = None, metric: str | None = None) -> float:
        """Recall at ``budget`` (default: the result's) averaged over the simulated benchmarks."""
        k = int(budget or self.budget)
        return float(np.mean([r.recall(k, metric or self.metric) for r in self.benchmarks.values()]))

    def table(self) -> pd.DataFrame:
        rows = [{"benchmark": b, **{k: v for k, v in self.summary(b).to_dict().items() if k != "runs_distribution"}}
                for b in self.benchmarks]
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """The CLI JSON of ``policy simulate``."""
        out = {"study": self.study, "benchmarks": {b: self.summary(b).to_dict() for b in self.benchmarks}, "budget": self.budget,
               "trials": self.trials, "seed": self.seed, "top": self.top, "variant": self.variant,
               "metric": self.metric, "strategy": self.strategy, "mean_recall": self.mean_recall()}
        if self.strategy == "uncertainty":
            out.update(law_model=self.law_model, level=self.level)
        return out


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``choices``, else one InputError line naming them."""
    if value not in choices:
        raise InputError(f"unknown {what} '{value}' (choose from {', '.join(choices)})")
    return value


def _check(study: Study, benchmark: str | None, trials: int, top: int, variant: str, metric: str, strategy: str,
           law_model: str = DEFAULT_LAW_MODEL, level: float = DEFAULT_LEVEL) -> list[str]:
    if variant not in VARIANTS:
        raise InputError(f"unknown policy variant '{variant}' (choose paper or measured)")
    check_choice(metric, METRICS, "metric")
    check_choice(strategy, STRATEGIES, "strategy")
    get_law_model(law_model)  # unknown names: one clear error, whatever the strategy
    check_level(level)
    if not 1 <= int(trials) <= MAX_TRIALS:
        raise InputError(f"trials must be between 1 and {MAX_TRIALS}, got {trials}")
    if int(top) < 1:
        raise InputError(f"top must be at least 1, got {top}")
    if benchmark is not None and benchmark not in study.benchmarks:
        raise InputError(f"unknown benchmark '{benchmark}' in study '{study.name}' (has: {', '.join(study.benchmarks)})")
    benches = [benchmark] if benchmark else study.benchmarks
    usable = [b for b in benches if len(study.arrays(b)[0]) >= 3]
    if not usable:
        raise InputError(f"no benchmark of study '{study.name}' has 3 settings with A, C and a score")
    return usable


def _run(study: Study, benches: list[str], trials: int, top: int, variant: str, seed: int, metric: str,
         strategy: str, law_model: str = DEFAULT_LAW_MODEL, level: float = DEFAULT_LEVEL) -> dict[str, BenchmarkPolicy]:
    """Simulate each benchmark; orders and subset fits are shared between benchmarks whose orders coincide
    (same A, C; for score-driven strategies also the same scores)."""
    out: dict[str, BenchmarkPolicy] = {}
    shared: dict[str, tuple] = {}
    for bench in benches:
        cand = candidates(study, bench)
        key_parts: list[Any] = [cand.names, cand.a_norm.round(12).tolist(), cand.c_norm.round(12).tolist(), strategy]
        if strategy not in ("region", "random"):
            key_parts += [cand.score.tolist(), law_model, level]
        key = hash_obj(key_parts)
        if key not in shared:
            orders, random = strategy_orders(cand, strategy, int(trials), seed, law_model, level)
            both = np.concatenate([orders, random])
            masks, inverse = prefix_masks(both)
            solver = SubsetSolver(features(cand.a_norm, cand.c_norm, "ac_poly"), masks)
            shared[key] = (solver, inverse.reshape(both.shape), masks.sum(axis=1) >= 2)
        solver, index, fit_ok = shared[key]
        success = _success(cand, solver, index, fit_ok, int(top), variant)
        out[bench] = BenchmarkPolicy(bench, cand.names[cand.optimum], len(cand.names), success[: int(trials)],
                                     success[int(trials):], metric)
    return out


def simulate(
    study: Study, benchmark: str | None = None, budget: int = 3, trials: int = 1000, seed: int = 0, top: int = 3,
    variant: str = "paper", metric: str = "at-budget", strategy: str = "region", law_model: str = DEFAULT_LAW_MODEL,
    level: float = DEFAULT_LEVEL,
) -> PolicyResult:
    """Recall@top for ``budget`` full finetunes over ``trials`` seeded finetune orders of ``strategy``
    (``law_model`` and its interval ``level`` drive the ``uncertainty`` strategy)."""
    benches = _check(study, benchmark, trials, top, variant, metric, strategy, law_model, level)
    smallest = min(len(study.arrays(b)[0]) for b in benches)
    if not 2 <= int(budget) <= smallest:
        raise InputError(f"budget must be between 2 and the number of candidate settings ({smallest}), got {budget}")
    return PolicyResult(study.name, int(budget), int(trials), int(seed), int(top), variant,
                        _run(study, benches, trials, top, variant, seed, metric, strategy, law_model, level), metric,
                        strategy, law_model, float(level))


def recall_curve(
    study: Study, budgets: list[int] | None = None, trials: int = 1000, seed: int = 0, top: int = 3,
    variant: str = "paper", benchmark: str | None = None, metric: str = "at-budget", strategy: str = "region",
    law_model: str = DEFAULT_LAW_MODEL, level: float = DEFAULT_LEVEL,
) -> pd.DataFrame:
    """Recall per benchmark and budget: ``benchmark, budget, recall, random_recall, random_sampling_recall,
    variant, metric, strategy``."""
    benches = _check(study, benchmark, trials, top, variant, metric, strategy, law_model, level)
    results = _run(study, benches, trials, top, variant, seed, metric, strategy, law_model, level)
    rows = []
    for bench, res in results.items():
        for k in budgets or range(2, res.n_candidates + 1):
            if not 2 <= int(k) <= res.n_candidates:
                raise InputError(f"budget {k} is outside 2..{res.n_candidates} for {bench}")
            rows.append({"benchmark": bench, "budget": int(k), "recall": res.recall(int(k)),
                         "random_recall": int(k) / res.n_candidates,
                         "random_sampling_recall": res.random_sampling_recall(int(k)), "variant": variant,
                         "metric": metric, "strategy": strategy})
    return pd.DataFrame(rows)
