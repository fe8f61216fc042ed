"""The optimistic (uncertainty) finetune order: the upper bound of the law model's interval, against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _studies import toy_study
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import PolynomialFeatures

from engine.errors import InputError
from engine.policy import compare_strategies, simulate, strategy_orders
from engine.policy.simulate import candidates
from engine.study import bundled_study


def _mm(x, lo, hi):
    return np.zeros_like(x) if hi == lo else (x - lo) / (hi - lo)


def _sk_fit(a, c, y, rows):
    """The paper's law on ``rows`` (normalised on those rows), as a function of raw a, c: sklearn."""
    a_lo, a_hi, c_lo, c_hi, y_lo, y_hi = a[rows].min(), a[rows].max(), c[rows].min(), c[rows].max(), y[rows].min(), y[rows].max()
    poly = PolynomialFeatures(2)
    X = poly.fit_transform(np.c_[_mm(a[rows], a_lo, a_hi), _mm(c[rows], c_lo, c_hi)])
    model = LinearRegression().fit(X, _mm(y[rows], y_lo, y_hi))
    return lambda aa, cc: y_lo + (y_hi - y_lo) * model.predict(poly.transform(np.c_[_mm(aa, a_lo, a_hi), _mm(cc, c_lo, c_hi)]))


def _oracle_next(a, c, y, taken: list[int], level: float) -> int:
    """Jackknife+ upper bound (Barber et al.) of the paper's law from leave-one-out sklearn refits; ties: mean, index."""
    rows = sorted(taken)
    k = len(rows)
    mean = _sk_fit(a, c, y, rows)(a, c)
    loo = []
    for i in rows:
        f = _sk_fit(a, c, y, [r for r in rows if r != i])
        loo.append(f(a, c) + abs(y[i] - f(a[i : i + 1], c[i : i + 1])[0]))
    k_hi = math.ceil(level * (k + 1))
    upper = np.sort(np.array(loo), axis=0)[k_hi - 1] if k_hi <= k else np.full(len(a), np.inf)
    free = [i for i in range(len(a)) if i not in taken]
    return max(free, key=lambda i: (upper[i], round(mean[i], 9), -i))


@pytest.mark.parametrize("level", [0.8, 0.5])
def test_optimistic_order_follows_the_jackknife_plus_upper_bound(level):
    study = toy_study(7, 5)
    cand = candidates(study, "mme")
    a, c, y = cand.a_norm, cand.c_norm, cand.score
    region, _ = strategy_orders(cand, "region", 12, 2)
    orders, _ = strategy_orders(cand, "uncertainty", 12, 2, "paper", level)
    assert (orders[:, :2] == region[:, :2]).all()
    for order in orders:
        assert sorted(order) == list(range(7))
        for k in range(2, 6):
            assert order[k] == _oracle_next(a, c, y, list(order[:k]), level), (order, k)


def test_uncertainty_options_and_errors():
    study = bundled_study()
    res = simulate(study, benchmark="ok_vqa", budget=4, trials=40, strategy="uncertainty", law_model="ridge", level=0.6)
    data = res.to_dict()
    assert (data["strategy"], data["law_model"], data["level"]) == ("uncertainty", "ridge", 0.6)
    assert "law_model" not in simulate(study, benchmark="ok_vqa", trials=20).to_dict()
    with pytest.raises(InputError, match="unknown law model 'bogus'"):
        simulate(study, strategy="uncertainty", law_model="bogus")
    with pytest.raises(InputError, match="level must lie strictly between 0 and 1"):
        simulate(study, strategy="uncertainty", level=1.5)
    both = compare_strategies(study, benchmark="ok_vqa", trials=30, law_model="paper", level=0.8)
    assert "uncertainty" in both.strategies
    first = both.recall[(both.recall["strategy"] == "uncertainty") & (both.recall["metric"] == "first-hit")]
    assert first["recall"].tolist() == sorted(first["recall"].tolist())


def test_cli_uncertainty_flags(tmp_path, capsys, monkeypatch):
    import json

    from engine.cli import main

    monkeypatch.setenv("LAW_EXPLORER_HOME", str(tmp_path))
    args = ["policy", "simulate", "--study", "paper-v3", "--benchmark", "seed_image", "--budget", "4", "--trials", "40",
            "--strategy", "uncertainty", "--law-model", "ridge", "--level", "0.7", "--format", "json"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["strategy"], data["law_model"], data["level"]) == ("uncertainty", "ridge", 0.7)
    for bad, needle in ((["--law-model", "bogus"], "unknown law model 'bogus'"),
                        (["--level", "1.5"], "level must lie strictly between 0 and 1")):
        assert main(["policy", "curve", "--study", "paper-v3", "--strategy", "uncertainty", *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and needle in err[0]


def _plain_next(model_name: str, a, c, y, taken: list[int], level: float) -> int:
    """The optimistic pick without any saving: the model refitted from scratch on the finetuned rows."""
    from engine.law import get_law_model

    rows = sorted(taken)
    pred = get_law_model(model_name).fit(a[rows, None], c[rows, None], y[rows, None]).predict(a[:, None], c[:, None], level)
    free = [i for i in range(len(a)) if i not in taken]
    return max(free, key=lambda i: (pred.upper[i, 0], pred.mean[i, 0], -i))


@pytest.mark.parametrize(("model_name", "level"), [("auto", 0.8), ("ridge", 0.5), ("multitask", 0.9), ("linear", 0.7)])
def test_memoised_optimistic_order_equals_the_plain_refit(model_name, level):
    study = toy_study(7, 11)
    cand = candidates(study, "mme")
    orders, _ = strategy_orders(cand, "uncertainty", 10, 4, model_name, level)
    for order in orders:
        for k in range(2, 7):
            assert order[k] == _plain_next(model_name, cand.a_norm, cand.c_norm, cand.score, list(order[:k]), level)


@pytest.mark.parametrize(("n_rows", "level", "infinite"), [(2, 0.8, True), (3, 0.8, True), (4, 0.8, False),
                                                          (8, 0.9, True), (9, 0.9, False), (1, 0.5, False),
                                                          (2, 0.7, True), (3, 0.7, False)])
def test_upper_bound_is_infinite_below_the_hand_computed_size(n_rows, level, infinite):
    # jackknife+ upper = the ceil(level (n + 1))-th smallest of n values, infinite when that rank exceeds n:
    # 0.8: ceil(2.4) = 3 > 2, ceil(3.2) = 4 > 3, ceil(4.0) = 4; 0.9: ceil(8.1) = 9 > 8, ceil(9.0) = 9;
    # 0.5: ceil(1.0) = 1; 0.7: ceil(2.1) = 3 > 2, ceil(2.8) = 3
    from engine.policy.simulate import _upper_is_infinite

    assert _upper_is_infinite(n_rows, level) is infinite


def test_a_rerun_with_other_trials_reuses_the_picks(monkeypatch):
    from engine.law.models.base import LawModel

    study = toy_study(8, 3)
    cand = candidates(study, "mme")
    first, _ = strategy_orders(cand, "uncertainty", 30, 1, "ridge", 0.8)

    def refuse(*_args, **_kwargs):
        raise AssertionError("refitted although every finetuned set was already picked from")

    monkeypatch.setattr(LawModel, "select", refuse)
    again, _ = strategy_orders(cand, "uncertainty", 30, 1, "ridge", 0.8)
    fewer, _ = strategy_orders(cand, "uncertainty", 10, 1, "ridge", 0.8)
    assert (again == first).all() and (fewer == first[:10]).all()
