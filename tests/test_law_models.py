"""Law models: closed forms against scikit-learn and brute-force refits, jackknife+, coverage, nested CV."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import nnls
from sklearn.linear_model import LinearRegression, Ridge

from engine.errors import InputError
from engine.law import LAW_MODELS, evaluate_study, fit_benchmark, get_law_model, study_matrices
from engine.law.fit import features
from engine.law.models.auto import AutoFamily, simplex_weights
from engine.law.models.base import Prepared, jackknife_plus, prepare
from engine.law.models.linalg import ridge_path
from engine.law.models.multitask import MultitaskFamily
from engine.law.models.paper import LINEAR, PAPER
from engine.law.models.ridge import RidgeFamily
from engine.study import load_study
from engine.study.model import make_study


def _paper_matrices(rows: int | None = None):
    m = study_matrices(load_study("paper-v3"))
    sl = slice(None) if rows is None else slice(0, rows)
    return m.a[sl], m.c[sl], m.y[sl]


def _normalised(a, c, y, j):
    """Min-max normalised features and score of benchmark j (the oracle side, written independently)."""
    ok = np.isfinite(y[:, j])
    aa, cc, yy = a[ok, j], c[ok, j], y[ok, j]
    an = (aa - aa.min()) / (aa.max() - aa.min())
    cn = (cc - cc.min()) / (cc.max() - cc.min())
    yn = (yy - yy.min()) / (yy.max() - yy.min())
    return np.column_stack([an, cn, an**2, an * cn, cn**2]), yn


def _sub(prep: Prepared, keep: np.ndarray) -> Prepared:
    return Prepared(prep.a[keep], prep.c[keep], prep.y[keep], prep.mask[keep], prep.bounds)


def test_registry_names_and_unknown_model():
    assert {"paper", "ridge", "multitask", "auto"} <= set(LAW_MODELS)
    with pytest.raises(InputError, match="unknown law model 'lasso'"):
        get_law_model("lasso")
    with pytest.raises(InputError, match="does not take parameters"):
        get_law_model("paper", penalties=(1.0,))
    with pytest.raises(InputError, match="positive finite"):
        get_law_model("ridge", penalties=(1.0, -1.0))
    with pytest.raises(InputError, match="positive finite"):
        get_law_model("multitask", shared=())


def test_paper_model_is_sklearn_ols_on_normalised_quadratic():
    a, c, y = _paper_matrices()
    fitted = get_law_model("paper").fit(a, c, y)
    new_a, new_c = np.full((1, 8), -2.1), np.full((1, 8), 17.0)
    pred = fitted.predict(new_a, new_c).mean[0]
    for j in range(8):
        X, yn = _normalised(a, c, y, j)
        reg = LinearRegression().fit(X, yn)
        an = (-2.1 - a[:, j].min()) / np.ptp(a[:, j])
        cn = (17.0 - c[:, j].min()) / np.ptp(c[:, j])
        expect_n = reg.predict(np.array([[an, cn, an**2, an * cn, cn**2]]))[0]
        assert pred[j] == pytest.approx(y[:, j].min() + np.ptp(y[:, j]) * expect_n, rel=1e-9)


@pytest.mark.parametrize("lam", [1e-3, 0.1, 3.0])
def test_ridge_path_equals_sklearn_ridge(lam):
    a, c, y = _paper_matrices()
    y = y.copy()
    y[[2, 7], 1] = np.nan  # missing scores are left out of that benchmark only
    coef, intercept, _ = ridge_path(prepare(a, c, y), "ac_poly", np.array([lam]))
    for j in (0, 1):
        X, yn = _normalised(a, c, y, j)
        reg = Ridge(alpha=lam, solver="svd").fit(X, yn)
        np.testing.assert_allclose(coef[0, j], reg.coef_, atol=1e-9)
        assert intercept[0, j] == pytest.approx(reg.intercept_, abs=1e-9)


def test_ridge_loo_and_selection_equal_brute_force_refits():
    a, c, y = _paper_matrices()
    fam = RidgeFamily()
    _, _, loo = ridge_path(prepare(a, c, y), "ac_poly", fam.penalties)
    j = 5
    X, yn = _normalised(a, c, y, j)
    brute = np.zeros((len(fam.penalties), len(yn)))
    for li, lam in enumerate(fam.penalties):
        for i in range(len(yn)):
            keep = np.arange(len(yn)) != i
            brute[li, i] = yn[i] - Ridge(alpha=lam, solver="svd").fit(X[keep], yn[keep]).predict(X[i : i + 1])[0]
    np.testing.assert_allclose(loo[:, j], brute, atol=1e-8)
    chosen = get_law_model("ridge").fit(a, c, y).params["penalty"][j]
    assert chosen == pytest.approx(fam.penalties[np.argmin((brute**2).sum(axis=1))])


def _multitask_oracle(prep: Prepared, lam_shared: float, lam_dev: float) -> np.ndarray:
    """The multi-task objective solved as one stacked least-squares problem with penalty rows (numpy lstsq)."""
    B = prep.y.shape[1]
    p = 5
    blocks, targets = [], []
    for b in range(B):
        ok = prep.mask[:, b]
        X = features(prep.a[ok, b], prep.c[ok, b], "ac_poly")
        rows = np.zeros((ok.sum(), B + p + B * p))
        rows[:, b] = 1.0  # unpenalised intercept of benchmark b
        rows[:, B : B + p] = X
        rows[:, B + p + b * p : B + p + (b + 1) * p] = X
        blocks.append(rows)
        targets.append(prep.y[ok, b])
    pen = np.zeros((p + B * p, B + p + B * p))
    pen[:p, B : B + p] = np.sqrt(lam_shared) * np.eye(p)
    pen[p:, B + p :] = np.sqrt(lam_dev) * np.eye(B * p)
    design = np.vstack([*blocks, pen])
    target = np.concatenate([*targets, np.zeros(p + B * p)])
    theta = np.linalg.lstsq(design, target, rcond=None)[0]
    return theta[B : B + p][None, :] + theta[B + p :].reshape(B, p)


def test_multitask_solution_and_group_loo_equal_brute_force():
    a, c, y = _paper_matrices()
    y = y.copy()
    y[3, 2] = np.nan
    prep = prepare(a, c, y)
    fam = MultitaskFamily(shared=(0.01,), deviation=(1.0,))
    coef, _, loo = fam.path(prep)
    np.testing.assert_allclose(coef[0], _multitask_oracle(prep, 0.01, 1.0), atol=1e-8)
    n = y.shape[0]
    for i in (0, 3, 9):  # the setting leaves every benchmark at once
        keep = np.arange(n) != i
        beta = _multitask_oracle(_sub(prep, keep), 0.01, 1.0)
        sub = _sub(prep, keep)
        for b in range(8):
            if not prep.mask[i, b]:
                assert np.isnan(loo[0, b, i])
                continue
            ok = sub.mask[:, b]
            X = features(sub.a[ok, b], sub.c[ok, b], "ac_poly")
            icpt = sub.y[ok, b].mean() - X.mean(axis=0) @ beta[b]
            pred = icpt + features(prep.a[i, b], prep.c[i, b], "ac_poly") @ beta[b]
            assert loo[0, b, i] == pytest.approx(prep.y[i, b] - pred, abs=1e-8)


def _brute_nested_residuals(family, prep: Prepared) -> np.ndarray:
    """(n, B) residual of each setting from the family refitted (its own inner CV included) without it."""
    n = prep.y.shape[0]
    out = np.zeros(prep.y.shape)
    for i in range(n):
        cand = family.select(_sub(prep, np.arange(n) != i))
        x = features(prep.a[i], prep.c[i], cand.predictor.feature_set)  # (B, p)
        out[i] = prep.y[i] - (cand.predictor.intercept + np.einsum("bp,bp->b", x, cand.predictor.coef))
    return out


@pytest.mark.parametrize("family", [PAPER, RidgeFamily(), MultitaskFamily()], ids=["paper", "ridge", "multitask"])
def test_nested_inner_error_equals_brute_force(family):
    a, c, y = _paper_matrices(10)
    prep = prepare(a, c, y)
    brute = _brute_nested_residuals(family, prep)
    np.testing.assert_allclose(family.nested_residuals(prep), brute, atol=1e-8)
    assert family.nested_sse(prep) == pytest.approx(float((brute**2).sum()), rel=1e-6)


def _simplex_oracle(R: np.ndarray) -> np.ndarray:
    """Convex weights by scipy's NNLS with the sum-to-one constraint as a heavily weighted extra row."""
    big = 1e4
    design = np.vstack([R, big * np.ones((1, R.shape[1]))])
    target = np.concatenate([np.zeros(len(R)), [big]])
    return nnls(design, target, maxiter=10_000)[0]


def test_stacking_weights_equal_hand_cases_and_nnls():
    # orthogonal residuals of sizes 1 and 2: minimise w1² + 4 w2² on w1 + w2 = 1 -> (4/5, 1/5)
    np.testing.assert_allclose(simplex_weights(np.array([[1.0, 0.0], [0.0, 2.0]])), [0.8, 0.2], atol=1e-12)
    # a family whose residuals are twice another's is never mixed in
    r = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(simplex_weights(np.column_stack([2 * r, r])), [0.0, 1.0], atol=1e-12)
    # opposite errors cancel: equal weights give zero error
    np.testing.assert_allclose(simplex_weights(np.column_stack([r, -r])), [0.5, 0.5], atol=1e-12)
    rng = np.random.default_rng(5)
    for _ in range(20):
        R = rng.normal(size=(30, 4)) @ np.diag(rng.uniform(0.2, 2.0, 4)) + rng.normal(size=(30, 1))
        w = simplex_weights(R)
        assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
        oracle = _simplex_oracle(R)
        assert float(w @ R.T @ R @ w) <= float(oracle @ R.T @ R @ oracle) / oracle.sum() ** 2 + 1e-9
        np.testing.assert_allclose(w, oracle / oracle.sum(), atol=1e-5)


def test_auto_is_the_mix_weighted_by_brute_force_nested_residuals():
    a, c, y = _paper_matrices(11)
    prep = prepare(a, c, y)
    families = (PAPER, LINEAR, RidgeFamily(), MultitaskFamily())
    R = np.column_stack([_brute_nested_residuals(f, prep).ravel() for f in families])
    keep = np.isfinite(R).all(axis=0)
    w = np.zeros(len(families))
    oracle = _simplex_oracle(R[:, keep])
    w[keep] = oracle / oracle.sum()
    cand = AutoFamily(families).select(prep)
    np.testing.assert_allclose(list(cand.params["weights"].values()), w, atol=1e-4)
    new_a, new_c = np.full((3, 8), -2.3), np.array([[5.0] * 8, [15.0] * 8, [25.0] * 8])
    weights = np.array(list(cand.params["weights"].values()))  # rounded to 4 places: compare with the exact mix
    exact = AutoFamily(families).weights(prep)[0]
    mix = sum(wk * f.select(prep).predictor.predict(new_a, new_c) for wk, f in zip(exact, families, strict=True))
    np.testing.assert_allclose(cand.predictor.predict(new_a, new_c), mix, rtol=1e-10)
    np.testing.assert_allclose(weights, exact, atol=1e-4)


def test_auto_interval_equals_jackknife_plus_over_refits_of_the_whole_stack():
    a, c, y = _paper_matrices(9)
    law = get_law_model("auto")
    x_a, x_c = np.full((1, 8), -2.2), np.full((1, 8), 12.0)
    out = law.fit(a, c, y).predict(x_a, x_c, level=0.7)
    n = len(y)
    for j in (0, 6):
        mus, res = [], []
        for i in range(n):
            keep = np.arange(n) != i
            refit = law.fit(a[keep], c[keep], y[keep])  # weights, penalties and normalisation redone without i
            mus.append(refit.predict(x_a, x_c).mean[0, j])
            res.append(abs(y[i, j] - refit.predict(a[i : i + 1], c[i : i + 1]).mean[0, j]))
        lo, hi = _jackknife_plus_brute(mus, res, 0.7)
        assert out.lower[0, j] == pytest.approx(lo, rel=1e-9)
        assert out.upper[0, j] == pytest.approx(hi, rel=1e-9)


def _jackknife_plus_brute(loo_at_x: list[float], residuals: list[float], level: float) -> tuple[float, float]:
    from fractions import Fraction

    n = len(residuals)
    exact = Fraction(str(level))  # exact arithmetic: floor(alpha (n+1)), ceil((1-alpha)(n+1))
    lows = sorted(m - r for m, r in zip(loo_at_x, residuals, strict=True))
    highs = sorted(m + r for m, r in zip(loo_at_x, residuals, strict=True))
    k_lo, k_hi = math.floor((1 - exact) * (n + 1)), math.ceil(exact * (n + 1))
    return (lows[k_lo - 1] if k_lo >= 1 else -np.inf, highs[k_hi - 1] if k_hi <= n else np.inf)


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.99, 0.7, 0.6])
def test_jackknife_plus_interval_equals_brute_force_refits(level):
    a, c, y = _paper_matrices()
    fitted = get_law_model("paper").fit(a, c, y)
    x_a, x_c = -2.2, 12.0
    out = fitted.predict(np.full((1, 8), x_a), np.full((1, 8), x_c), level=level)
    j = 1
    n = len(y)
    mus, res = [], []
    for i in range(n):
        keep = np.arange(n) != i
        X, yn = _normalised(a[keep], c[keep], y[keep], j)
        reg = LinearRegression().fit(X, yn)
        aa, cc, yy = a[keep, j], c[keep, j], y[keep, j]
        raw = []
        for av, cv in ((x_a, x_c), (a[i, j], c[i, j])):
            an, cn = (av - aa.min()) / np.ptp(aa), (cv - cc.min()) / np.ptp(cc)
            raw.append(yy.min() + np.ptp(yy) * reg.predict(np.array([[an, cn, an**2, an * cn, cn**2]]))[0])
        mus.append(raw[0])
        res.append(abs(y[i, j] - raw[1]))
    lo, hi = _jackknife_plus_brute(mus, res, level)
    assert out.lower[0, j] == pytest.approx(lo, rel=1e-9)
    assert out.upper[0, j] == pytest.approx(hi, rel=1e-9)


def test_jackknife_plus_skips_unscored_and_is_unbounded_for_tiny_n():
    loo = np.array([[[1.0]], [[2.0]], [[3.0]]])
    res = np.array([[0.5], [np.nan], [0.5]])
    lower, upper = jackknife_plus(loo, res, 0.5)
    assert (lower[0, 0], upper[0, 0]) == (0.5, 3.5)  # k = 2: floor(0.5 * 3) = 1st, ceil(0.5 * 3) = 2nd
    lower, upper = jackknife_plus(loo, res, 0.9)
    assert lower[0, 0] == -np.inf and upper[0, 0] == np.inf
    four = np.array([[[1.0]], [[2.0]], [[3.0]], [[4.0]]])
    lower, upper = jackknife_plus(four, np.zeros((4, 1)), 0.8)  # alpha (n+1) = 0.2 * 5 = 1 exactly
    assert (lower[0, 0], upper[0, 0]) == (1.0, 4.0)


@pytest.mark.parametrize("model", ["paper", "ridge"])
def test_interval_coverage_on_synthetic_data_with_known_noise(model):
    rng = np.random.default_rng(1)
    law = get_law_model(model)
    hits = []
    for _ in range(12):
        a = rng.uniform(-3, -1, (40, 1))
        c = rng.uniform(0, 30, (40, 1))
        truth = 50 + 8 * (a + 2) - 3 * (a + 2) ** 2 + 0.5 * c
        y = truth + rng.normal(0, 2.0, truth.shape)
        fitted = law.fit(a[:25], c[:25], y[:25])
        out = fitted.predict(a[25:], c[25:], level=0.8)
        hits.append(((out.lower <= y[25:]) & (y[25:] <= out.upper)).mean())
    assert 0.72 <= float(np.mean(hits)) <= 0.92


@pytest.mark.parametrize("model", ["multitask", "auto"])
def test_interval_coverage_on_synthetic_benchmarks_sharing_a_law(model):
    rng = np.random.default_rng(2)
    law = get_law_model(model)
    hits = []
    for _ in range(6):
        a = np.repeat(rng.uniform(-3, -1, (40, 1)), 3, axis=1)
        c = np.repeat(rng.uniform(0, 30, (40, 1)), 3, axis=1)
        shape = 8 * (a + 2) - 3 * (a + 2) ** 2 + 0.5 * c
        truth = np.array([50.0, 30.0, 1000.0]) + np.array([1.0, 0.8, 20.0]) * shape
        y = truth + rng.normal(0, 1.0, truth.shape) * np.array([2.0, 2.0, 40.0])
        out = law.fit(a[:25], c[:25], y[:25]).predict(a[25:], c[25:], level=0.8)
        hits.append(((out.lower <= y[25:]) & (y[25:] <= out.upper)).mean())
    assert 0.72 <= float(np.mean(hits)) <= 0.92


def test_paper_model_loo_r2_matches_the_law_page():
    study = load_study("paper-v3")
    ev = evaluate_study(study, "paper", 0.8)
    for bench, res in ev.benchmarks.items():
        assert res.loo_r2 == pytest.approx(fit_benchmark(study, bench).loo_r2, abs=1e-9)
    assert ev.mean["vision"] == pytest.approx(0.703, abs=0.005)
    assert ev.mean["ocr"] == pytest.approx(0.457, abs=0.005)
    assert ev.chosen == {"paper": 15}


def test_evaluation_metrics_from_held_out_predictions():
    from scipy.stats import spearmanr

    study = load_study("paper-v3")
    ev = evaluate_study(study, "ridge", 0.8)
    held = ev.heldout
    for bench, res in ev.benchmarks.items():
        part = held[held["benchmark"] == bench]
        y, p = part["score"].to_numpy(), part["predicted"].to_numpy()
        assert res.spearman == pytest.approx(spearmanr(y, p).statistic)
        best = part["setting"].iloc[int(np.argmax(y))]
        ranking = part.sort_values("predicted", ascending=False)["setting"].tolist()
        assert res.top1_hit == (ranking[0] == best)
        assert res.top3_hit == (best in ranking[:3])
        assert res.coverage == pytest.approx(((part["lower"] <= part["score"]) & (part["score"] <= part["upper"])).mean())
        assert res.interval_width == pytest.approx((part["upper"] - part["lower"]).mean())


@pytest.mark.parametrize("model", ["ridge", "auto"])
def test_nested_cv_does_not_peek_at_the_held_out_setting(model):
    study = load_study("paper-v3")
    base = evaluate_study(study, model, 0.8)
    long = study.long.copy()
    held = "SigLIP-L"
    long.loc[long["setting"] == held, "score"] *= 1.3  # a very different held-out truth
    from dataclasses import replace

    changed = evaluate_study(replace(study, long=long), model, 0.8)
    fold = next(f for f in base.folds if f["held_out"] == held)
    fold2 = next(f for f in changed.folds if f["held_out"] == held)
    assert fold == fold2
    a = base.heldout[base.heldout["setting"] == held]["predicted"].to_numpy()
    b = changed.heldout[changed.heldout["setting"] == held]["predicted"].to_numpy()
    np.testing.assert_allclose(a, b)  # the held-out prediction does not depend on its own score
    assert base.mean["all"] != changed.mean["all"]


def _small_study(n: int, constant: bool = False):
    import pandas as pd

    rng = np.random.default_rng(0)
    names = [f"s{i}" for i in range(n)]
    settings = pd.DataFrame({"setting": names, "A": rng.uniform(-3, -1, n), "C": rng.uniform(0, 30, n)})
    scores = pd.DataFrame({"mme": np.full(n, 1000.0) if constant else rng.uniform(800, 1500, n)}, index=names)
    return make_study("small", settings, scores)


def test_evaluate_refuses_tiny_and_constant_studies():
    with pytest.raises(InputError, match="need 4"):
        evaluate_study(_small_study(3), "paper")
    with pytest.raises(InputError, match="same score"):
        evaluate_study(_small_study(8, constant=True), "paper")
    with pytest.raises(InputError, match="strictly between 0 and 1"):
        evaluate_study(_small_study(8), "paper", level=1.0)


def test_small_study_is_labelled_interpolating_but_not_by_the_linear_law():
    study = _small_study(5)
    ev = evaluate_study(study, "paper")
    assert ev.benchmarks["mme"].interpolating
    assert fit_benchmark(study, "mme").interpolating
    assert not evaluate_study(study, "linear").benchmarks["mme"].interpolating


def test_paper_model_on_the_released_v1_table_matches_its_own_loo(reference_dir):
    from engine.study.io import parse_study_file

    study = parse_study_file((reference_dir / "law_v1_released_ablations.csv").read_bytes(), "v1")
    ev = evaluate_study(study, "paper", 0.8)
    for bench, res in ev.benchmarks.items():
        assert res.loo_r2 == pytest.approx(fit_benchmark(study, bench).loo_r2, abs=1e-9)
    assert ev.mean["vision"] == pytest.approx(0.85, abs=0.005) and ev.mean["ocr"] == pytest.approx(0.54, abs=0.005)


@pytest.mark.slow
def test_auto_intervals_cover_about_their_level_on_the_bundled_study():
    ev = evaluate_study(load_study("paper-v3"), "auto", 0.8)
    assert 0.70 <= ev.coverage <= 0.90
    assert sum(ev.chosen.values()) == 15 and set(ev.chosen) <= set(LAW_MODELS)
