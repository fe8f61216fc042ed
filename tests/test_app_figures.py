"""Figure builders of engine.plots on small synthetic inputs: the right traces, labels and hover names."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from engine.plots import law, overview, policy
from engine.plots.style import DETAIL_CHARS, FAMILY_COLORS, setting_families

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
    assert titles == ["MME<br>R² in-sample 0.90", "SEED<br>R² in-sample 0.80", "MMMU<br>R² in-sample 0.40"]
    assert sum(t.name == "y = x" for t in fig.data) == 3


def test_small_multiples_keep_the_width_for_their_panels():
    """Four panels a row in a 1000-px window: with the legend on the right (a fifth of the width) and 6 % gaps the
    panel titles, the next panel's y ticks and the x titles ran into each other. Legend under the panels, wider
    gaps: each panel gets a quarter of the plot width less the gaps."""
    fams = setting_families(SETTINGS)
    heldout = pd.concat([_preds().assign(benchmark=b, lower=lambda f: f["predicted"] - 3,
                                         upper=lambda f: f["predicted"] + 3, inside=True) for b in "abcd"])
    for fig in (law.small_multiples([(b, _preds(), 0.9) for b in "abcd"], fams),
                law.heldout_small_multiples(heldout, {}, fams, "paper", 0.8)):
        assert fig.layout.legend.orientation == "h" and fig.layout.legend.yanchor == "bottom"
        gaps = [fig.layout[f"xaxis{i + 1}"].domain[0] - fig.layout[f"xaxis{i or ''}"].domain[1] for i in (1, 2, 3)]
        assert min(gaps) >= 0.08 - 1e-9


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
    # the baselines are named in the legend, not by text on the line (it sat on the bars, both labels at ~0.36)
    assert [(sh.y0, sh.showlegend) for sh in fig.layout.shapes] == [(0.4, True), (0.33, True)]
    assert "random features" in fig.layout.shapes[0].name and "0.40" in fig.layout.shapes[0].name
    assert "null expectation" in fig.layout.shapes[1].name and "0.33" in fig.layout.shapes[1].name
    assert not fig.layout.annotations
    bars = pd.DataFrame({"benchmark": ["MME", "MME", "SEED", "SEED"], "variant": ["AC", "A", "AC", "A"],
                         "r2": [0.9, 0.5, 0.8, 0.4]})
    fig = overview.r2_by_benchmark(bars)
    assert [t.name for t in fig.data] == ["AC", "A"] and list(fig.data[0].x) == ["MME", "SEED"]
    fig = overview.ac_scatter(SETTINGS, setting_families(SETTINGS))
    assert sorted(x for t in fig.data for x in t.text) == sorted(SETTINGS["setting"])


def test_policy_figures():
    mean = pd.DataFrame({"strategy": ["region", "random", "greedy"] * 4,
                         "metric": ["at-budget"] * 6 + ["first-hit"] * 6,
                         "budget": [2, 2, 2, 3, 3, 3] * 2, "recall": np.linspace(0.1, 0.9, 12),
                         "chance": [0.2, 0.2, 0.2, 0.3, 0.3, 0.3] * 2})
    fig = policy.strategy_curves(mean, 3, "MME")
    names = [t.name for t in fig.data if t.showlegend]
    assert names == ["region sampling (the paper's AC policy)", "random order", "greedy (best predicted next)",
                     "chance (best setting among those finetuned)"]
    assert len(fig.data) == 8 and list(fig.data[3].y) == pytest.approx([0.2, 0.3])
    assert "first hit" in fig.layout.annotations[1].text and "at budget" in fig.layout.annotations[0].text
    # side by side in a 1000-px window: the y title once (on the right panel it sat on the left plot), a title
    # whose every line fits, panel titles on two lines, the legend under the plots
    assert fig.layout.yaxis.title.text.startswith("Recall@3") and not fig.layout.yaxis2.title.text
    lines = [re.sub(r"<[^>]+>", "", line) for line in fig.layout.title.text.split("<br>")]
    assert len(lines) >= 2 and all(len(line) <= DETAIL_CHARS for line in lines) and "MME" in lines[1]
    assert all("<br>" in a.text for a in fig.layout.annotations) and fig.layout.legend.yanchor == "bottom"
    runs = pd.DataFrame({"method": ["AC policy"] * 3 + ["random"] * 3, "runs": [3, 4, 3, 8, 10, 12]})
    hist = policy.runs_needed_histogram(runs, 3, "simulated runs, summed over 8 benchmarks (8 × 200)")
    assert len(hist.data) == 2 and "summed over 8" in hist.layout.yaxis.title.text
    cost = pd.DataFrame({"method": ["AC policy", "finetune all"], "gpu_hours": [40.0, 200.0]})
    assert list(policy.cost_bars(cost, "gpu_hours", "GPU-hours").data[0].y) == [40.0, 200.0]


def test_tables_agree_with_the_engine():
    from engine.law import fit_study
    from engine.plots import tables
    from engine.policy import compare_strategies, recall_curve
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
    comparison = compare_strategies(study, trials=30, seed=1, top=3, variant="paper", strategies=("region", "random", "greedy"))
    for strategy in ("region", "greedy"):
        theirs = recall_curve(study, None, trials=30, seed=1, top=3, variant="paper", strategy=strategy,
                              metric="first-hit")
        ours = comparison.recall[(comparison.recall["strategy"] == strategy) & (comparison.recall["metric"] == "first-hit")]
        assert ours["recall"].tolist() == pytest.approx(theirs["recall"].tolist())
    random = comparison.recall[(comparison.recall["strategy"] == "random") & (comparison.recall["metric"] == "at-budget")]
    assert random["recall"].tolist() == pytest.approx(recall_curve(study, trials=30, seed=1)["random_sampling_recall"].tolist())
    runs = comparison.runs[comparison.runs["benchmark"] == "mme"]
    assert set(runs["strategy"]) == {"region", "random", "greedy"} and len(runs) == 90
