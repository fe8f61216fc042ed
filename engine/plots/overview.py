"""Overview figures: per-benchmark R² of the law and its ablations, and the settings in the (A, C) plane."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from engine.plots.labels import label_points, padded_range
from engine.plots.style import VARIANT_COLORS, by_family, family_marker, finish, fit_title, legend_below, titled


def r2_by_benchmark(table: pd.DataFrame) -> go.Figure:
    """Grouped bars of R² per benchmark (``table``: benchmark, variant, r2; variants AC, A, C, random)."""
    fig = go.Figure()
    order = list(dict.fromkeys(table["benchmark"]))
    for variant in dict.fromkeys(table["variant"]):
        part = table[table["variant"] == variant].set_index("benchmark").reindex(order)
        fig.add_trace(
            go.Bar(x=order, y=part["r2"], name=variant, marker_color=VARIANT_COLORS.get(variant, "#7f7f7f"),
                   hovertemplate=f"%{{x}} · {variant}: R² %{{y:.3f}}<extra></extra>")
        )
    fig = finish(fig, titled("R² of the law per benchmark (in-sample)", "A and C together vs each alone vs random "
                             "features"), "benchmark", "R² of the fit on all settings (in-sample)", height=440)
    # the legend above the bars: the rotated benchmark names take the space under them
    fig.update_layout(barmode="group", legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"})
    fit_title(fig, extra=20)
    fig.update_yaxes(range=[min(0.0, float(table["r2"].min()) - 0.05), 1.05])
    return fig


def ac_scatter(settings: pd.DataFrame, families: pd.Series, a_label: str = "A", c_label: str = "C") -> go.Figure:
    """Each setting at its (A, C), coloured by encoder family (``settings``: setting, A, C), labelled without overlap."""
    fig = go.Figure()
    for family, part in by_family(settings, families):
        fig.add_trace(
            go.Scatter(x=part["A"], y=part["C"], mode="markers", name=family, text=part["setting"],
                       marker=family_marker(family, 11),
                       hovertemplate="<b>%{text}</b><br>A %{x:.3g}<br>C %{y:.3g}<extra></extra>")
        )
    x_range, y_range = padded_range(settings["A"]), padded_range(settings["C"])
    fig = finish(fig, "Vision representation settings in the (A, C) plane", a_label, c_label, height=530)
    legend_below(fig)
    fig.update_xaxes(range=list(x_range))
    fig.update_yaxes(range=list(y_range))
    return label_points(fig, settings["A"].tolist(), settings["C"].tolist(), settings["setting"].tolist(), x_range,
                        y_range)
