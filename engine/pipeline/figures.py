"""Figures of the score-an-encoder page: the candidate on the A-C plane and its predicted scores with intervals."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.plots.labels import label_points, padded_range
from engine.plots.style import family_color, finish, fit_title, legend_below, setting_families, titled

CANDIDATE_COLOR = "#d62728"


def candidate_scatter(settings: pd.DataFrame, setting: str, A: float, C: float, scale: str) -> go.Figure:
    """The study's settings on the A-C plane (coloured by family) with the candidate highlighted."""
    fig = go.Figure()
    known = settings[settings["setting"] != setting].dropna(subset=["A", "C"])
    families = setting_families(known)
    for family in dict.fromkeys(families.tolist()):
        rows = known[families.reindex(known["setting"]).to_numpy() == family]
        fig.add_trace(go.Scatter(
            x=rows["A"], y=rows["C"], mode="markers", name=family, text=rows["setting"],
            marker={"size": 10, "color": family_color(family)},
            hovertemplate="%{text}<br>A=%{x:.3f}<br>C=%{y:.2f}<extra></extra>",
        ))
    label = f"{setting} [{scale}-scale]"
    fig.add_trace(go.Scatter(
        x=[A], y=[C], mode="markers", name=label, text=[label],
        marker={"size": 18, "symbol": "star", "color": CANDIDATE_COLOR, "line": {"width": 1, "color": "black"}},
        hovertemplate="%{text}<br>A=%{x:.3f}<br>C=%{y:.2f}<extra></extra>",
    ))
    fig = finish(fig, "Where the new setting falls among the study's settings", "A (alignment)",
                 "C (correspondence, PCK@0.10 x 100)")
    xs, ys = [*known["A"], A], [*known["C"], C]
    x_range, y_range = padded_range(xs), padded_range(ys)
    fig.update_xaxes(range=list(x_range))
    fig.update_yaxes(range=list(y_range))
    legend_below(fig)
    return label_points(fig, xs, ys, [*known["setting"], label], x_range, y_range)


def prediction_bars(table: pd.DataFrame, setting: str, scale: str, study_scores: pd.DataFrame | None = None,
                    cols: int = 4) -> go.Figure:
    """One panel per benchmark (own y axis: MME is out of 2000): the predicted score with its conformal interval
    (``lower``/``upper`` of ``place_on_law``), beside the study's measured scores of that benchmark (grey) and the
    setting's own score when measured (black). Hatched: extrapolated; grey bar: A/C not comparable with the study's."""
    rows = math.ceil(len(table) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=table["label"].tolist(), horizontal_spacing=0.06,
                        vertical_spacing=0.18)
    for i, row in enumerate(table.itertuples()):
        r, c = i // cols + 1, i % cols + 1
        scores = None
        if study_scores is not None:
            scores = study_scores.loc[study_scores["benchmark"] == row.benchmark].dropna(subset=["score"])
            fig.add_trace(go.Box(y=scores["score"], x=["study"] * len(scores), name="study settings", boxpoints="all",
                                 text=scores["setting"], marker={"color": "#9e9e9e"}, line={"color": "#9e9e9e"},
                                 showlegend=i == 0, legendgroup="study"), row=r, col=c)
        level = f"{row.level:.0%}"
        fig.add_trace(go.Bar(
            x=["predicted"], y=[row.predicted], name=f"predicted, {level} interval", showlegend=i == 0, legendgroup="pred",
            error_y={"type": "data", "symmetric": False, "array": [row.upper - row.predicted],
                     "arrayminus": [row.predicted - row.lower], "visible": True},
            marker={"color": CANDIDATE_COLOR if not row.method_mismatch else "#9e9e9e",
                    "pattern": {"shape": "/" if row.extrapolated else ""}},
            hovertemplate=(f"{row.label}<br>predicted %{{y:.2f}}, {level} interval [{row.lower:.2f}, {row.upper:.2f}]"
                           f"{'<br>extrapolated' if row.extrapolated else ''}{'<br>clipped to the valid range' if row.clipped else ''}"
                           "<extra></extra>"),
        ), row=r, col=c)
        values = [row.predicted, row.lower, row.upper, *([] if scores is None else scores["score"])]
        if not math.isnan(row.actual):
            values.append(row.actual)
        values = [v for v in values if math.isfinite(v)]  # an unbounded interval (too few settings) has no end
        pad = 0.08 * (max(values) - min(values) or 1.0)
        fig.update_yaxes(range=[min(values) - pad, max(values) + pad], row=r, col=c)  # zoom: bars need not start at 0
        if not math.isnan(row.actual):
            fig.add_trace(go.Scatter(x=["predicted"], y=[row.actual], mode="markers", name="measured",
                                     marker={"size": 11, "color": "black", "symbol": "diamond"},
                                     showlegend=i == 0, legendgroup="measured"), row=r, col=c)
    model = table["model"].iat[0] if "model" in table and len(table) else "paper"
    # a one-line title and a right-hand legend were cut / squeezed the four panels (titles overlapping) in a
    # laptop-wide window: the detail wraps under a short main line, the legend goes under the panels
    title = titled(f"Predicted scores of {setting}", f"'{model}' law, out-of-sample jackknife+ interval; "
                   f"{scale}-scale A and C; hatched = extrapolated; each panel in its benchmark's score units")
    fig = finish(fig, title, "", "", height=300 * rows + 190)
    fig.update_annotations(font_size=12)  # the panel titles
    return fit_title(legend_below(fig), extra=32)
