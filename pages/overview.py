"""Overview page: the law in one formula, the reproduced headline R² against the paper's, and where to go next."""

from __future__ import annotations

import streamlit as st

from engine.benchmarks import group_label
from engine.law import evaluation_if_ready, too_large_for_app
from engine.plots import overview as plots
from engine.plots import setting_families, tables
from pages import _ui

LAW_LATEX = r"\hat{s}_b = \beta_0 + \beta_1 A + \beta_2 C + \beta_3 A^2 + \beta_4 A C + \beta_5 C^2"


def _headline(study, report) -> None:
    head = tables.headline(report, study.name)
    cols = st.columns(len(head.members) + 2)
    for col, group in zip(cols, head.members, strict=False):
        title = group_label(group)
        value = 100 * head.reproduced[group]
        printed = head.printed.get(group)
        col.metric(
            f"Mean R² ×100, {title} benchmarks (in-sample)",
            f"{value:.2f}",
            delta=None if printed is None else f"{value - printed:+.2f} vs {printed:.2f} printed in the paper",
            delta_color="off",
            help=f"Mean in-sample R² of the law over {', '.join(head.members[group]) or 'no benchmark'}",
        )
    cols[-2].metric("Settings", len(study.setting_names))
    cols[-1].metric("Benchmarks fitted", f"{len(report.fits)} / {len(study.benchmarks)}")
    interpolating = [b for b, fits in report.fits.items() if fits["ac_poly"].interpolating]
    if interpolating:
        st.warning(f"Interpolating fit on {', '.join(interpolating)}: no more settings than the quadratic's 6 "
                   "parameters, so the in-sample R² above is 100 by construction and says nothing. Add settings, "
                   "or read the out-of-sample figures of the linear law on the law page.", icon=":material/warning:")
    for bench, why in report.skipped.items():
        st.caption(f"{bench} not fitted: {why}")


def _oos_phrase(evaluation) -> str:
    means = evaluation.mean
    groups = " / ".join(f"{means[g]:.2f} ({group_label(g)})" for g in means if g != "all" and means[g] == means[g])
    groups = groups or f"{means['all']:.2f}"
    rho = sum(r.spearman for r in evaluation.benchmarks.values()) / len(evaluation.benchmarks)
    top3 = sum(r.top3_hit for r in evaluation.benchmarks.values())
    return (f"mean R² {groups}, Spearman ρ {rho:.2f}, and the truly best setting in its "
            f"predicted top 3 on {top3} of {len(evaluation.benchmarks)} benchmarks")


@st.fragment(run_every=1.0)
def _wait(study) -> None:
    if all(evaluation_if_ready(study, m, 0.8) is not None for m in ("paper", "auto")):
        st.rerun(scope="app")
    st.caption("Computing the out-of-sample figures (each setting held out of every benchmark)…")


def _out_of_sample(study) -> None:
    """One quotable sentence: the held-out quality of the paper's law and of the law chosen without peeking."""
    why = too_large_for_app(study, "auto")
    if why:
        st.caption(f"Out-of-sample figures: {why}.")
        return
    paper, auto = (evaluation_if_ready(study, m, 0.8) for m in ("paper", "auto"))
    if paper is None or auto is None:
        _wait(study)
        return
    st.markdown(
        f"**Out of sample** (each of the {paper.n_settings} settings held out of every benchmark and predicted from "
        f"the others, as a new encoder would be): the paper's quadratic reaches {_oos_phrase(paper)}; the best "
        f"law chosen without peeking (`auto`: a mix of the models, weights and penalties fitted by nested "
        f"cross-validation on the training settings) reaches {_oos_phrase(auto)}. The in-sample R² above is the fit on all settings."
    )


def render() -> None:
    st.title("Law of Vision Representation")
    study = _ui.current_study()
    with st.spinner("Fitting the law…"):
        report = _ui.law_report(study)
    st.subheader(f"Headline on study “{study.name}”")
    _headline(study, report)
    with _ui.user_errors():
        _out_of_sample(study)
    st.subheader("The law")
    st.markdown(
        "An MLLM's benchmark score is predicted from two properties of its vision representation: "
        "**A**, the cross-modal alignment of the projected vision tokens with the language side, and "
        "**C**, zero-shot keypoint correspondence (PCK@0.10 on SPair-71k). One quadratic per benchmark:"
    )
    st.latex(LAW_LATEX)
    st.caption("$A$, $C$ and each benchmark score $s_b$ are min-max normalised over the study's settings.")
    prov = _ui.provenance(study, "ac_poly")
    r2 = tables.r2_by_benchmark(report)
    # one figure per row: side by side, a laptop-wide window left the (A, C) plane too narrow for its labels
    settings = tables.settings_ac(study)
    a_label = f"A ({study.meta.get('a_method') or 'alignment'})"
    c_label = f"C ({study.meta.get('c_method') or 'correspondence'})"
    _ui.show_figure(plots.ac_scatter(settings, setting_families(study.settings), a_label, c_label),
                    "overview-ac-scatter", prov)
    _ui.show_figure(plots.r2_by_benchmark(r2), "overview-r2-by-benchmark", prov)
    with st.expander("R² per benchmark (table)"):
        wide = r2.pivot(index="benchmark", columns="variant", values="r2").reset_index()
        _ui.show_table(wide, "overview-r2", prov)
    st.subheader("What to do next")
    st.markdown(
        "- [**The law, per benchmark**](law): predicted vs actual, the fitted surface, coefficients, "
        "leave-one-out checks and predictions for settings you have not finetuned.\n"
        "- [**AC policy**](policy): how often the AC ranking finds the best encoder within a finetuning budget, "
        "which setting to finetune next, and what it saves.\n"
        "- [**Studies & data**](data): import your own results (CSV or lmms-eval `results.json`), edit, copy, export."
    )


_ui.run(render)
