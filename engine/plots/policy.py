"""Policy figures: Recall@T of each finetune-order strategy against the budget, runs needed, and the cost."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.plots.style import finish, fit_title, legend_below, titled
from engine.policy.compare import METRIC_LABELS, STRATEGY_LABELS

_PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b"]
_STRATEGY_STYLE = {
    "region": ("#d62728", "solid"),
    "greedy": ("#1f77b4", "solid"),
    "uncertainty": ("#2ca02c", "solid"),
    "random": ("#7f7f7f", "dash"),
}


def strategy_curves(mean: pd.DataFrame, top: int, scope: str, metrics: tuple[str, ...] = ("at-budget", "first-hit")) -> go.Figure:
    """Recall@T vs budget, one panel per metric, one line per strategy, random order dashed and chance dotted.

    ``mean``: strategy, metric, budget, recall, chance (already averaged over the benchmarks in ``scope``).
    """
    fig = make_subplots(rows=1, cols=len(metrics), shared_yaxes=True, horizontal_spacing=0.06,
                        # the label's parenthesis on a line of its own: side by side, one line each overlapped
                        subplot_titles=[f"Recall@{top}, {METRIC_LABELS.get(m, m)}".replace(" (", "<br>(", 1)
                                        for m in metrics])
    for col, metric in enumerate(metrics, start=1):
        part = mean[mean["metric"] == metric]
        for i, strategy in enumerate(dict.fromkeys(part["strategy"])):
            rows = part[part["strategy"] == strategy].sort_values("budget")
            color, dash = _STRATEGY_STYLE.get(strategy, (_PALETTE[i % len(_PALETTE)], "solid"))
            name = STRATEGY_LABELS.get(strategy, strategy)
            fig.add_trace(go.Scatter(
                x=rows["budget"], y=rows["recall"], mode="lines+markers", name=name, legendgroup=strategy,
                showlegend=col == 1, line={"color": color, "dash": dash}, marker={"size": 5},
                hovertemplate=f"{name}: %{{x}} finetunes → Recall@{top} %{{y:.2f}}<extra></extra>"), row=1, col=col)
        chance = part.groupby("budget", as_index=False)["chance"].mean()
        fig.add_trace(go.Scatter(
            x=chance["budget"], y=chance["chance"], mode="lines", name="chance (best setting among those finetuned)",
            legendgroup="chance", showlegend=col == 1, line={"color": "#7f7f7f", "dash": "dot"},
            hovertemplate="chance: %{x} finetunes → %{y:.2f}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="settings finetuned (budget k)", row=1, col=col)
    fig = finish(fig, titled("Which finetune order finds the best setting?",
                             f"{scope}; simulated on the study's own scores (in sample)"),
                 "settings finetuned (budget k)", "", height=540)
    # the shared y axis is titled once: on the second panel its title sat on the first panel's plot
    fig.update_yaxes(range=[0, 1.05])
    fig.update_yaxes(title_text=f"Recall@{top}: best setting in the predicted top {top}", col=1)
    fig.update_annotations(font_size=12)
    return fit_title(legend_below(fig), extra=44)


def runs_needed_histogram(runs: pd.DataFrame, top: int, y_title: str = "simulated trials") -> go.Figure:
    """Distribution of finetunes until the best setting first ranks in the top ``top`` (``runs``: method, runs).

    Methods other than "random order" get the policy colours; random order is grey and drawn last.
    ``y_title`` says what a bar counts (one benchmark's trials, or trials summed over benchmarks).
    """
    fig = go.Figure()
    methods = sorted(dict.fromkeys(runs["method"]), key=lambda m: m == "random order")
    for i, method in enumerate(methods):
        part = runs[runs["method"] == method]
        color = "#7f7f7f" if method == "random order" else _PALETTE[i % len(_PALETTE)]
        fig.add_trace(go.Histogram(x=part["runs"], name=str(method), opacity=0.85, marker_color=color, xbins={"size": 1}))
    fig = finish(fig, f"Finetunes until the best setting first ranks in the top {top} (simulated)", "settings finetuned",
                 y_title, height=380)
    fig.update_layout(barmode="group", bargap=0.15)
    return fig


def cost_bars(table: pd.DataFrame, value: str, unit: str) -> go.Figure:
    """Bars of a cost column (``table``: method plus ``value``) in ``unit``."""
    fig = go.Figure(
        go.Bar(x=table["method"], y=table[value], marker_color=_PALETTE[: len(table)],
               text=[f"{v:,.1f}" for v in table[value]], textposition="outside",
               hovertemplate=f"%{{x}}: %{{y:,.1f}} {unit}<extra></extra>")
    )
    return finish(fig, f"Cost to find the best encoder ({unit})", "method", unit, height=360)
