"""Policy page: which finetune order finds the best setting (strategies x metrics vs random order and chance),
the recommender and the cost panel tied to the recall reached."""

from __future__ import annotations

import math

import streamlit as st

from engine.benchmarks import label
from engine.law import DEFAULT_LEVEL, LAW_MODELS
from engine.plots import policy as plots
from engine.plots import tables
from engine.policy import (
    METRIC_DEFINITIONS,
    NEEDS_A,
    STRATEGY_DEFINITIONS,
    VARIANTS,
    compare_strategies,
    cost_comparison,
    metric_label,
    recommend,
    strategy_label,
    variant_label,
)
from pages import _ui

ALL = "all"
RECALL_COLUMNS = {"strategy": "finetune order", "metric": "success counted", "budget": "settings finetuned (k)",
                  "recall": "Recall@T (simulated)", "chance": "chance (k / n)", "benchmark": "benchmark"}


def _label(name: str) -> str:
    return "All benchmarks (mean)" if name == ALL else label(name)


@st.cache_resource(show_spinner=False, max_entries=16)
def _comparison(content_hash: str, trials: int, seed: int, top: int, variant: str, strategies: tuple[str, ...],
                law_model: str, benchmark: str | None, _study) -> object:
    return compare_strategies(_study, trials=trials, seed=seed, top=top, variant=variant, strategies=strategies,
                              law_model=law_model, level=DEFAULT_LEVEL, benchmark=benchmark)


def _controls(study, benchmarks: list[str]) -> dict:
    cols = st.columns(4)
    with cols[0]:
        benchmark = _ui.url_selectbox("Benchmark", [ALL, *benchmarks], "policy_benchmark", "benchmark",
                                      format_func=_label)
    top = cols[1].number_input("Top T", min_value=1, max_value=max(1, len(study.setting_names) - 1), value=3,
                               key="policy_top", help="Success: the best setting is among the T ranked highest")
    trials = cols[2].number_input("Trials", min_value=10, max_value=5000, value=400, step=50, key="policy_trials",
                                  help="Simulated finetuning orders per benchmark (more = smoother, slower)")
    seed = cols[3].number_input("Seed", min_value=0, value=0, step=1, key="policy_seed")
    left, right = st.columns(2)  # a fifth column cut the ranking rule's name short
    variant = left.selectbox("Ranking after each finetune", list(VARIANTS), key="policy_variant",
                             format_func=variant_label)
    optimistic = right.checkbox(
        "Add the optimistic strategy (slower)", key="policy_optimistic",
        help=f"Finetunes next the setting with the highest upper bound of the law model's {DEFAULT_LEVEL:.0%} "
             "jackknife+ interval, refitting the chosen law model after every finetune")
    law_model = right.selectbox("Law model of the optimistic strategy", list(LAW_MODELS), key="policy_law_model",
                                disabled=not optimistic,
                                help="paper, linear, ridge: a few seconds per benchmark; multitask and auto (which "
                                     "selects among the others inside every refit) take longer, auto about 20 s")
    if optimistic and benchmark == ALL:
        st.info("The optimistic order refits the law model's intervals after every finetune, so it is simulated one "
                "benchmark at a time: pick a benchmark above to add it.")
    optimistic = optimistic and benchmark != ALL
    strategies = ("region", "random", "greedy", *(("uncertainty",) if optimistic else ()))
    return {"benchmark": benchmark, "top": int(top), "trials": int(trials), "seed": int(seed), "variant": variant,
            "strategies": strategies, "law_model": law_model}


def _scope(ctl: dict, comparison) -> str:
    bench = ctl["benchmark"]
    n = comparison.recall["benchmark"].nunique()
    return label(bench) if bench != ALL else f"mean of {n} benchmarks"


def _render_strategies(study, comparison, ctl: dict) -> int:
    st.subheader("Which finetune order finds the best setting?")
    bench = None if ctl["benchmark"] == ALL else ctl["benchmark"]
    mean = comparison.mean(bench)
    n_max = int(mean["budget"].max())
    budget = st.slider("Finetunes you can afford (budget k)", min_value=2, max_value=n_max, value=min(3, n_max),
                       key="policy_budget")
    st.markdown(f"**{comparison.verdict(budget, bench)}**")
    extra = {"law_model": ctl["law_model"], "level": DEFAULT_LEVEL} if "uncertainty" in ctl["strategies"] else {}
    prov = _ui.provenance(study, "ac_poly", top=ctl["top"], trials=ctl["trials"], seed=ctl["seed"],
                          benchmark=ctl["benchmark"], variant=ctl["variant"], **extra)
    _ui.show_figure(plots.strategy_curves(mean, ctl["top"], _scope(ctl, comparison)), f"policy-strategies-{ctl['benchmark']}",
                    prov)
    strategies = "; ".join(f"**{strategy_label(s)}**: {STRATEGY_DEFINITIONS[s]}" for s in comparison.strategies)
    metrics = "; ".join(f"**{metric_label(m)}**: {d}" for m, d in METRIC_DEFINITIONS.items())
    st.caption(
        f"Simulated on this study's scores, in sample: each run finetunes settings in the strategy's order, refits "
        f"the law (A, C quadratic, OLS) on the finetuned ones and ranks the settings ({variant_label(ctl['variant'])}). "
        f"Orders: {strategies}. Success counted: {metrics}. Baselines: random order (the same refit on a random "
        f"order) and chance (k / n, the best setting is among k settings picked at random)."
    )
    with st.expander("Recall table (every strategy, metric and budget)"):
        shown = comparison.recall if bench is None else comparison.recall[comparison.recall["benchmark"] == bench]
        table = shown.assign(strategy=shown["strategy"].map(strategy_label), metric=shown["metric"].map(metric_label),
                             benchmark=shown["benchmark"].map(label))
        _ui.show_table(table.rename(columns=RECALL_COLUMNS), f"policy-recall-table-{ctl['benchmark']}", prov)
    runs = comparison.runs if bench is None else comparison.runs[comparison.runs["benchmark"] == bench]
    runs = runs.assign(method=runs["strategy"].map(strategy_label))
    n_bench = runs["benchmark"].nunique()
    y_title = (f"simulated runs (of {ctl['trials']})" if n_bench == 1
               else f"simulated runs, summed over {n_bench} benchmarks ({n_bench} × {ctl['trials']})")
    _ui.show_figure(plots.runs_needed_histogram(runs, ctl["top"], y_title), f"policy-runs-{ctl['benchmark']}", prov)
    st.caption("Runs in which the best setting never entered the top T are counted at n (all settings finetuned).")
    return budget


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
    _ui.metric_row(
        {"label": "Next finetune (region rule)", "value": rec.next_setting or "—",
         "help": f"Unexplored cell of the (A, C) grid at level {rec.level}"},
        {"label": "Best predicted, not finetuned", "value": rec.alternative or "—",
         "delta": None if rec.alternative_predicted is None else f"{rec.alternative_predicted:.4g} predicted",
         "delta_color": "off", "delta_arrow": "off", "help": "The greedy strategy's next finetune"},
        {"label": "Uncertainty: RMSE out of sample", "value": "—" if rec.loo_rmse is None else f"± {rec.loo_rmse:.3g}",
         "help": "Leave-one-out RMSE of the law refitted on the finetuned settings, in score units"},
    )
    if rec.top_settings:
        st.markdown(f"**Current top {top}:** " + ", ".join(f"`{s}`" for s in rec.top_settings))
    else:
        st.caption("Finetune at least 2 settings to rank the rest by the law.")
    if rec.loo_rmse is not None:
        st.caption(tables.recommendation_method(rec, tables.score_unit(benchmark, table["score"])))
    prov = _ui.provenance(study, rec.feature_set, benchmark=benchmark, finetuned=",".join(finetuned))
    _ui.show_table(tables.recommendation_table(rec), f"policy-recommend-{benchmark}", prov)


def _recall_reached(comparison, ctl: dict, n_cand: int, budget: int) -> tuple[str, float, float | None] | None:
    """(best strategy that uses A, its at-budget recall, random order's recall or None) at ``budget`` when the cost
    panel's candidates are the study's: the cost compared assumes A for every candidate, which random order needs
    not."""
    n_study = int(comparison.recall["budget"].max())
    if n_cand != n_study or not 2 <= budget <= n_study:
        return None
    bench = None if ctl["benchmark"] == ALL else ctl["benchmark"]
    scores = comparison.at(budget, "at-budget", bench)
    with_a = [s for s in scores if s in NEEDS_A]
    if not with_a:
        return None
    best = max(with_a, key=lambda s: scores[s])
    return best, scores[best], scores.get("random")


def _render_cost(study, comparison, ctl: dict, budget: int) -> None:
    st.subheader("What does it cost, and what do you get?")
    n = len(study.setting_names)
    cols = st.columns(7)
    width = cols[0].number_input("Encoder width", min_value=1, value=1024, key="cost_width")
    hidden = cols[1].number_input("LLM hidden size", min_value=1, value=4096, key="cost_hidden")
    llm_b = cols[2].number_input("LLM size (B)", min_value=0.01, value=6.74, key="cost_llm",
                                 help="The language model's parameters, in billions (Vicuna-7B: 6.74)")
    n_cand = cols[3].number_input("Candidates", min_value=1, value=n, key="cost_candidates")
    full = cols[4].number_input("Full finetunes", min_value=1, max_value=int(n_cand), value=min(budget, int(n_cand)),
                                key="cost_budget")
    stage1 = cols[5].number_input("Stage-1 GPU-h", min_value=0.0, value=16.0, key="cost_stage1",
                                  help="Projector-only pretraining per candidate (needed for A)")
    stage2 = cols[6].number_input("Stage-2 GPU-h", min_value=0.0, value=80.0, key="cost_stage2",
                                  help="Full finetune per candidate (projector + LLM)")
    cost = cost_comparison(int(width), int(hidden), float(llm_b) * 1e9, int(n_cand), int(full), float(stage1),
                           float(stage2))
    table = tables.cost_table(cost)
    inputs = ("encoder_width", "llm_hidden", "llm_params", "n_candidates", "budget", "stage1_gpu_hours",
              "stage2_gpu_hours")
    prov = _ui.provenance(study, "ac_poly", **{k: cost[k] for k in inputs})
    reached = _recall_reached(comparison, ctl, int(n_cand), int(full))
    left, right = st.columns([3, 2])
    with left:
        _ui.show_figure(plots.cost_bars(table, "GPU-hours (estimate)", "GPU-hours"), "policy-cost", prov)
    with right:
        if reached is None:
            st.metric("GPU-hours saved", f"{100 * cost['gpu_hours_savings']:.0f} %")
            st.caption(f"The recall this buys is simulated for this study's {n} candidates and 2..{n} finetunes with "
                       f"a law-ranked order; set Candidates to {n} (and keep one such order selected) to see it.")
        else:
            strategy, recall, random_recall = reached
            st.metric("GPU-hours saved", f"{100 * cost['gpu_hours_savings']:.0f} %",
                      delta=f"finds the best setting in {recall:.0%} of runs", delta_color="off", delta_arrow="off",
                      help=f"With {int(full)} full finetunes in the order of {strategy_label(strategy)}, the best "
                           f"setting ends in the predicted top {ctl['top']} in {recall:.0%} of simulated runs "
                           f"({_scope(ctl, comparison)}, at budget); in the other runs the saving buys a wrong pick.")
            baseline = ("" if random_recall is None else f" Random order, which needs no A (no stage-1 runs: "
                        f"{cost['budget']} finetunes only), finds it in {random_recall:.0%}.")
            st.caption(f"Saving {100 * cost['gpu_hours_savings']:.0f} % of GPU-hours finds the best setting (in the "
                       f"predicted top {ctl['top']}) in {recall:.0%} of simulated runs with {strategy_label(strategy)}, "
                       f"the best order that uses A.{baseline}")
        st.metric("Trainable parameters to get A", f"{cost['projector_params'] / 1e6:.1f} M",
                  delta=f"{100 * cost['trainable_ratio']:.2f} % of a full finetune", delta_color="off",
                  delta_arrow="off")
    _ui.show_table(table, "policy-cost-table", prov)  # the page's width: in the side column its numbers were cut


def render() -> None:
    st.title("AC policy: which encoders deserve a finetune")
    study = _ui.current_study()
    report = _ui.law_report(study)
    ctl = _controls(study, report.benchmarks)
    with st.spinner(f"Simulating {ctl['trials']} finetuning orders per benchmark and strategy…"):
        scope = ctl["benchmark"] if "uncertainty" in ctl["strategies"] else None  # the optimistic order: one benchmark
        comparison = _comparison(study.content_hash(), ctl["trials"], ctl["seed"], ctl["top"], ctl["variant"],
                                 ctl["strategies"], ctl["law_model"], scope, study)
    budget = _render_strategies(study, comparison, ctl)
    _render_recommender(study, ctl["benchmark"], ctl["top"])
    _render_cost(study, comparison, ctl, budget)


_ui.run(render)
