"""Policy page: Recall@T vs budget of the AC policy against random order, the recommender and the cost panel."""

from __future__ import annotations

import math

import streamlit as st

from engine.benchmarks import label
from engine.plots import policy as plots
from engine.plots import tables
from engine.policy import cost_comparison, recommend
from pages import _ui

ALL = "all"


def _label(name: str) -> str:
    return "All benchmarks (mean)" if name == ALL else label(name)


def _controls(study, benchmarks: list[str]) -> dict:
    cols = st.columns(4)
    with cols[0]:
        benchmark = _ui.url_selectbox("Benchmark", [ALL, *benchmarks], "policy_benchmark", "benchmark",
                                      format_func=_label)
    top = cols[1].number_input("Top T", min_value=1, max_value=max(1, len(study.setting_names) - 1), value=3,
                               key="policy_top", help="Success: the best setting is among the T ranked highest")
    trials = cols[2].number_input("Trials", min_value=10, max_value=5000, value=200, step=50, key="policy_trials",
                                  help="Simulated finetuning orders per benchmark (more = smoother, slower)")
    seed = cols[3].number_input("Seed", min_value=0, value=0, step=1, key="policy_seed")
    return {"benchmark": benchmark, "top": int(top), "trials": int(trials), "seed": int(seed)}


def _render_curves(study, results: dict, ctl: dict) -> None:
    curves = tables.policy_curves(results)
    bench = ctl["benchmark"]
    shown = curves if bench == ALL else curves[curves["benchmark"] == bench]
    mean = shown.groupby(["variant", "budget"], as_index=False, sort=False)[
        ["recall", "random_recall", "random_sampling_recall"]].mean()
    prov = _ui.provenance(study, "ac_poly", top=ctl["top"], trials=ctl["trials"], seed=ctl["seed"], benchmark=bench)
    _ui.show_figure(plots.recall_curves(mean, ctl["top"], _label(bench)), f"policy-recall-{bench}", prov)
    st.caption(
        "**paper**: after each finetune the law is refitted and *all* settings are ranked by prediction (the "
        "authors' simulation). **measured**: finetuned settings are ranked by their measured score, the others by "
        "prediction (the clean definition). Finetunes follow the AC policy's region sampling over the (A, C) grid."
    )
    with st.expander("Recall table"):
        _ui.show_table(shown, f"policy-recall-table-{bench}", prov)
    runs = tables.runs_needed(results, None if bench == ALL else bench)
    _ui.show_figure(plots.runs_needed_histogram(runs, ctl["top"]), f"policy-runs-{bench}", prov)


def _render_recommender(study, benchmark: str, top: int) -> None:
    st.subheader("What should I finetune next?")
    if benchmark == ALL:
        st.info("Pick one benchmark above to get a recommendation.")
        return
    name = label(benchmark)
    table = study.table(benchmark).set_index("setting")
    finetuned = st.multiselect("Settings you have already finetuned", table.index.tolist(),
                               key=f"policy_finetuned_{benchmark}")
    scores: dict[str, float] = {}
    if finetuned:
        cols = st.columns(min(4, len(finetuned)))
        for i, setting in enumerate(finetuned):
            known = float(table.at[setting, "score"])
            scores[setting] = cols[i % len(cols)].number_input(
                f"{setting}: {name}", value=known if math.isfinite(known) else 0.0,
                key=f"policy_score_{benchmark}_{setting}")
    linear = st.checkbox("Linear law (A, C: 3 parameters, for few finetuned settings)", key="policy_linear")
    rec = recommend(study, benchmark, scores, top=top, feature_set="ac_linear" if linear else "ac_poly")
    if rec.warning:
        st.warning(rec.warning, icon=":material/warning:")
    cols = st.columns(3)
    cols[0].metric("Next finetune (region rule)", rec.next_setting or "—",
                   help=f"Unexplored cell of the (A, C) grid at level {rec.level}")
    cols[1].metric("Best predicted, not finetuned", rec.alternative or "—",
                   delta=None if rec.alternative_predicted is None else f"{rec.alternative_predicted:.4g} predicted",
                   delta_color="off")
    cols[2].metric("Uncertainty (LOO RMSE)", "—" if rec.loo_rmse is None else f"± {rec.loo_rmse:.3g}")
    if rec.top_settings:
        st.markdown(f"**Current top {top}:** " + ", ".join(f"`{s}`" for s in rec.top_settings))
    else:
        st.caption("Finetune at least 2 settings to rank the rest by the law.")
    prov = _ui.provenance(study, "ac_poly", benchmark=benchmark, finetuned=",".join(finetuned))
    _ui.show_table(rec.ranking, f"policy-recommend-{benchmark}", prov)


def _render_cost(study) -> None:
    st.subheader("What does it cost?")
    n = len(study.setting_names)
    cols = st.columns(7)
    width = cols[0].number_input("Encoder width", min_value=1, value=1024, key="cost_width")
    hidden = cols[1].number_input("LLM hidden size", min_value=1, value=4096, key="cost_hidden")
    llm_b = cols[2].number_input("LLM parameters (B)", min_value=0.01, value=6.74, key="cost_llm")
    n_cand = cols[3].number_input("Candidates", min_value=1, value=n, key="cost_candidates")
    budget = cols[4].number_input("Full finetunes", min_value=1, max_value=int(n_cand), value=min(3, int(n_cand)),
                                  key="cost_budget")
    stage1 = cols[5].number_input("Stage-1 GPU-h", min_value=0.0, value=16.0, key="cost_stage1",
                                  help="Projector-only pretraining per candidate (needed for A)")
    stage2 = cols[6].number_input("Stage-2 GPU-h", min_value=0.0, value=80.0, key="cost_stage2",
                                  help="Full finetune per candidate (projector + LLM)")
    cost = cost_comparison(int(width), int(hidden), float(llm_b) * 1e9, int(n_cand), int(budget), float(stage1),
                           float(stage2))
    table = tables.cost_table(cost)
    inputs = ("encoder_width", "llm_hidden", "llm_params", "n_candidates", "budget", "stage1_gpu_hours",
              "stage2_gpu_hours")
    prov = _ui.provenance(study, "ac_poly", **{k: cost[k] for k in inputs})
    left, right = st.columns([3, 2])
    with left:
        _ui.show_figure(plots.cost_bars(table, "gpu_hours", "GPU-hours"), "policy-cost", prov)
    with right:
        st.metric("GPU-hours saved", f"{100 * cost['gpu_hours_savings']:.0f} %")
        st.metric("Trainable parameters to get A", f"{cost['projector_params'] / 1e6:.1f} M",
                  delta=f"{100 * cost['trainable_ratio']:.2f} % of a full finetune", delta_color="off")
        _ui.show_table(table, "policy-cost-table", prov)


def render() -> None:
    st.title("AC policy: which encoders deserve a finetune")
    study = _ui.current_study()
    report = _ui.law_report(study)
    ctl = _controls(study, report.benchmarks)
    with st.spinner(f"Simulating {ctl['trials']} finetuning orders per benchmark…"):
        results = _ui.policy_results(study, ctl["trials"], ctl["seed"], ctl["top"])
    _render_curves(study, results, ctl)
    _render_recommender(study, ctl["benchmark"], ctl["top"])
    _render_cost(study)


_ui.run(render)
