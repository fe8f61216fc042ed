"""Compare finetune-order strategies under both recall metrics, with random order and chance as baselines."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from engine.errors import InputError
from engine.policy.simulate import METRICS, STRATEGIES, PolicyResult, simulate
from engine.study.model import Study

STRATEGY_LABELS = {
    "region": "region sampling (the paper's AC policy)",
    "random": "random order",
    "greedy": "greedy (best predicted next)",
    "uncertainty": "optimistic (upper bound of the law's interval)",
}
STRATEGY_SHORT = {"region": "region sampling", "random": "random order", "greedy": "greedy", "uncertainty": "optimistic"}
METRIC_LABELS = {
    "at-budget": "at budget (the ranking you stop with)",
    "first-hit": "first hit (the authors' count)",
}
VARIANT_LABELS = {
    "paper": "all settings ranked by the refitted law (paper)",
    "measured": "finetuned settings ranked by their measured score",
}
STRATEGY_DEFINITIONS = {
    "region": "split the normalised A-C square into a grid and finetune one random setting from each cell that "
              "holds no finetuned setting yet, coarse cells first",
    "random": "finetune the settings in a uniformly random order",
    "greedy": "after two region picks, always finetune the not-yet-finetuned setting with the best prediction of "
              "the law refitted on the finetuned ones",
    "uncertainty": "after two region picks, always finetune the setting with the highest upper bound of the chosen "
                   "law model's prediction interval refitted on the finetuned ones (while the interval is unbounded, "
                   "for too few finetunes, the highest prediction)",
}
METRIC_DEFINITIONS = {
    "at-budget": "after exactly k finetunes the truly best setting is among the T settings ranked highest by the "
                 "law refitted on them: what you hold when you stop",
    "first-hit": "the truly best setting was among the top T after some budget up to k, even if a later refit "
                 "pushed it out again (the count of the authors' AC_sample.py)",
}


def strategy_label(name: str) -> str:
    return STRATEGY_LABELS.get(name, name)


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name)


def variant_label(name: str) -> str:
    return VARIANT_LABELS.get(name, name)


@dataclass(frozen=True)
class StrategyComparison:
    """Recall@T of each strategy per benchmark, metric and budget (``recall``, with chance k/n per benchmark) and
    the finetunes each simulated run needed until the best setting first entered the top T (``runs``)."""

    study: str
    top: int
    trials: int
    seed: int
    variant: str
    recall: pd.DataFrame  # benchmark, strategy, metric, budget, recall, chance
    runs: pd.DataFrame  # benchmark, strategy, runs (n when the best setting never entered the top T)

    @property
    def strategies(self) -> list[str]:
        return list(dict.fromkeys(self.recall["strategy"]))

    def mean(self, benchmark: str | None = None) -> pd.DataFrame:
        """``strategy, metric, budget, recall, chance`` averaged over the benchmarks (or one benchmark)."""
        part = self.recall if benchmark is None else self.recall[self.recall["benchmark"] == benchmark]
        if part.empty:
            raise InputError(f"no simulated benchmark '{benchmark}' in study '{self.study}'")
        return part.groupby(["strategy", "metric", "budget"], as_index=False, sort=False)[["recall", "chance"]].mean()

    def at(self, budget: int, metric: str, benchmark: str | None = None) -> dict[str, float]:
        """Strategy -> mean recall at ``budget`` under ``metric``."""
        mean = self.mean(benchmark)
        rows = mean[(mean["budget"] == int(budget)) & (mean["metric"] == metric)]
        if rows.empty:
            raise InputError(f"budget {budget} was not simulated (2..{int(mean['budget'].max())})")
        return dict(zip(rows["strategy"], rows["recall"].astype(float), strict=True))

    def best(self, budget: int, metric: str = "at-budget", benchmark: str | None = None) -> str:
        """The strategy with the highest mean recall (ties: the earlier in STRATEGIES order)."""
        scores = self.at(budget, metric, benchmark)
        return max(scores, key=lambda s: (round(scores[s], 9), -list(scores).index(s)))

    def verdict(self, budget: int, benchmark: str | None = None) -> str:
        """One sentence: which strategy to run at this budget and why (from the simulation, not assumed).

        Judged by at-budget recall (the ranking a user holds when they stop); a lead smaller than two standard
        errors of the difference over the simulated trials is called a tie.
        """
        at_budget = self.at(budget, "at-budget", benchmark)
        first = self.at(budget, "first-hit", benchmark)
        ranked = sorted(at_budget, key=lambda s: -at_budget[s])
        win, best = ranked[0], at_budget[ranked[0]]
        short = STRATEGY_SHORT.get
        listing = ", ".join(f"{short(s, s)} {at_budget[s]:.0%}" for s in ranked)
        if best < 0.05:
            return (f"No strategy finds the best setting here with {budget} finetunes ({listing} of runs end with it "
                    f"in the predicted top {self.top}); finetune more settings.")

        def noise(pa: float, pb: float) -> float:
            return 2.0 * math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / self.trials)

        tied = [s for s in ranked[1:] if best - at_budget[s] <= noise(best, at_budget[s])]
        if tied:
            names = ", ".join(short(s, s) for s in [win, *tied])
            return (f"With {budget} finetunes no strategy wins clearly ({listing} of runs end with the best setting "
                    f"in the predicted top {self.top}; {names} are within simulation noise): any of {names} will do; "
                    f"more trials may separate them.")
        win_first = max(first, key=lambda s: first[s])
        if win_first == win or first[win_first] - first[win] <= noise(first[win_first], first[win]):
            also = "it is also at the top by the authors' first-hit count"
        else:
            also = (f"by the authors' first-hit count {short(win_first, win_first)} leads ({first[win_first]:.0%} vs "
                    f"{first[win]:.0%}), but that count credits rankings you no longer hold when you stop")
        return (f"Run {short(win, win)}: with {budget} finetunes it leaves the best setting in the predicted top "
                f"{self.top} in {best:.0%} of simulated runs ({listing}); {also}.")


def compare_strategies(
    study: Study, *, trials: int = 500, seed: int = 0, top: int = 3, variant: str = "paper",
    benchmark: str | None = None, strategies: tuple[str, ...] | None = None, budgets: list[int] | None = None,
    **strategy_params: object,
) -> StrategyComparison:
    """Simulate every strategy (random order is the region run's own random-order baseline) at every budget;
    ``budgets`` (the ones the caller will read) are checked against the candidates before any simulation."""
    chosen = tuple(strategies or STRATEGIES)
    for name in chosen:
        if name not in STRATEGIES:
            raise InputError(f"unknown strategy '{name}' (choose from {', '.join(STRATEGIES)})")
    if budgets:
        if benchmark is not None and benchmark not in study.benchmarks:
            raise InputError(f"unknown benchmark '{benchmark}' in study '{study.name}' (has: {', '.join(study.benchmarks)})")
        sizes = [len(study.arrays(b)[0]) for b in ([benchmark] if benchmark else study.benchmarks)]
        smallest = min((n for n in sizes if n >= 3), default=0)
        for k in budgets if smallest else ():  # no usable benchmark: simulate says so
            if not 2 <= int(k) <= smallest:
                raise InputError(f"budget {k} is outside 2..{smallest} (the candidate settings of the smallest benchmark)")
    results: dict[str, PolicyResult] = {}
    for name in dict.fromkeys(("region", *[s for s in chosen if s != "random"])):
        params = strategy_params if name == "uncertainty" else {}
        results[name] = simulate(study, benchmark, budget=2, trials=trials, seed=seed, top=top, variant=variant,
                                 strategy=name, **params)
    rows, runs = [], []
    for bench, region in results["region"].benchmarks.items():
        for name in chosen:
            hits = region.random_runs_to_hit() if name == "random" else results[name].benchmarks[bench].runs_to_hit()
            runs.append(pd.DataFrame({"benchmark": bench, "strategy": name, "runs": hits}))
        n = region.n_candidates
        for k in range(2, n + 1):
            for metric in METRICS:
                for name in chosen:
                    if name == "random":
                        value = region.random_sampling_recall(k, metric)
                    else:
                        value = results[name].benchmarks[bench].recall(k, metric)
                    rows.append((bench, name, metric, k, value, k / n))
    table = pd.DataFrame(rows, columns=["benchmark", "strategy", "metric", "budget", "recall", "chance"])
    return StrategyComparison(study.name, int(top), int(trials), int(seed), variant, table,
                              pd.concat(runs, ignore_index=True))
