"""Overview page: the law in one formula, the reproduced headline R² against the paper's, and where to go next."""

from __future__ import annotations

import streamlit as st

from engine.benchmarks import group_label
from engine.plots import overview as plots
from engine.plots import tables
from engine.plots.style import setting_families
from pages import _ui

LAW_LATEX = (
    r"\hat{s}_b = \beta_0 + \beta_1 A + \beta_2 C + \beta_3 A^2 + \beta_4 A C + \beta_5 C^2,"
    r"\qquad A, C, s_b \text{ min-max normalised over the study's settings}"
)


def _headline(study, report) -> None:
    head = tables.headline(report, study.name)
    cols = st.columns(len(head.members) + 2)
    for col, group in zip(cols, head.members, strict=False):
        title = group_label(group)
        value = 100 * head.reproduced[group]
        printed = head.printed.get(group)
        col.metric(
            f"Mean R² ×100, {title} benchmarks",
            f"{value:.2f}",
            delta=None if printed is None else f"{value - printed:+.2f} vs {printed:.2f} printed in the paper",
            delta_color="off",
            help=f"Mean in-sample R² of the law over {', '.join(head.members[group]) or 'no benchmark'}",
        )
    cols[-2].metric("Settings", len(study.setting_names))
    cols[-1].metric("Benchmarks fitted", f"{len(report.fits)} / {len(study.benchmarks)}")
    for bench, why in report.skipped.items():
        st.caption(f"{bench} not fitted: {why}")


def render() -> None:
    st.title("Law of Vision Representation")
    study = _ui.current_study()
    with st.spinner("Fitting the law…"):
        report = _ui.law_report(study)
    st.subheader(f"Headline on study “{study.name}”")
    _headline(study, report)
    st.subheader("The law")
    st.markdown(
        "An MLLM's benchmark score is predicted from two properties of its vision representation: "
        "**A**, the cross-modal alignment of the projected vision tokens with the language side, and "
        "**C**, zero-shot keypoint correspondence (PCK@0.10 on SPair-71k). One quadratic per benchmark:"
    )
    st.latex(LAW_LATEX)
    prov = _ui.provenance(study, "ac_poly")
    r2 = tables.r2_by_benchmark(report)
    left, right = st.columns([3, 2])
    with left:
        _ui.show_figure(plots.r2_by_benchmark(r2), "overview-r2-by-benchmark", prov)
    with right:
        settings = tables.settings_ac(study)
        a_label = f"A ({study.meta.get('a_method') or 'alignment'})"
        c_label = f"C ({study.meta.get('c_method') or 'correspondence'})"
        _ui.show_figure(plots.ac_scatter(settings, setting_families(study.settings), a_label, c_label),
                        "overview-ac-scatter", prov)
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
