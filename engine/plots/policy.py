"""Policy figures: Recall@T against the finetuning budget, runs needed, and the cost comparison."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from engine.plots.style import finish

_VARIANT_DASH = {"paper": "solid", "measured": "dashdot"}
_PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b"]


def recall_curves(curves: pd.DataFrame, top: int, title_scope: str) -> go.Figure:
    """Recall@T vs budget per policy variant and the random baselines.

    ``curves``: budget, recall, random_recall, [random_sampling_recall], variant (averaged over
    benchmarks by the caller if needed). Recall@T: share of trials in which the best setting is among
    the T ranked highest after finetuning ``budget`` settings.
    """
    fig = go.Figure()
    for i, variant in enumerate(dict.fromkeys(curves["variant"])):
        part = curves[curves["variant"] == variant].sort_values("budget")
        fig.add_trace(
            go.Scatter(x=part["budget"], y=part["recall"], mode="lines+markers", name=f"AC policy ({variant})",
                       line={"color": _PALETTE[i % len(_PALETTE)], "dash": _VARIANT_DASH.get(variant, "solid")},
                       hovertemplate=f"{variant}: budget %{{x}} → recall %{{y:.2f}}<extra></extra>")
        )
    baselines = [("random_recall", "chance (budget / n)", "dot")]
    if "random_sampling_recall" in curves:
        baselines.insert(0, ("random_sampling_recall", "random order, same refit", "dash"))
    for column, name, dash in baselines:
        # one baseline curve, under the first variant's ranking rule (the variants differ only slightly there)
        rand = curves[curves["variant"] == curves["variant"].iloc[0]].groupby("budget", as_index=False)[column].mean()
        fig.add_trace(
            go.Scatter(x=rand["budget"], y=rand[column], mode="lines+markers", name=name,
                       line={"color": "#7f7f7f", "dash": dash}, marker={"size": 5},
                       hovertemplate=f"{name}: budget %{{x}} → recall %{{y:.2f}}<extra></extra>")
        )
    fig = finish(fig, f"Recall@{top} vs finetuning budget ({title_scope})", "settings finetuned (budget)",
                 f"Recall@{top} (best setting in the top {top})", height=420)
    fig.update_yaxes(range=[0, 1.05])
    return fig


def runs_needed_histogram(runs: pd.DataFrame, top: int) -> go.Figure:
    """Distribution of finetunes until the best setting first ranks in the top ``top`` (``runs``: method, runs).

    Methods other than "random order" get the policy colours; random order is grey and drawn last.
    """
    fig = go.Figure()
    methods = sorted(dict.fromkeys(runs["method"]), key=lambda m: m == "random order")
    for i, method in enumerate(methods):
        part = runs[runs["method"] == method]
        color = "#7f7f7f" if method == "random order" else _PALETTE[i % len(_PALETTE)]
        fig.add_trace(go.Histogram(x=part["runs"], name=str(method), opacity=0.85, marker_color=color, xbins={"size": 1}))
    fig = finish(fig, f"Finetunes until the best setting first ranks in the top {top}", "settings finetuned",
                 "simulated trials", height=380)
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
