"""Every figure and table showing a law prediction says in-sample or out of sample, the scale and the method."""

from __future__ import annotations

from engine.law import evaluate_study, fit_benchmark
from engine.plots import law as plots
from engine.plots import setting_families, tables
from engine.study import load_study


def _title(fig) -> str:
    return fig.layout.title.text


def test_in_sample_figures_name_their_method_and_sample():
    study = load_study("paper-v3")
    families = setting_families(study.settings)
    fit = fit_benchmark(study, "mme", "c_poly")
    title = _title(plots.predicted_vs_actual(fit.predictions, families, "MME", fit.r2, fit.loo_r2, "", "c_poly"))
    assert "OLS on C only, quadratic" in title and "in-sample" in title and "out of sample" in title
    multiples = plots.small_multiples([("MME", fit.predictions, fit.r2)], families, feature_set="c_poly")
    assert "OLS on C only, quadratic" in _title(multiples) and "score units" in _title(multiples)
    assert "in-sample" in multiples.layout.annotations[0].text
    a_grid, c_grid, z, points = tables.surface(fit_benchmark(study, "mme"))
    surface = _title(plots.surface_contour(a_grid, c_grid, z, points, families, "MME"))
    assert "in-sample" in surface and "OLS on A and C, quadratic (the law)" in surface


def test_held_out_tables_and_panels_name_model_level_and_units():
    study = load_study("paper-v3")
    ev = evaluate_study(study, "ridge", 0.7)
    held = tables.heldout_table(ev.heldout, "ridge", 0.7)
    assert {"predicted while held out ('ridge' law)", "70% interval: lower (jackknife+)",
            "70% interval: upper (jackknife+)"} <= set(held.columns)
    fig = plots.heldout_small_multiples(ev.heldout, {}, setting_families(study.settings), "ridge", 0.7)
    assert "Out of sample" in _title(fig) and "'ridge' law" in _title(fig) and "score units" in _title(fig)
    fitted = tables.fitted_predictions(fit_benchmark(study, "mme"))
    assert {"predicted in-sample (fit on all)", "predicted while held out (out of sample)"} <= set(fitted.columns)
