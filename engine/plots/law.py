"""Figures of one fitted law: predicted vs actual, the response surface over (A, C), R² comparisons."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.law import FEATURE_SET_LABELS
from engine.plots.labels import FIGURE_WIDTHS_PX, label_points, padded_range
from engine.plots.style import (
    VARIANT_COLORS,
    by_family,
    family_color,
    family_marker,
    finish,
    fit_title,
    legend_below,
    titled,
)

# Column names of the law tables as a researcher reads them (tables keep machine names for CSV consumers)
HUMAN_COLUMNS = {
    "n": "settings", "r2": "R² in-sample", "loo_r2": "R² out of sample (leave one setting out)",
    "loo_rmse": "RMSE out of sample", "random_r2": "R² of random features", "null_r2": "R² expected by chance",
    "feature_set": "features", "variant": "uses", "in_sample_r2": "R² in-sample", "spearman": "Spearman ρ out of sample",
    "top1_hit": "true best predicted best", "top3_hit": "true best in predicted top 3", "coverage": "interval coverage",
    "interval_width": "mean interval width", "interpolating": "interpolating (n ≤ parameters)",
    "loo_predicted": "predicted while held out", "plus_minus": "± RMSE out of sample",
}


def human_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The table with researcher-readable column names and feature-set labels."""
    out = table.rename(columns=HUMAN_COLUMNS)
    if "features" in out:
        out["features"] = out["features"].map(lambda f: FEATURE_SET_LABELS.get(f, f))
    return out


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
    for family, part in by_family(scored, families):
        fig.add_trace(
            go.Scatter(x=part["score"], y=part["predicted"], mode="markers", name=family, legendgroup=family,
                       marker=family_marker(family, 10),
                       hovertext=_hover(part, unit), hoverinfo="text", showlegend=show_legend),
            **where,
        )
    fig.add_trace(
        go.Scatter(x=scored["score"], y=scored["loo_predicted"], mode="markers", name="leave-one-out prediction",
                   marker={"symbol": "circle-open", "color": "#444", "size": 8},
                   hovertext=_hover(scored, unit), hoverinfo="text", showlegend=show_legend),
        **where,
    )


def _method(feature_set: str) -> str:
    return f"OLS on {FEATURE_SET_LABELS.get(feature_set, feature_set)}"


def predicted_vs_actual(
    preds: pd.DataFrame, families: pd.Series, benchmark: str, r2: float, loo_r2: float, unit: str = "",
    feature_set: str = "ac_poly",
) -> go.Figure:
    """Scatter of predicted vs actual score per setting; open markers are leave-one-out predictions."""
    fig = go.Figure()
    _add_prediction_traces(fig, preds, families, unit)
    title = titled(f"{benchmark}: predicted vs actual",
                   f"{_method(feature_set)}; R² in-sample {r2:.3f}, out of sample {loo_r2:.3f}")
    suffix = unit and f" ({unit.strip()})"
    fig = finish(fig, title, f"measured score{suffix}", f"predicted score{suffix} (filled: fit on all; open: held out)",
                 height=530)
    fit_title(legend_below(fig))
    span = fig.data[0].x  # the y = x segment spans every point: same range on both axes
    fig.update_xaxes(range=list(span))
    fig.update_yaxes(range=list(span))
    scored = preds.dropna(subset=["score"])
    return label_points(fig, scored["score"].tolist(), scored["predicted"].tolist(), scored["setting"].tolist(),
                        tuple(span), tuple(span))


def heldout_intervals(
    heldout: pd.DataFrame, families: pd.Series, benchmark: str, model: str, level: float, unit: str = ""
) -> go.Figure:
    """Each setting's score predicted while it was held out, with its conformal interval, against the truth.

    ``heldout``: setting, score, predicted, lower, upper, inside (one benchmark of ``Evaluation.heldout``).
    """
    fig = go.Figure()
    values = heldout[["score", "predicted", "lower", "upper"]].to_numpy(dtype=float)
    lo, hi = padded_range(values.ravel())
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line={"dash": "dash", "color": "#999"},
                             hoverinfo="skip"))
    for family, part in by_family(heldout, families):
        fig.add_trace(go.Scatter(
            x=part["score"], y=part["predicted"], mode="markers", name=family,
            marker=family_marker(family, 10, symbol=["circle" if ok else "x" for ok in part["inside"]]),
            error_y={"type": "data", "symmetric": False, "array": (part["upper"] - part["predicted"]).tolist(),
                     "arrayminus": (part["predicted"] - part["lower"]).tolist(), "color": family_color(family),
                     "thickness": 1},
            text=part["setting"],
            hovertemplate=("<b>%{text}</b><br>measured %{x:.4g}<br>predicted while held out %{y:.4g}"
                           f"<br>{level:.0%} interval " + "[%{customdata[0]:.4g}, %{customdata[1]:.4g}]<extra></extra>"),
            customdata=part[["lower", "upper"]].to_numpy(),
        ))
    coverage = float(heldout["inside"].mean()) if len(heldout) else float("nan")
    suffix = unit and f" ({unit.strip()})"
    fig = finish(fig, titled(f"{benchmark}: out of sample, '{model}' law",
                             f"{level:.0%} intervals cover {coverage:.0%}; x = outside its interval"),
                 f"measured score{suffix}", f"predicted while held out{suffix}", height=530)
    fit_title(legend_below(fig))
    fig.update_xaxes(range=[lo, hi])
    fig.update_yaxes(range=[lo, hi])
    return label_points(fig, heldout["score"].tolist(), heldout["predicted"].tolist(), heldout["setting"].tolist(),
                        (lo, hi), (lo, hi))


FULL_WIDTH_CHARS = 140  # the small multiples take the page's width


SMALL_MULTIPLE_SPACING = 0.08  # room for the y tick labels of the next panel (MME's "1800") in a 1000-px window


def _fit_panel_titles(fig: go.Figure) -> None:
    """Small-multiple panel titles (two lines each) in a smaller font, with room above the first row; the legend
    under the panels (on the right it took a fifth of the width: in a 1000-px window the panels' titles, ticks and
    axis titles ran into each other)."""
    fig.update_annotations(font_size=12)
    fit_title(legend_below(fig), extra=44)


def small_multiples(panels: list[tuple[str, pd.DataFrame, float]], families: pd.Series, cols: int = 4,
                    feature_set: str = "ac_poly") -> go.Figure:
    """Predicted vs actual for several benchmarks, one small panel each (``panels`` = [(label, preds, r2)])."""
    rows = max(1, math.ceil(len(panels) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"{label}<br>R² in-sample {r2:.2f}" for label, _, r2 in panels],
                        horizontal_spacing=SMALL_MULTIPLE_SPACING, vertical_spacing=0.16)
    for i, (_, preds, _) in enumerate(panels):
        _add_prediction_traces(fig, preds, families, "", row=i // cols + 1, col=i % cols + 1)
    fig = finish(fig, titled(f"Predicted vs measured score, every benchmark, {_method(feature_set)}",
                             "filled: in-sample fit on all settings; open: held out, out of sample; each panel in "
                             "its score units", FULL_WIDTH_CHARS), "", "", height=320 * rows + 200)
    _fit_panel_titles(fig)
    fig.update_xaxes(title_text="measured score", row=rows)
    fig.update_yaxes(title_text="predicted score", col=1)
    return fig


def surface_contour(
    a_grid: np.ndarray, c_grid: np.ndarray, z: np.ndarray, points: pd.DataFrame, families: pd.Series,
    benchmark: str, unit: str = "", feature_set: str = "ac_poly",
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
    for family, part in by_family(points, families):
        fig.add_trace(
            go.Scatter(x=part["A_norm"], y=part["C_norm"], mode="markers", name=family, text=part["setting"],
                       marker=family_marker(family, 11, outline=1.5),
                       hovertext=[f"<b>{r.setting}</b><br>actual {r.score:.4g}" for r in part.itertuples()],
                       hoverinfo="text")
        )
    fig = finish(fig, titled(f"{benchmark}: fitted law over normalised A and C",
                             f"in-sample fit on all settings, {_method(feature_set)}; contours: predicted score"
                             f"{unit and f', {unit.strip()}'}"), "A (min-max normalised)",
                 "C (min-max normalised)", height=580)
    fit_title(fig)
    # legend under the plot: the colour bar takes the right side
    fig.update_layout(legend={"orientation": "h", "x": 0, "y": -0.16, "yanchor": "top"}, margin={"b": 110})
    fig.update_xaxes(range=[-0.06, 1.06])
    fig.update_yaxes(range=[-0.06, 1.06])
    # the colour bar takes ~100 px right of the plot
    return label_points(fig, points["A_norm"].tolist(), points["C_norm"].tolist(), points["setting"].tolist(),
                        (-0.06, 1.06), (-0.06, 1.06), [w - 100 for w in FIGURE_WIDTHS_PX])


def r2_comparison(table: pd.DataFrame, random_r2: float | None, null_r2: float | None, benchmark: str) -> go.Figure:
    """Bars of R² per feature set (``table``: feature_set, variant, r2) with random-baseline and null lines."""
    colors = [VARIANT_COLORS.get(v, "#7f7f7f") for v in table["variant"]]
    names = [FEATURE_SET_LABELS.get(f, f) for f in table["feature_set"]]
    fig = go.Figure(
        go.Bar(x=names, y=table["r2"], marker_color=colors, text=[f"{v:.3f}" for v in table["r2"]],
               textposition="outside", hovertemplate="%{x}: R² %{y:.3f}<extra></extra>", name="R²",
               showlegend=False)
    )
    # the baselines are named in the legend: a label on the line sits on the bars (and the two lines nearly
    # coincide, random features reaching about the null expectation)
    if random_r2 is not None and np.isfinite(random_r2):
        fig.add_hline(y=random_r2, line={"dash": "dot", "color": VARIANT_COLORS["random"]},
                      name=f"random features (mean R² {random_r2:.2f})", showlegend=True)
    if null_r2 is not None and np.isfinite(null_r2):
        fig.add_hline(y=null_r2, line={"dash": "dash", "color": "#444"},
                      name=f"null expectation (unrelated regressors) {null_r2:.2f}", showlegend=True)
    fig = finish(fig, f"{benchmark}: R² by feature set vs random baseline (in-sample)", "terms of A and C in the fit",
                 "R² of the fit on all settings (in-sample)", height=480)
    legend_below(fig)
    fig.update_yaxes(range=[min(0.0, float(table["r2"].min()) - 0.05), 1.08])
    return fig


def heldout_small_multiples(
    heldout: pd.DataFrame, labels: dict[str, str], families: pd.Series, model: str, level: float, cols: int = 4
) -> go.Figure:
    """Held-out prediction vs measured score with the conformal interval, one panel per benchmark."""
    benches = list(dict.fromkeys(heldout["benchmark"]))
    rows = max(1, math.ceil(len(benches) / cols))
    cover = heldout.groupby("benchmark")["inside"].mean()
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=SMALL_MULTIPLE_SPACING, vertical_spacing=0.16,
                        subplot_titles=[f"{labels.get(b, b)}<br>{cover[b]:.0%} inside the interval" for b in benches])
    shown: set[str] = set()
    for i, bench in enumerate(benches):
        part = heldout[heldout["benchmark"] == bench]
        where = {"row": i // cols + 1, "col": i % cols + 1}
        lo, hi = padded_range(part[["score", "lower", "upper"]].to_numpy(dtype=float).ravel())
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dash", "color": "#999"},
                                 hoverinfo="skip", showlegend=False), **where)
        for family, sub in by_family(part, families):
            fig.add_trace(go.Scatter(
                x=sub["score"], y=sub["predicted"], mode="markers", name=family, legendgroup=family,
                showlegend=False, text=sub["setting"],
                marker=family_marker(family, 7, outline=None, symbol=["circle" if ok else "x" for ok in sub["inside"]]),
                error_y={"type": "data", "symmetric": False, "array": (sub["upper"] - sub["predicted"]).tolist(),
                         "arrayminus": (sub["predicted"] - sub["lower"]).tolist(), "thickness": 1,
                         "color": family_color(family)},
                hovertemplate="<b>%{text}</b><br>measured %{x:.4g}<br>predicted while held out %{y:.4g}<extra></extra>",
            ), **where)
            if family not in shown:  # the legend's marker is a plain circle, whichever symbol the first point has
                fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=family, legendgroup=family,
                                         marker=family_marker(family, 7, outline=None)), **where)
            shown.add(family)
        fig.update_xaxes(range=[lo, hi], **where)
        fig.update_yaxes(range=[lo, hi], **where)
    fig = finish(fig, titled(f"Out of sample, every benchmark: '{model}' law, {level:.0%} jackknife+ intervals",
                             "x = measured score outside its interval; each panel in its benchmark's score units",
                             FULL_WIDTH_CHARS),
                 "", "", height=320 * rows + 200)
    _fit_panel_titles(fig)
    fig.update_xaxes(title_text="measured score", row=rows)
    fig.update_yaxes(title_text="predicted while held out", col=1)
    return fig
