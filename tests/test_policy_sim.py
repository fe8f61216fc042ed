"""AC policy: region sampling, seeded simulation, hand-checkable recalls, recommender and cost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.errors import InputError
from engine.policy import cost_comparison, projector_params, recall_curve, recommend, simulate
from engine.policy.sampling import START_LEVEL, cell_ids, level_cells, region_sequence
from engine.study import bundled_study, make_study


def _toy(points: list[tuple[float, float, float]]):
    names = [f"S{i}" for i in range(len(points))]
    settings = pd.DataFrame({"setting": names, "A": [p[0] for p in points], "C": [p[1] for p in points]})
    scores = pd.DataFrame({"mme": [p[2] for p in points]}, index=names)
    return make_study("toy", settings, scores)


def _respects_region_rule(a, c, seq) -> bool:
    """Each pick lies in a cell free of earlier picks at the coarsest level that still has a free non-empty cell."""
    for t, pick in enumerate(seq):
        earlier = seq[:t]
        for level in range(START_LEVEL, 25):
            ids = cell_ids(a, c, level)
            free = set(ids.tolist()) - {ids[i] for i in earlier}
            if free:
                if ids[pick] not in free:
                    return False
                break
    return True


def test_region_sequence_follows_rule_and_covers_all():
    rng = np.random.default_rng(0)
    a, c = rng.random(20), rng.random(20)
    cells = level_cells(a, c)
    for seed in range(30):
        seq = region_sequence(cells, 20, np.random.default_rng(seed))
        assert sorted(seq) == list(range(20))
        assert _respects_region_rule(a, c, seq)


def test_region_sequence_one_per_quadrant_first():
    a = np.array([0.1, 0.2, 0.9, 0.8, 0.1, 0.9])
    c = np.array([0.1, 0.2, 0.1, 0.9, 0.9, 0.95])
    cells = level_cells(a, c)
    for seed in range(20):
        first = region_sequence(cells, 4, np.random.default_rng(seed))
        assert len(set(cell_ids(a[first], c[first], 1).tolist())) == 4


def test_region_sequence_with_identical_points_terminates():
    a = np.array([0.0, 0.5, 0.5, 0.5, 1.0])
    c = np.array([0.0, 0.5, 0.5, 0.5, 1.0])
    seq = region_sequence(level_cells(a, c), 5, np.random.default_rng(0))
    assert sorted(seq) == [0, 1, 2, 3, 4]


def test_simulation_is_seeded():
    study = bundled_study()
    one = simulate(study, budget=3, trials=200, seed=7).to_dict()
    two = simulate(study, budget=3, trials=200, seed=7).to_dict()
    assert one == two
    assert simulate(study, budget=3, trials=200, seed=8).to_dict() != one


def test_budget_all_settings_measured_recall_is_one():
    study = bundled_study()
    result = simulate(study, budget=15, trials=50, seed=0, variant="measured")
    for bench in study.benchmarks:
        assert result.summary(bench).recall == 1.0
        assert result.summary(bench).random_recall == 1.0


def test_top_covering_all_settings_gives_recall_one():
    result = simulate(bundled_study(), budget=2, trials=30, top=15)
    assert all(result.summary(b).recall == 1.0 for b in result.benchmarks)


def test_exact_quadratic_is_found_in_paper_variant():
    # Score is an exact quadratic of (normalised) A, C: once 6 settings are finetuned the refit is exact,
    # so the true optimum ranks first among all settings.
    rng = np.random.default_rng(3)
    a, c = rng.random(12), rng.random(12)
    score = 1 + 2 * a + 3 * c - a * a + 0.5 * a * c - 2 * c * c
    study = _toy([(float(x), float(y), float(s)) for x, y, s in zip(a, c, score, strict=True)])
    result = simulate(study, budget=6, trials=40, top=1, variant="paper")
    assert result.summary("mme").recall == 1.0
    assert result.summary("mme").optimum == f"S{int(np.argmax(score))}"


def test_recall_curve_and_runs():
    study = bundled_study()
    curve = recall_curve(study, budgets=[2, 5, 15], trials=100, seed=0, top=3, variant="measured")
    assert list(curve.columns) == ["benchmark", "budget", "recall", "random_recall", "random_sampling_recall", "variant",
                                   "metric", "strategy"]
    last = curve[curve["budget"] == 15]
    assert (last["recall"] == 1.0).all()
    res = simulate(study, budget=3, trials=100, seed=0, variant="measured")
    for bench in study.benchmarks:
        s = res.summary(bench)
        assert 2 <= s.mean_runs <= 15 and sum(s.runs_distribution.values()) == 100


@pytest.mark.parametrize("kwargs,match", [
    ({"budget": 16}, "budget must be between 2"),
    ({"budget": 1}, "budget must be between 2"),
    ({"variant": "greedy"}, "unknown policy variant"),
    ({"benchmark": "gqa"}, "unknown benchmark"),
    ({"trials": 0}, "trials must be"),
    ({"top": 0}, "top must be"),
])
def test_simulate_bad_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        simulate(bundled_study(), **kwargs)


def test_recommend_region_rule_and_ranking():
    study = bundled_study()
    rec = recommend(study, "mmbench_en", {"CLIP336": 64.26, "DiT": 33.68}, seed=0)
    assert rec.next_setting not in {"CLIP336", "DiT"}
    assert rec.to_dict() == recommend(study, "mmbench_en", {"CLIP336": 64.26, "DiT": 33.68}, seed=0).to_dict()
    pending = rec.ranking[~rec.ranking["finetuned"]]
    assert rec.alternative == pending.sort_values("predicted", ascending=False)["setting"].iat[0]
    assert rec.loo_rmse is not None and len(rec.top_settings) == 3
    table = study.table("mmbench_en")
    a = (table["A"] - table["A"].min()) / (table["A"].max() - table["A"].min())
    c = (table["C"] - table["C"].min()) / (table["C"].max() - table["C"].min())
    quad = dict(zip(table["setting"], cell_ids(a.to_numpy(), c.to_numpy(), 1).tolist(), strict=True))
    assert quad[rec.next_setting] not in {quad["CLIP336"], quad["DiT"]}


def test_recommend_without_finetunes_and_errors():
    rec = recommend(bundled_study(), "mme", {}, seed=1)
    assert rec.next_setting is not None and rec.alternative is None and rec.level == 1
    with pytest.raises(InputError, match="not a setting"):
        recommend(bundled_study(), "mme", {"Nope": 1.0})
    with pytest.raises(InputError, match="unknown benchmark"):
        recommend(bundled_study(), "gqa", {})


def test_cost_reproduces_99_7_percent():
    assert projector_params(1024, 4096) == 1024 * 4096 + 4096 + 4096 * 4096 + 4096
    out = cost_comparison()
    assert round(100 * out["trainable_savings"], 1) == 99.7
    assert out["gpu_hours_all_full"] == 15 * (out["stage1_gpu_hours"] + out["stage2_gpu_hours"])
    assert out["gpu_hours_policy"] == 15 * out["stage1_gpu_hours"] + 3 * out["stage2_gpu_hours"]
    with pytest.raises(InputError, match="budget"):
        cost_comparison(budget=20)
