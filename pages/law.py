"""Law page: per-benchmark fit — predicted vs actual, the fitted surface, R² vs baselines, coefficients, LOO."""

from __future__ import annotations

import streamlit as st

from engine.benchmarks import label
from engine.law import FEATURE_SETS
from engine.plots import law as plots
from engine.plots import tables
from engine.plots.style import setting_families
from pages import _ui

ALL = "all"


def _label(name: str) -> str:
    return "All benchmarks" if name == ALL else label(name)


def _render_all(study, report, feature_set: str, families) -> None:
    panels = [(label(b), fits[feature_set].predictions, fits[feature_set].r2) for b, fits in report.fits.items()]
    prov = _ui.provenance(study, feature_set, benchmark=ALL)
    _ui.show_figure(plots.small_multiples(panels, families), f"law-all-{feature_set}", prov)
    st.subheader("Fit quality per benchmark")
    _ui.show_table(tables.fit_quality(report, feature_set), f"law-fit-quality-{feature_set}", prov)
    predictions = report.predictions_table()
    if len(predictions) and feature_set == "ac_poly":
        st.subheader("Predictions for settings without a score (± leave-one-out RMSE)")
        _ui.show_table(predictions, "law-unscored-all", prov)


def _render_one(study, report, benchmark: str, feature_set: str, families) -> None:
    name, unit = label(benchmark), tables.score_unit(benchmark)
    fit = report.fit(benchmark, feature_set)
    prov = _ui.provenance(study, feature_set, benchmark=benchmark)
    cols = st.columns(4)
    cols[0].metric("R² (in-sample)", f"{fit.r2:.3f}")
    cols[1].metric("Leave-one-out R²", f"{fit.loo_r2:.3f}")
    cols[2].metric("Leave-one-out RMSE", f"{fit.loo_rmse:.4g}{unit}")
    cols[3].metric("Settings fitted", fit.n)
    left, right = st.columns(2)
    with left:
        fig = plots.predicted_vs_actual(fit.predictions, families, name, fit.r2, fit.loo_r2, unit)
        _ui.show_figure(fig, f"law-{benchmark}-{feature_set}-pred", prov)
    with right:
        a_grid, c_grid, z, points = tables.surface(fit)
        fig = plots.surface_contour(a_grid, c_grid, z, points, families, name, unit)
        _ui.show_figure(fig, f"law-{benchmark}-{feature_set}-surface", prov)
    st.subheader("Does it take both A and C?")
    comparison = tables.r2_comparison(report, benchmark)
    left, right = st.columns([3, 2])
    with left:
        fig = plots.r2_comparison(comparison, report.random_r2[benchmark], report.random_null[benchmark], name)
        _ui.show_figure(fig, f"law-{benchmark}-r2", prov)
    with right:
        st.caption(
            f"Random features: mean R² of the same quadratic on random uniform A, C ({report.random_trials} draws). "
            "Null expectation: R² that 5 unrelated regressors reach on average, 5 / (n − 1)."
        )
        _ui.show_table(comparison, f"law-{benchmark}-r2-table", prov)
    st.subheader("Coefficients")
    st.caption("Normalised: on min-max normalised A, C and score. Raw units: the same polynomial in the study's "
               f"A, C and score{unit and f' ({unit})'}.")
    _ui.show_table(tables.coefficients(fit), f"law-{benchmark}-{feature_set}-coefficients", prov)
    st.subheader("Predictions")
    unscored = tables.unscored_predictions(study, fit)
    if unscored.empty:
        st.caption(f"Every setting with A and C has a {name} score; nothing left to predict.")
    else:
        st.markdown(f"**Settings without a {name} score**: prediction ± leave-one-out RMSE")
        _ui.show_table(unscored, f"law-{benchmark}-{feature_set}-unscored", prov)
    with st.expander("Fitted settings: predictions and residuals"):
        _ui.show_table(fit.predictions, f"law-{benchmark}-{feature_set}-predictions", prov)


def render() -> None:
    st.title("The law, per benchmark")
    study = _ui.current_study()
    with st.spinner("Fitting the law…"):
        report = _ui.law_report(study)
    left, right = st.columns(2)
    with left:
        benchmark = _ui.url_selectbox("Benchmark", [ALL, *report.benchmarks], "law_benchmark", "benchmark",
                                      format_func=_label)
    with right:
        feature_set = st.selectbox("Features", list(FEATURE_SETS), key="law_feature_set",
                                   format_func=tables.feature_set_label, help="Which terms of A and C the fit uses")
    families = setting_families(study.settings)
    for bench, why in report.skipped.items():
        st.caption(f"{label(bench)} not fitted: {why}")
    if benchmark == ALL:
        _render_all(study, report, feature_set, families)
    else:
        _render_one(study, report, benchmark, feature_set, families)


_ui.run(render)
