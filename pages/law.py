"""Law page: per-benchmark fit and prediction — in-sample fit vs out-of-sample prediction of a chosen law model
(intervals, coverage), the fitted surface, R² vs baselines, coefficients."""

from __future__ import annotations

import streamlit as st

from engine.benchmarks import label
from engine.law import (
    FEATURE_SETS,
    LAW_MODEL_DESCRIPTIONS,
    LAW_MODELS,
    evaluation_if_ready,
    predict_unscored,
    too_large_for_app,
)
from engine.plots import law as plots
from engine.plots import setting_families, tables
from pages import _ui

ALL = "all"
LEVELS = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
MODEL_NAMES = {"paper": "paper (OLS quadratic)", "linear": "linear law", "ridge": "ridge quadratic",
               "multitask": "multi-task quadratic", "auto": "auto (chosen by nested CV)"}


def _label(name: str) -> str:
    return "All benchmarks" if name == ALL else label(name)


def _render_all(study, report, feature_set: str, families) -> None:
    panels = [(label(b), fits[feature_set].predictions, fits[feature_set].r2) for b, fits in report.fits.items()]
    prov = _ui.provenance(study, feature_set, benchmark=ALL)
    _ui.show_figure(plots.small_multiples(panels, families, feature_set=feature_set), f"law-all-{feature_set}", prov)
    st.subheader("Fit quality per benchmark")
    _ui.show_table(plots.human_columns(tables.fit_quality(report, feature_set)), f"law-fit-quality-{feature_set}", prov)


def _render_one(study, report, benchmark: str, feature_set: str, families) -> None:
    name, unit = label(benchmark), tables.score_unit(benchmark, study.table(benchmark)["score"])
    fit = report.fit(benchmark, feature_set)
    prov = _ui.provenance(study, feature_set, benchmark=benchmark)
    if fit.interpolating:
        st.warning(f"{name}: {fit.n} settings for {fit.n_params} parameters — the fit interpolates them, so its "
                   "in-sample R² is meaningless. Read the out-of-sample figures below, or use the linear law.",
                   icon=":material/warning:")
    _ui.metric_row({"label": "R² (in-sample)", "value": f"{fit.r2:.3f}"},
                   {"label": "R² out of sample (leave one out)", "value": f"{fit.loo_r2:.3f}"},
                   {"label": "RMSE out of sample (leave one out)", "value": f"{fit.loo_rmse:.4g}{unit}"},
                   {"label": "Settings fitted", "value": fit.n})
    # one figure per row: side by side, a laptop-wide window left each ~400 px (title cut, labels overlapping)
    fig = plots.predicted_vs_actual(fit.predictions, families, name, fit.r2, fit.loo_r2, unit, feature_set)
    _ui.show_figure(fig, f"law-{benchmark}-{feature_set}-pred", prov)
    a_grid, c_grid, z, points = tables.surface(fit)
    fig = plots.surface_contour(a_grid, c_grid, z, points, families, name, unit, feature_set)
    _ui.show_figure(fig, f"law-{benchmark}-{feature_set}-surface", prov)
    st.subheader("Does it take both A and C?")
    comparison = tables.r2_comparison(report, benchmark)
    fig = plots.r2_comparison(comparison, report.random_r2[benchmark], report.random_null[benchmark], name)
    _ui.show_figure(fig, f"law-{benchmark}-r2", prov)
    st.caption(
        f"Random features: mean R² of the same quadratic on random uniform A, C ({report.random_trials} draws). "
        "Null expectation: R² that 5 unrelated regressors reach on average, 5 / (n − 1)."
    )
    _ui.show_table(plots.human_columns(comparison), f"law-{benchmark}-r2-table", prov)
    st.subheader("Coefficients")
    st.caption("Normalised: on min-max normalised A, C and score. Raw units: the same polynomial in the study's "
               f"A, C and score{unit and f' ({unit})'}.")
    _ui.show_table(tables.coefficients(fit), f"law-{benchmark}-{feature_set}-coefficients", prov)
    with st.expander(f"Fitted settings: in-sample and held-out predictions ({tables.feature_set_label(feature_set)}, "
                     f"score units{unit and f': {unit}'})"):
        _ui.show_table(tables.fitted_predictions(fit), f"law-{benchmark}-{feature_set}-predictions", prov)


@st.fragment(run_every=1.0)
def _wait_for_evaluation(study, model: str, level: float) -> None:
    """Polls the background evaluation; redraws the page once it is ready (the script thread never waits)."""
    if evaluation_if_ready(study, model, level) is not None:
        st.rerun(scope="app")
    st.info(f"Evaluating the '{model}' law out of sample (each setting held out of every benchmark)…",
            icon=":material/hourglass_top:")


def _render_predict(study, benchmark: str, model: str, level: float, families) -> None:
    """Fit vs predict: in-sample R² beside the held-out figures of the chosen law model."""
    st.subheader("Fit vs predict: how well does the law predict a setting it has not seen?")
    st.caption(f"Model **{MODEL_NAMES[model]}**: {LAW_MODEL_DESCRIPTIONS[model]}. Out of sample = each setting is removed from "
               "every benchmark (as a new encoder would be), the model — normalisation, penalties and choices "
               f"included — is fitted on the others and predicts it with a {level:.0%} jackknife+ interval.")
    why = too_large_for_app(study, model)
    if why:
        st.info(why[0].upper() + why[1:] + ".", icon=":material/terminal:")
        return
    evaluation = evaluation_if_ready(study, model, level)
    if evaluation is None:
        _wait_for_evaluation(study, model, level)
        return
    prov = _ui.provenance(study, "ac_poly", benchmark=benchmark, model=model, level=level)
    if benchmark == ALL:
        st.markdown(f"Mean R² out of sample: {tables.group_means_text(evaluation.mean)}. Intervals cover **{evaluation.coverage:.0%}** of all held-out "
                    f"scores (target {level:.0%}). Chosen per fold: "
                    + ", ".join(f"{k} ×{v}" for k, v in evaluation.chosen.items()) + ".")
        labels = {b: label(b) for b in evaluation.benchmarks}
        fig = plots.heldout_small_multiples(evaluation.heldout, labels, families, model, level)
        _ui.show_figure(fig, f"law-all-{model}-heldout", prov)
        _ui.show_table(tables.evaluation_table(evaluation), f"law-evaluate-{model}-{level}", prov)
        return
    if benchmark not in evaluation.benchmarks:
        st.caption(f"{label(benchmark)} is not evaluated: {evaluation.skipped.get(benchmark, 'too few settings')}")
        return
    res = evaluation.benchmarks[benchmark]
    _ui.metric_row(
        {"label": "R² in-sample (fit on all)", "value": f"{res.in_sample_r2:.3f}",
         "help": "Meaningless when the fit interpolates" if res.interpolating else None},
        {"label": "R² out of sample", "value": f"{res.loo_r2:.3f}"},
        {"label": "Spearman ρ out of sample", "value": f"{res.spearman:.3f}"},
        {"label": "True best in predicted top 3", "value": "yes" if res.top3_hit else "no"},
        {"label": f"Coverage of {level:.0%} intervals", "value": f"{res.coverage:.0%}",
         "help": f"Mean interval width {res.interval_width:.4g} score units"},
    )
    if res.interpolating:
        st.warning("Interpolating: no more settings than parameters; the in-sample R² says nothing.", icon=":material/warning:")
    held = evaluation.heldout[evaluation.heldout["benchmark"] == benchmark]
    fig = plots.heldout_intervals(held, families, label(benchmark), model, level, tables.score_unit(benchmark, study.table(benchmark)["score"]))
    _ui.show_figure(fig, f"law-{benchmark}-{model}-heldout", prov)
    with st.expander(f"Held-out predictions and {level:.0%} intervals of the '{model}' law (table)"):
        _ui.show_table(tables.heldout_table(held, model, level), f"law-{benchmark}-{model}-heldout-table", prov)


def _render_unscored(study, benchmark: str, model: str, level: float) -> None:
    """Settings with A and C but no score: the chosen model's prediction with its out-of-sample interval."""
    scope = None if benchmark == ALL else benchmark
    where = "any benchmark" if scope is None else label(benchmark)
    st.subheader(f"Settings without a score on {where}: predicted")
    if not tables.unscored_count(study, scope):
        st.caption(f"Every setting with A and C has a score on {where}; nothing left to predict.")
        return
    if not _ui.law_fit_ready(study, model):
        return
    predictions = predict_unscored(study, model, level, benchmark=scope)
    st.caption(f"Out of sample: these settings have no score, so the **{MODEL_NAMES[model]}** law, fitted on the "
               f"scored settings, never saw them. Interval: {level:.0%} jackknife+ (finite-sample guarantee). Scores in "
               "each benchmark's own units (MME: points out of 2000; accuracies: %; an unknown benchmark: the scale "
               "of its scores), clipped to the valid range shown — none when the scale is unknown.")
    for bench, reason in predictions.skipped.items():
        st.caption(f"{label(bench)} not predicted: {reason}")
    if predictions.table.empty:
        return
    table = tables.unscored_table(predictions)
    flagged = table.loc[table["flags"] != "", "setting"].unique().tolist()
    if flagged:
        st.warning(f"Flagged (see the flags column): {', '.join(flagged)}.", icon=":material/warning:")
    prov = _ui.provenance(study, "ac_poly", benchmark=benchmark, model=model, level=level,
                          prediction="out of sample, jackknife+ interval")
    _ui.show_table(table, f"law-{benchmark}-{model}-unscored", prov)


def render() -> None:
    st.title("The law, per benchmark")
    study = _ui.current_study()
    with st.spinner("Fitting the law…"):
        report = _ui.law_report(study)
    cols = st.columns(4)
    with cols[0]:
        benchmark = _ui.url_selectbox("Benchmark", [ALL, *report.benchmarks], "law_benchmark", "benchmark",
                                      format_func=_label)
    with cols[1]:
        feature_set = st.selectbox("Features (in-sample fit)", list(FEATURE_SETS), key="law_feature_set",
                                   format_func=tables.feature_set_label, help="Which terms of A and C the fit uses")
    with cols[2]:
        model = _ui.url_selectbox("Law model (prediction)", list(LAW_MODELS), "law_model", "model",
                                  format_func=MODEL_NAMES.get, help="paper reproduces the paper; the others are "
                                  "chosen on training settings only")
    with cols[3]:
        level = st.select_slider("Interval level", LEVELS, value=0.8, key="law_level", format_func=lambda v: f"{v:.0%}")
    families = setting_families(study.settings)
    for bench, why in report.skipped.items():
        st.caption(f"{label(bench)} not fitted: {why}")
    _render_predict(study, benchmark, model, level, families)
    _render_unscored(study, benchmark, model, level)
    st.subheader("The fit on all settings (in-sample)")
    if benchmark == ALL:
        _render_all(study, report, feature_set, families)
    else:
        _render_one(study, report, benchmark, feature_set, families)


_ui.run(render)
