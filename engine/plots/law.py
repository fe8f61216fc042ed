"""Figures of one fitted law: predicted vs actual, the response surface over (A, C), R² comparisons."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.plots.style import LABEL_FONT, VARIANT_COLORS, family_color, finish


def _hover(frame: pd.DataFrame, unit: str) -> list[str]:
    return [
        f"<b>{row.setting}</b><br>A = {row.A:.3g}, C = {row.C:.3g}<br>actual {row.score:.4g}{unit}"
        f"<br>predicted {row.predicted:.4g}{unit}<br>LOO {row.loo_predicted:.4g}{unit}"
        for row in frame.itertuples()
    ]


def _add_prediction_traces(
    fig: go.Figure, preds: pd.DataFrame, families: pd.Series, unit: str, row: int | None = None, col: int | None = None
) -> None:
    """Fitted (filled) and leave-one-out (open) predictions against the actual score, plus y = x."""
    scored = preds.dropna(subset=["score"])
    where = {"row": row, "col": col} if row is not None else {}
    show_legend = row is None or (row == 1 and col == 1)
    lo = float(np.nanmin(scored[["score", "predicted", "loo_predicted"]].to_numpy()))
    hi = float(np.nanmax(scored[["score", "predicted", "loo_predicted"]].to_numpy()))
    pad = 0.04 * (hi - lo or 1.0)
    fig.add_trace(
        go.Scatter(x=[lo - pad, hi + pad], y=[lo - pad, hi + pad], mode="lines", name="y = x",
                   line={"dash": "dash", "color": "#999"}, hoverinfo="skip", showlegend=show_legend),
        **where,
    )
    seg_x, seg_y = [], []
    for r in scored.itertuples():
        seg_x += [r.score, r.score, None]
        seg_y += [r.predicted, r.loo_predicted, None]
    fig.add_trace(
        go.Scatter(x=seg_x, y=seg_y, mode="lines", line={"color": "#bbb", "width": 1}, hoverinfo="skip",
                   showlegend=False),
        **where,
    )
    fam = scored["setting"].map(families).fillna("other")
    for family in sorted(fam.unique()):
        part = scored[fam == family]
        fig.add_trace(
            go.Scatter(x=part["score"], y=part["predicted"], mode="markers", name=family, legendgroup=family,
                       marker={"color": family_color(family), "size": 10, "line": {"width": 1, "color": "white"}},
                       hovertext=_hover(part, unit), hoverinfo="text", showlegend=show_legend),
            **where,
        )
    fig.add_trace(
        go.Scatter(x=scored["score"], y=scored["loo_predicted"], mode="markers", name="leave-one-out prediction",
                   marker={"symbol": "circle-open", "color": "#444", "size": 8},
                   hovertext=_hover(scored, unit), hoverinfo="text", showlegend=show_legend),
        **where,
    )


def predicted_vs_actual(
    preds: pd.DataFrame, families: pd.Series, benchmark: str, r2: float, loo_r2: float, unit: str = ""
) -> go.Figure:
    """Scatter of predicted vs actual score per setting; open markers are leave-one-out predictions."""
    fig = go.Figure()
    _add_prediction_traces(fig, preds, families, unit)
    title = f"{benchmark}: predicted vs actual (R² = {r2:.3f}, LOO R² = {loo_r2:.3f})"
    fig = finish(fig, title, f"actual score{unit and f' ({unit.strip()})'}", f"predicted score{unit and f' ({unit.strip()})'}")
    span = fig.data[0].x  # the y = x segment spans every point: same range on both axes
    fig.update_xaxes(range=list(span))
    fig.update_yaxes(range=list(span))
    return fig


def small_multiples(panels: list[tuple[str, pd.DataFrame, float]], families: pd.Series, cols: int = 4) -> go.Figure:
    """Predicted vs actual for several benchmarks, one small panel each (``panels`` = [(label, preds, r2)])."""
    rows = max(1, math.ceil(len(panels) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"{label} (R² {r2:.2f})" for label, _, r2 in panels],
                        horizontal_spacing=0.06, vertical_spacing=0.14)
    for i, (_, preds, _) in enumerate(panels):
        _add_prediction_traces(fig, preds, families, "", row=i // cols + 1, col=i % cols + 1)
    fig = finish(fig, "Predicted vs actual score, every benchmark (open markers: leave-one-out)", "", "",
                 height=300 * rows + 80)
    fig.update_xaxes(title_text="actual", row=rows)
    fig.update_yaxes(title_text="predicted", col=1)
    return fig


def surface_contour(
    a_grid: np.ndarray, c_grid: np.ndarray, z: np.ndarray, points: pd.DataFrame, families: pd.Series,
    benchmark: str, unit: str = "",
) -> go.Figure:
    """The fitted quadratic as a contour over normalised (A, C) with the settings drawn on it.

    ``z[i, j]`` is the prediction at ``(a_grid[j], c_grid[i])``; ``points`` has columns
    setting, A_norm, C_norm, score.
    """
    fig = go.Figure(
        go.Contour(x=a_grid, y=c_grid, z=z, colorscale="Viridis", contours={"showlabels": True},
                   colorbar={"title": {"text": f"predicted{unit and f' ({unit.strip()})'}"}},
                   hovertemplate="A (norm) %{x:.2f}<br>C (norm) %{y:.2f}<br>predicted %{z:.4g}<extra></extra>")
    )
    fam = points["setting"].map(families).fillna("other")
    for family in sorted(fam.unique()):
        part = points[fam == family]
        fig.add_trace(
            go.Scatter(x=part["A_norm"], y=part["C_norm"], mode="markers+text", name=family, text=part["setting"],
                       textposition="top center", textfont=LABEL_FONT,
                       marker={"color": family_color(family), "size": 11, "line": {"width": 1.5, "color": "white"}},
                       hovertext=[f"<b>{r.setting}</b><br>actual {r.score:.4g}" for r in part.itertuples()],
                       hoverinfo="text")
        )
    fig = finish(fig, f"{benchmark}: fitted law over normalised A and C", "A (min-max normalised)",
                 "C (min-max normalised)", height=560)
    # legend under the plot: the colour bar takes the right side
    fig.update_layout(legend={"orientation": "h", "x": 0, "y": -0.16, "yanchor": "top"}, margin={"b": 110})
    return fig


def r2_comparison(table: pd.DataFrame, random_r2: float | None, null_r2: float | None, benchmark: str) -> go.Figure:
    """Bars of R² per feature set (``table``: feature_set, variant, r2) with random-baseline and null lines."""
    colors = [VARIANT_COLORS.get(v, "#7f7f7f") for v in table["variant"]]
    fig = go.Figure(
        go.Bar(x=table["feature_set"], y=table["r2"], marker_color=colors, text=[f"{v:.3f}" for v in table["r2"]],
               textposition="outside", hovertemplate="%{x}: R² %{y:.3f}<extra></extra>", name="R²")
    )
    if random_r2 is not None and np.isfinite(random_r2):
        fig.add_hline(y=random_r2, line={"dash": "dot", "color": VARIANT_COLORS["random"]},
                      annotation_text=f"random features {random_r2:.2f}", annotation_position="top left")
    if null_r2 is not None and np.isfinite(null_r2):
        fig.add_hline(y=null_r2, line={"dash": "dash", "color": "#444"},
                      annotation_text=f"null expectation {null_r2:.2f}", annotation_position="bottom right")
    fig = finish(fig, f"{benchmark}: R² by feature set vs random baseline", "feature set", "R² (in-sample)", height=420)
    fig.update_yaxes(range=[min(0.0, float(table["r2"].min()) - 0.05), 1.08])
    return fig
