"""AC policy metrics (at-budget, first-hit) and finetune-order strategies, checked against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from _studies import toy_study
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import PolynomialFeatures

from engine.errors import InputError
from engine.policy import recall_curve, simulate, strategy_orders
from engine.policy.simulate import candidates
from engine.study import bundled_study, parse_study_file


def _oracle_success(study, subset: tuple[int, ...], top: int) -> bool:
    """The optimum is in the top-``top`` of all settings ranked by an sklearn quadratic fitted on ``subset``."""
    table = study.table("mme")
    a, c, y = (table[k].to_numpy(float) for k in ("A", "C", "score"))
    if len(subset) < 2:
        return False
    X = PolynomialFeatures(2).fit_transform(np.c_[(a - a.min()) / np.ptp(a), (c - c.min()) / np.ptp(c)])
    idx = list(subset)
    pred = LinearRegression().fit(X[idx], y[idx]).predict(X)
    return int(np.argmax(y)) in np.argsort(-pred, kind="stable")[:top]


def test_first_hit_and_at_budget_equal_brute_force_on_the_same_orders():
    study = toy_study(7, 1)
    result = simulate(study, budget=2, trials=60, seed=3, top=2)
    orders, _ = strategy_orders(candidates(study, "mme"), "region", 60, 3)
    per_prefix = np.array([[_oracle_success(study, tuple(o[:k]), 2) for k in range(1, 8)] for o in orders])
    res = result.benchmarks["mme"]
    for k in range(2, 8):
        assert res.recall(k, "at-budget") == pytest.approx(per_prefix[:, k - 1].mean())
        assert res.recall(k, "first-hit") == pytest.approx(per_prefix[:, :k].any(axis=1).mean())


def test_random_order_converges_to_the_exact_expectation():
    study = toy_study(6, 4)
    n, top, trials = 6, 2, 20_000
    success = {s: _oracle_success(study, s, top) for k in range(1, n + 1) for s in itertools.combinations(range(n), k)}
    perms = list(itertools.permutations(range(n)))
    res = simulate(study, budget=2, trials=trials, seed=0, top=top, strategy="random").benchmarks["mme"]
    for k in range(2, n + 1):
        exact_at = np.mean([success[s] for s in itertools.combinations(range(n), k)])
        exact_first = np.mean([any(success[tuple(sorted(p[:j]))] for j in range(1, k + 1)) for p in perms])
        for metric, exact in (("at-budget", exact_at), ("first-hit", exact_first)):
            tol = 4 * np.sqrt(exact * (1 - exact) / trials) + 1e-12
            assert abs(res.recall(k, metric) - exact) <= tol, (k, metric)
        assert res.random_sampling_recall(k, "at-budget") == res.recall(k, "at-budget")


def test_greedy_follows_the_best_prediction_after_two_region_picks():
    study = toy_study(8, 2)
    table = study.table("mme")
    a, c, y = (table[k].to_numpy(float) for k in ("A", "C", "score"))
    X = PolynomialFeatures(2).fit_transform(np.c_[(a - a.min()) / np.ptp(a), (c - c.min()) / np.ptp(c)])
    region, _ = strategy_orders(candidates(study, "mme"), "region", 30, 5)
    greedy, _ = strategy_orders(candidates(study, "mme"), "greedy", 30, 5)
    assert (greedy[:, :2] == region[:, :2]).all()
    for order in greedy:
        assert sorted(order) == list(range(8))
        for k in range(2, 8):
            done = list(order[:k])
            pred = LinearRegression().fit(X[done], y[done]).predict(X)
            pred[done] = -np.inf
            assert order[k] == int(np.argmax(pred))


def test_first_hit_dominates_at_budget_and_is_monotone():
    study = bundled_study()
    for strategy in ("region", "random", "greedy"):
        res = simulate(study, budget=3, trials=100, seed=1, strategy=strategy)
        for bp in res.benchmarks.values():
            first = [bp.recall(k, "first-hit") for k in range(2, 16)]
            assert all(bp.recall(k, "first-hit") >= bp.recall(k, "at-budget") for k in range(2, 16))
            assert first == sorted(first)


def test_default_metric_and_strategy_keep_todays_result():
    study = bundled_study()
    plain = simulate(study, budget=3, trials=150, seed=2).to_dict()
    explicit = simulate(study, budget=3, trials=150, seed=2, metric="at-budget", strategy="region").to_dict()
    assert plain == explicit and plain["metric"] == "at-budget" and plain["strategy"] == "region"
    curve = recall_curve(study, budgets=[3], trials=150, seed=2, metric="first-hit", strategy="greedy")
    assert set(curve["metric"]) == {"first-hit"} and set(curve["strategy"]) == {"greedy"}


@pytest.mark.parametrize("kwargs,match", [
    ({"metric": "first_hit"}, "unknown metric 'first_hit'"),
    ({"strategy": "bandit"}, "unknown strategy 'bandit'"),
])
def test_bad_metric_or_strategy(kwargs, match):
    with pytest.raises(InputError, match=match):
        simulate(bundled_study(), **kwargs)
    with pytest.raises(InputError, match=match):
        recall_curve(bundled_study(), **kwargs)


def test_first_hit_reproduces_the_authors_numbers(reference_dir):
    v1 = parse_study_file(reference_dir / "law_v1_released_ablations.csv", "v1")
    res = simulate(v1, budget=3, trials=2000, seed=11, metric="first-hit")
    assert res.mean_recall(3) == pytest.approx(0.73, abs=0.02)
    assert res.mean_recall(4) == pytest.approx(0.85, abs=0.02)
    assert res.benchmarks["scienceqa_img"].recall(3) == pytest.approx(0.97, abs=0.02)
    v3 = simulate(bundled_study(), budget=4, trials=2000, seed=11, metric="first-hit")
    six = [b for b in v3.benchmarks if b not in ("mme", "mmmu_val")]
    assert np.mean([v3.benchmarks[b].recall(4) for b in six]) == pytest.approx(0.84, abs=0.02)


def _comparison(values: dict[tuple[str, str], float], trials: int = 1000):
    from engine.policy import StrategyComparison

    rows = [("b", s, m, 3, v, 0.2) for (s, m), v in values.items()]
    recall = pd.DataFrame(rows, columns=["benchmark", "strategy", "metric", "budget", "recall", "chance"])
    return StrategyComparison("toy", 3, trials, 0, "paper", recall, pd.DataFrame(columns=["benchmark", "strategy", "runs"]))


def test_verdict_clear_winner_tie_and_nothing():
    clear = _comparison({("region", "at-budget"): 0.40, ("random", "at-budget"): 0.50, ("greedy", "at-budget"): 0.70,
                         ("region", "first-hit"): 0.60, ("random", "first-hit"): 0.65, ("greedy", "first-hit"): 0.72})
    text = clear.verdict(3)
    assert text.startswith("Run greedy: with 3 finetunes") and "in 70% of simulated runs" in text
    assert "also at the top by the authors' first-hit count" in text
    # 2 standard errors of the difference at 1000 trials: 2 * sqrt((.5*.5 + .48*.52) / 1000) = 0.0447
    tie = _comparison({("region", "at-budget"): 0.48, ("random", "at-budget"): 0.50, ("greedy", "at-budget"): 0.30,
                       ("region", "first-hit"): 0.5, ("random", "first-hit"): 0.5, ("greedy", "first-hit"): 0.5})
    assert "no strategy wins clearly" in tie.verdict(3) and "random order, region sampling" in tie.verdict(3)
    apart = _comparison({("region", "at-budget"): 0.44, ("random", "at-budget"): 0.50, ("greedy", "at-budget"): 0.30,
                         ("region", "first-hit"): 0.8, ("random", "first-hit"): 0.5, ("greedy", "first-hit"): 0.5})
    assert apart.verdict(3).startswith("Run random order") and "region sampling leads (80% vs 50%)" in apart.verdict(3)
    nothing = _comparison({(s, m): 0.0 for s in ("region", "random") for m in ("at-budget", "first-hit")})
    assert nothing.verdict(3).startswith("No strategy finds the best setting")
    with pytest.raises(InputError, match="budget 9 was not simulated"):
        clear.verdict(9)


def test_compare_strategies_chance_and_random_baseline():
    from engine.policy import compare_strategies

    study = toy_study(6, 4)
    comparison = compare_strategies(study, trials=300, seed=0, top=2)
    chance = comparison.recall.drop_duplicates("budget").set_index("budget")["chance"]
    assert chance.to_dict() == pytest.approx({k: k / 6 for k in range(2, 7)})
    random = simulate(study, budget=2, trials=300, seed=0, top=2, strategy="random").benchmarks["mme"]
    rows = comparison.recall[(comparison.recall["strategy"] == "random") & (comparison.recall["metric"] == "first-hit")]
    assert rows["recall"].tolist() == pytest.approx([random.recall(k, "first-hit") for k in range(2, 7)])
    with pytest.raises(InputError, match="unknown strategy 'x'"):
        compare_strategies(study, strategies=("x",))
