"""Figure builders of engine.plots on small synthetic inputs: the right traces, labels and hover names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.plots import law, overview, policy
from engine.plots.style import FAMILY_COLORS, setting_families

SETTINGS = pd.DataFrame({"setting": ["CLIP336", "DINOv2", "SD1.5", "Mine"], "A": [-1.9, -2.3, -2.5, -2.0],
                         "C": [15.7, 24.5, 22.0, 10.0]})


def _preds() -> pd.DataFrame:
    score = np.array([64.0, 58.0, 42.0, 50.0])
    return SETTINGS.assign(score=score, predicted=score + np.array([0.5, -0.4, 0.2, -0.3]),
                           loo_predicted=score + np.array([1.5, -2.0, 1.0, -1.0]), residual=[-0.5, 0.4, -0.2, 0.3])


def test_families_come_from_the_table_or_a_family_column():
    fam = setting_families(SETTINGS)
    assert fam["CLIP336"] == "language-supervised" and fam["SD1.5"] == "diffusion" and fam["Mine"] == "other"
    fam = setting_families(SETTINGS.assign(family=["x", "", None, "self-supervised"]))
    assert fam["CLIP336"] == "x" and fam["DINOv2"] == "self-supervised" and fam["Mine"] == "self-supervised"


def test_predicted_vs_actual_has_identity_line_loo_markers_and_setting_hover():
    fams = setting_families(SETTINGS)
    fig = law.predicted_vs_actual(_preds(), fams, "MME", 0.93, 0.71, "")
    names = [t.name for t in fig.data]
    assert "y = x" in names and "leave-one-out prediction" in names
    assert {"language-supervised", "diffusion"} <= set(names)
    hover = " ".join(h for t in fig.data if t.hovertext is not None for h in t.hovertext)
    assert "CLIP336" in hover and "Mine" in hover
    assert "R² in-sample 0.930, out of sample 0.710" in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "measured score"
    clip = next(t for t in fig.data if t.name == "language-supervised")
    assert clip.marker.color == FAMILY_COLORS["language-supervised"]


def test_small_multiples_one_panel_per_benchmark():
    fams = setting_families(SETTINGS)
    fig = law.small_multiples([("MME", _preds(), 0.9), ("SEED", _preds(), 0.8), ("MMMU", _preds(), 0.4)], fams)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["MME (R² 0.90)", "SEED (R² 0.80)", "MMMU (R² 0.40)"]
    assert sum(t.name == "y = x" for t in fig.data) == 3


def test_surface_contour_draws_grid_and_settings():
    a = np.linspace(0, 1, 5)
    c = np.linspace(0, 1, 4)
    z = np.add.outer(c, a)
    points = pd.DataFrame({"setting": ["CLIP336", "DINOv2"], "A_norm": [1.0, 0.2], "C_norm": [0.3, 1.0],
                           "score": [64.0, 58.0]})
    fig = law.surface_contour(a, c, z, points, setting_families(SETTINGS), "MME")
    assert fig.data[0].type == "contour" and np.asarray(fig.data[0].z).shape == (4, 5)
    assert sorted(x for t in fig.data[1:] for x in t.text) == ["CLIP336", "DINOv2"]


def test_r2_comparison_and_overview_bars():
    table = pd.DataFrame({"feature_set": ["ac_poly", "a_poly", "c_poly"], "variant": ["AC", "A", "C"],
                          "r2": [0.95, 0.6, 0.3]})
    fig = law.r2_comparison(table, 0.4, 0.33, "MME")
    assert list(fig.data[0].y) == [0.95, 0.6, 0.3]
    assert len(fig.layout.shapes) == 2
    bars = pd.DataFrame({"benchmark": ["MME", "MME", "SEED", "SEED"], "variant": ["AC", "A", "AC", "A"],
                         "r2": [0.9, 0.5, 0.8, 0.4]})
    fig = overview.r2_by_benchmark(bars)
    assert [t.name for t in fig.data] == ["AC", "A"] and list(fig.data[0].x) == ["MME", "SEED"]
    fig = overview.ac_scatter(SETTINGS, setting_families(SETTINGS))
    assert sorted(x for t in fig.data for x in t.text) == sorted(SETTINGS["setting"])


def test_policy_figures():
    curves = pd.DataFrame({"budget": [1, 2, 3] * 2, "recall": [0.3, 0.6, 1.0, 0.2, 0.5, 0.9],
                           "random_recall": [0.2, 0.4, 0.6] * 2, "variant": ["paper"] * 3 + ["measured"] * 3})
    fig = policy.recall_curves(curves, 3, "MME")
    assert [t.name for t in fig.data] == ["AC policy (paper)", "AC policy (measured)", "chance (budget / n)"]
    assert list(fig.data[2].y) == [0.2, 0.4, 0.6]
    fig = policy.recall_curves(curves.assign(random_sampling_recall=0.5), 3, "MME")
    assert [t.name for t in fig.data][2:] == ["random order, same refit", "chance (budget / n)"]
    runs = pd.DataFrame({"method": ["AC policy"] * 3 + ["random"] * 3, "runs": [3, 4, 3, 8, 10, 12]})
    assert len(policy.runs_needed_histogram(runs, 3).data) == 2
    cost = pd.DataFrame({"method": ["AC policy", "finetune all"], "gpu_hours": [40.0, 200.0]})
    assert list(policy.cost_bars(cost, "gpu_hours", "GPU-hours").data[0].y) == [40.0, 200.0]


def test_tables_agree_with_the_engine():
    from engine.law import fit_study
    from engine.plots import tables
    from engine.policy import recall_curve, simulate
    from engine.study import load_study

    study = load_study("paper-v3")
    report = fit_study(study)
    fit = report.fit("mme")
    coef = tables.coefficients(fit).set_index("term")["raw units"]
    a, c = -2.0, 18.0  # the raw-unit polynomial reproduces the fit's prediction
    raw = coef["intercept"] + coef["A"] * a + coef["C"] * c + coef["A²"] * a * a + coef["A·C"] * a * c + coef["C²"] * c * c
    assert raw == pytest.approx(float(fit.predict(a, c)))
    points = tables.surface(fit, n=11)[3]
    assert points["A_norm"].min() == 0 and points["A_norm"].max() == 1
    r2 = tables.r2_by_benchmark(report)
    assert len(r2) == 4 * len(report.fits) and set(r2["variant"]) == {"AC", "A", "C", "random"}
    sim = {"paper": simulate(study, None, budget=2, trials=30, seed=1, top=3, variant="paper")}
    ours = tables.policy_curves(sim).reset_index(drop=True)
    theirs = recall_curve(study, None, trials=30, seed=1, top=3, variant="paper")
    pd.testing.assert_frame_equal(ours[theirs.columns.tolist()], theirs.reset_index(drop=True), check_dtype=False)
    runs = tables.runs_needed(sim, "mme")
    assert set(runs["method"]) == {"AC policy (paper)", "random order"} and len(runs) == 60
