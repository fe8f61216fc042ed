"""Score an encoder: reuse or launch its C and A jobs (or enter A and C by hand) and see where it falls on the law."""

from __future__ import annotations

import streamlit as st

from engine import pipeline
from engine.benchmarks import label
from engine.errors import LawExplorerError
from engine.law import FLAG_TEXT, LAW_MODELS
from engine.plots import tables
from pages import _ui

MEASURE, MANUAL = "Measure with background jobs", "Enter A and C by hand"
LAUNCHED_KEY = "score_launched"
STARTED_KEY = "score_started_jobs"
RECORD_KEY = "score_measurement_record"  # how the candidate's A and C were measured, for the exports
RESTARTABLE = ("missing", "failed", "cancelled", "interrupted")
STATE_ICONS = {"stored": ":material/inventory_2:", "done": ":material/check_circle:", "running": ":material/sync:",
               "queued": ":material/schedule:", "waiting": ":material/hourglass_empty:",
               "failed": ":material/error:", "interrupted": ":material/pause_circle:",
               "cancelled": ":material/cancel:", "missing": ":material/radio_button_unchecked:",
               "unavailable": ":material/block:", "not needed": ":material/remove:"}


def _encoder_names() -> dict[str, str]:
    """Encoder id -> what the picker shows (an upload's label), fresh on every run (a new upload is listed)."""
    from engine.encoders import display_names

    return display_names()


def _encoder_picker(container) -> str:
    shown = _encoder_names()
    wanted = st.query_params.get("encoder")
    if wanted in shown:  # from the Encoders page's next steps (or a deep link)
        st.session_state["score_encoder"] = wanted
        del st.query_params["encoder"]
    if st.session_state.get("score_encoder") not in shown:
        st.session_state.pop("score_encoder", None)
    return container.selectbox("Encoder", list(shown), key="score_encoder", format_func=lambda n: shown.get(n, n),
                               help="Built-in or uploaded; type to search by label. Selected id: "
                                    f"{st.session_state.get('score_encoder') or next(iter(shown))}")


def _protocol_names() -> list[str]:
    from engine.correspondence import list_protocols

    return [p.name for p in list_protocols()]


def _plan_inputs() -> dict:
    cols = st.columns(3)
    encoder = _encoder_picker(cols[0])
    a_definition = cols[1].selectbox("A definition", list(pipeline.A_DEFINITIONS), key="score_a_definition",
                                     help="v3-loglik: the paper's final A; v1-clip-ref: max cosine to CLIP tokens")
    protocol = cols[2].selectbox("C protocol", _protocol_names(), key="score_c_protocol",
                                 help="default: the clean definition; paper-compat: the authors' released code; "
                                      "dense-upsampled: default with the similarity map upsampled (docs/correspondence.md)")
    cols = st.columns(3)
    dataset = cols[0].text_input("Correspondence dataset", "builtin", key="score_dataset",
                                 help="builtin (offline, demo-scale) or spair:/path/to/SPair-71k")
    limit = cols[1].number_input("Pairs (0 = all)", min_value=0, value=0, step=10, key="score_limit")
    demo = cols[2].checkbox("Demo A", value=True, key="score_demo",  # a longer label is cut in a third of the page
                            help="An offline tiny LLM and demo projector: runs on a CPU, but A is then demo-scale "
                                 "(not comparable with the paper's Vicuna-7B A)")
    setting = st.text_input("Setting name (default: the encoder's name)", key="score_setting")
    args = {"a_definition": a_definition, "c_protocol": protocol, "dataset": dataset, "demo": demo,
            "limit": int(limit) or None, "setting": setting.strip() or None}
    if not demo and a_definition == "v3-loglik":
        with st.expander("LLM and alignment data (paper: Vicuna-7B v1.5, LLaVA-558K)", expanded=True):
            cols = st.columns(3)
            args["llm"] = cols[0].text_input("LLM (cached HF id or folder)", key="score_llm") or None
            args["align_data"] = cols[1].text_input("LLaVA-Pretrain JSON", key="score_align_data") or None
            args["align_images"] = cols[2].text_input("Image folder", key="score_align_images") or None
    return {"encoder_name": encoder, **args}


def _show_steps(states: list[pipeline.StepStatus]) -> None:
    for s in states:
        value = "" if s.value is None else f" = **{s.value:.4g}**"
        job = f" · job `{s.job_id}`" if s.job_id else ""
        st.markdown(f"{STATE_ICONS.get(s.state, '')} **{s.title}** — {s.state}{value}{job}")
        if s.state in ("running", "queued"):
            st.progress(s.fraction, text=s.progress[2] or s.state)
        if s.error:
            st.error(s.error, icon=":material/error:")
        elif s.note and s.state in ("missing", "waiting", "unavailable", "not needed"):
            st.caption(s.note)


def _polling(plan: pipeline.Plan, states: list[pipeline.StepStatus]) -> bool:
    """Whether live updates are needed: a job is queued/running, or a launched plan has a step still waiting."""
    launched = st.session_state.get(LAUNCHED_KEY) == plan.args
    return any(s.state in ("queued", "running") or (launched and s.state == "waiting") for s in states)


@st.fragment(run_every=2)
def _live(plan: pipeline.Plan) -> None:
    """Live job progress; once launched, keeps submitting steps whose inputs became ready (A after projector)."""
    with _ui.user_errors():
        if st.session_state.get(LAUNCHED_KEY) == plan.args:
            pipeline.launch(plan, resume_failed=False)
        states = pipeline.status(plan)
        _show_steps(states)
        if not _polling(plan, states):
            st.rerun(scope="app")  # jobs ended: redraw the page once, statically, with the results


def _render_measure(study_name: str) -> tuple[pipeline.Plan, float | None, float | None]:
    args = _plan_inputs()
    plan = pipeline.plan(study_name=study_name, **args)
    for warning in plan.warnings:
        st.warning(warning, icon=":material/warning:")
    st.caption(f"Setting name: `{plan.setting}` · scale: **{plan.scale}** · stored in: `{plan.target_study}`")
    states = pipeline.status(plan)
    launched = st.session_state.get(LAUNCHED_KEY) == plan.args
    to_start = [s for s in states if s.state in RESTARTABLE or (s.state == "waiting" and not launched)]
    if to_start and st.button(f"Launch {len(to_start)} missing job(s)", key="score_launch", type="primary",
                              icon=":material/play_arrow:", help="Runs in background workers; see also the Jobs page"):
        st.session_state[LAUNCHED_KEY] = plan.args
        st.session_state[STARTED_KEY] = pipeline.launch(plan)
        st.rerun()  # redraw without the button; the live view below follows the jobs
    if launched and st.session_state.get(STARTED_KEY):
        st.caption(f"Background jobs: {', '.join(st.session_state[STARTED_KEY])} (also on the Jobs page). They run "
                   "on the server: A-scoring starts by itself when the projector is trained, even if you leave "
                   "this page.")
    if plan.A is not None and plan.C is not None:
        st.success("A and C are both stored: nothing to run.", icon=":material/inventory_2:")
    if _polling(plan, states):
        _live(plan)
    else:
        _show_steps(states)
    values = {s.key: s.value for s in states}  # stored results, or the values of finished jobs
    st.session_state[RECORD_KEY] = pipeline.measurement_record(plan)
    return plan, values.get("a"), values.get("c")


def _render_manual() -> tuple[str, float | None, float | None, str]:
    st.caption("The main path on a CPU machine: A and C measured elsewhere (e.g. on a GPU with the CLI).")
    cols = st.columns([2, 1, 1, 2])
    setting = cols[0].text_input("Setting name", "my-encoder", key="score_manual_setting")
    a_text = cols[1].text_input("A", "", key="score_manual_a", placeholder="e.g. -1.95")
    c_text = cols[2].text_input("C (PCK@0.10 x 100)", "", key="score_manual_c", placeholder="e.g. 18.4")
    paper = cols[3].radio("Measured as in the paper?", ["yes: paper scale", "no: demo / other scale"],
                          key="score_manual_scale", help="Paper scale: Vicuna-7B log-likelihood on LLaVA-558K "
                          "(A) and SPair-71k test PCK@0.10 x 100 (C)")
    if not a_text.strip() or not c_text.strip():
        st.info("Enter A and C to see the predictions.", icon=":material/edit:")
        return setting, None, None, "paper"
    a_value = pipeline.finite(a_text.strip(), "A")
    c_value = pipeline.finite(c_text.strip(), "C")
    return setting, a_value, c_value, "paper" if paper.startswith("yes") else "demo"


def _render_policy(study, setting: str, A: float, C: float, prov, flags: list[str]) -> None:
    st.subheader("What the AC policy recommends to finetune next")
    cols = st.columns([1, 3])
    benchmark = cols[0].selectbox("Benchmark", study.benchmarks, key="score_policy_benchmark",
                                  format_func=label)
    linear = cols[0].checkbox("Linear law (A, C)", key="score_policy_linear",
                              help="3 parameters instead of the quadratic's 6: for few finetuned settings")
    table = study.table(benchmark).dropna(subset=["score"])
    finetuned_names = cols[1].multiselect("Settings already finetuned (their measured scores are used)",
                                          table["setting"].tolist(), default=table["setting"].tolist(),
                                          key=f"score_policy_finetuned_{benchmark}")
    finetuned = dict(zip(table["setting"], table["score"], strict=True))
    finetuned = {name: float(finetuned[name]) for name in finetuned_names}
    rec = pipeline.recommend_next(study, benchmark, finetuned, setting, A, C, flags=flags,
                                  feature_set="ac_linear" if linear else "ac_poly")
    if rec.warning:
        st.warning(rec.warning, icon=":material/warning:")
    if flags:
        st.caption(f"'{setting}' is ranked but never recommended: {', '.join(flags)}.")
    cols = st.columns(2)
    cols[0].markdown(f"**Next by the AC region rule:** `{rec.next_setting or 'nothing left'}`")
    if rec.alternative:
        cols[1].markdown(f"**Best predicted not yet finetuned:** `{rec.alternative}` "
                         f"({rec.alternative_predicted:.4g} ± {rec.loo_rmse:.2g})")
    if rec.loo_rmse is not None:
        st.caption(tables.recommendation_method(rec, tables.score_unit(benchmark, table["score"])))
    _ui.show_table(tables.recommendation_table(rec), f"score-policy-{benchmark}", prov)


def _show_flags(table, scale: str, study_name: str) -> None:
    if table["method_mismatch"].any():
        why = "; ".join(table.attrs.get("mismatch", [])) or "A or C measured differently from the study's settings"
        st.error(f"Not comparable ({why}): the predictions below on the law of '{study_name}' are an illustration, "
                 "not a result, and this setting is never recommended.", icon=":material/block:")
    for flag in ("extrapolated", "interpolating", "clipped"):
        names = table.loc[table[flag], "label"].tolist()
        if names:
            st.warning(f"{FLAG_TEXT[flag][0].upper()}{FLAG_TEXT[flag][1:]}: {', '.join(names)}.", icon=":material/warning:")


def _render_placement(study, setting: str, A: float, C: float, scale: str, target: str,
                      methods: dict | None = None) -> None:
    cols = st.columns([2, 1])
    model = cols[0].selectbox("Law model", list(LAW_MODELS), key="score_model",
                              help="paper: the paper's quadratic; auto: chosen by nested CV (see the law page)")
    level = cols[1].select_slider("Interval level", [0.5, 0.6, 0.7, 0.8, 0.9, 0.95], value=0.8, key="score_level",
                                  format_func=lambda v: f"{v:.0%}")
    if not _ui.law_fit_ready(study, model):
        return
    table = pipeline.place_on_law(study, setting, A, C, model, level, scale=scale, **(methods or {}))
    flags = pipeline.placement_flags(table)
    comparable = bool(table["comparable"].all())
    st.header("Where it falls on the law" if comparable else "Where it would fall on the law (illustration only)")
    record = st.session_state.get(RECORD_KEY) or {"candidate_a_method": "entered by hand",
                                                   "candidate_c_protocol": "entered by hand"}
    prov = _ui.provenance(study, "ac_poly", setting=setting, A=A, C=C, scale=scale, model=model, level=level,
                          flags=", ".join(flags) or "none", **record)
    cols = st.columns(3)
    cols[0].metric("A", f"{A:.4g}")
    cols[1].metric("C", f"{C:.4g}")
    cols[2].metric("Scale", scale)
    _show_flags(table, scale, study.name)
    _ui.show_figure(pipeline.candidate_scatter(study.settings, setting, A, C, scale), "score-ac-scatter", prov)
    _ui.show_figure(pipeline.prediction_bars(table, setting, scale, study.long), "score-predictions", prov)
    st.caption(f"Bars: predicted score; whiskers: the {level:.0%} jackknife+ interval (out of sample, finite-sample "
               "guarantee), clipped to each benchmark's valid range. Hatched: outside the study's A-C hull.")
    _ui.show_table(tables.placement_table(table), "score-predictions-table", prov)
    _render_policy(study, setting, A, C, prov, flags)
    st.subheader("Keep it")
    if st.button(f"Add '{setting}' to study '{target}'", key="score_add", icon=":material/add:"):
        written = pipeline.add_to_study(study.name, setting, A, C, {"notes": f"{scale}-scale"},
                                        demo_scale=scale != "paper", flags=flags)
        kept = f" with its flags ({', '.join(flags)})" if flags else ""
        st.success(f"Stored A and C of '{setting}' in study '{written}'{kept}.", icon=":material/check:")


def render() -> None:
    st.title("Score an encoder")
    study_name = _ui.current_study_name()
    study = _ui.current_study()
    st.caption(f"Target study: **{study_name}** (pick another in the sidebar). The paper's law uses A = Vicuna-7B "
               "stage-1 caption log-likelihood on LLaVA-558K and C = SPair-71k test PCK@0.10 x 100; anything "
               "measured otherwise is demo-scale and is kept in a separate study.")
    mode = st.radio("How do you get A and C?", [MEASURE, MANUAL], horizontal=True, key="score_mode")
    st.session_state.pop(RECORD_KEY, None)
    if mode == MEASURE:
        plan, A, C = _render_measure(study_name)
        setting, scale, target = plan.setting, plan.scale, plan.target_study
        methods = {"a_definition": plan.a_definition, "c_protocol": plan.c_protocol}
    else:
        setting, A, C, scale = _render_manual()
        target = pipeline.user_study_name(study_name, demo_scale=scale != "paper")
        methods = {}
    if A is None or C is None:
        return
    try:
        _render_placement(study, setting, A, C, scale, target, methods)
    except LawExplorerError as exc:
        st.error(str(exc), icon=":material/error:")


_ui.run(render)
