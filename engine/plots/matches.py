"""Plotly figures of the keypoint-match viewer: pair matches, similarity heatmap, feature PCA, per-category PCK.

Every image figure is one canvas (a single x/y axis with equal scale and y pointing down) on which
the images are laid side by side, all scaled to the height of the first one without resampling
(plotly ``go.Image`` with ``dx``/``dy``), so keypoints and lines that cross from one image to the
other live in one coordinate system. Image coordinates are continuous pixels: (0, 0) is the
top-left corner of the image and pixel ``i`` spans ``[i, i + 1)``.
The canvas primitives live in ``engine.plots.match_canvas`` and are re-exported here (same public names).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine.errors import InputError
from engine.plots.match_canvas import (  # noqa: F401  (re-exported public names)
    CORRECT_COLOR,
    DEFAULT_HEIGHT_PX,
    GT_RING_COLOR,
    JPEG_MIN_PIXELS,
    KEYPOINT_PALETTE,
    PANEL_GAP,
    QUERY_COLOR,
    WRONG_COLOR,
    Panel,
    _circle_path,
    _finish,
    _image_size,
    _panel_label,
    _points,
    _segments,
    add_image,
    click_grid,
    image_data_uri,
    layout_row,
    sub_panel,
)
from engine.plots.style import fit_title


def pck_summary(correct: np.ndarray, visible: np.ndarray | None = None) -> dict:
    """Correct / evaluated keypoint counts and their ratio (``pck`` is NaN when nothing is evaluated)."""
    correct = np.asarray(correct, dtype=bool)
    mask = np.ones_like(correct) if visible is None else np.asarray(visible, dtype=bool)
    total = int(mask.sum())
    hits = int((correct & mask).sum())
    return {"correct": hits, "total": total, "pck": hits / total if total else float("nan")}


def pair_matches_figure(
    src_img: np.ndarray,
    trg_img: np.ndarray,
    src_kps: np.ndarray,
    gt_kps: np.ndarray,
    pred_kps: np.ndarray,
    visible: np.ndarray,
    correct: np.ndarray,
    *,
    threshold_px: float | np.ndarray | None = None,
    alpha: float | None = None,
    show_threshold: bool = False,
    keypoint_names: Sequence[str] | None = None,
    title: str | None = None,
    height_px: int = DEFAULT_HEIGHT_PX,
) -> go.Figure:
    """Source | target with keypoints and a line from each source keypoint to its prediction, green if correct.

    ``src_kps`` are in source pixels, ``gt_kps`` and ``pred_kps`` in target pixels (N x 2, x then y);
    only ``visible`` keypoints are drawn and counted. ``threshold_px`` (scalar or per keypoint, in
    target pixels) draws the alpha circle around each ground truth: a legend entry the user toggles,
    shown from the start when ``show_threshold``. The title carries the pair's PCK.
    """
    src_kps, gt_kps, pred_kps = (_points(v, n) for v, n in ((src_kps, "src_kps"), (gt_kps, "gt_kps"), (pred_kps, "pred_kps")))
    n = len(src_kps)
    visible = np.asarray(visible, dtype=bool).reshape(-1)
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    if not (len(gt_kps) == len(pred_kps) == len(visible) == len(correct) == n):
        raise InputError(
            f"keypoint arrays disagree in length: src {n}, gt {len(gt_kps)}, pred {len(pred_kps)}, "
            f"visible {len(visible)}, correct {len(correct)}"
        )
    src_panel, trg_panel = layout_row([_image_size(src_img), _image_size(trg_img)])
    fig = go.Figure()
    add_image(fig, src_img, src_panel, "source")
    add_image(fig, trg_img, trg_panel, "target")
    _panel_label(fig, src_panel, "source")
    _panel_label(fig, trg_panel, "target")

    idx = np.flatnonzero(visible)
    names = [keypoint_names[i] if keypoint_names is not None else f"kp {i}" for i in idx]
    colors = [KEYPOINT_PALETTE[i % len(KEYPOINT_PALETTE)] for i in idx]
    src_c = src_panel.to_canvas(src_kps[idx])
    gt_c = trg_panel.to_canvas(gt_kps[idx])
    pred_c = trg_panel.to_canvas(pred_kps[idx])
    ok = correct[idx]
    err = np.linalg.norm(pred_kps[idx] - gt_kps[idx], axis=1) if len(idx) else np.zeros(0)

    for mask, name, color in ((ok, "correct match", CORRECT_COLOR), (~ok, "wrong match", WRONG_COLOR)):
        xs, ys = _segments(src_c[mask], pred_c[mask])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{name} ({int(mask.sum())})",
                                 line={"color": color, "width": 2}, opacity=0.85, hoverinfo="skip"))  # fmt: skip

    radii = None
    if threshold_px is not None and len(idx):
        radii = np.broadcast_to(np.asarray(threshold_px, dtype=float), (n,))[idx]
        xs, ys = _circle_path(gt_c, radii * trg_panel.scale_x)
        label = f"α={alpha:g} threshold" if alpha is not None else "α threshold"
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=label, hoverinfo="skip",
                                 line={"color": "#ffd700", "width": 1.5, "dash": "dot"},
                                 visible=True if show_threshold else "legendonly"))  # fmt: skip

    outline = {"color": "white", "width": 1.5}
    fig.add_trace(go.Scatter(
        x=src_c[:, 0], y=src_c[:, 1], mode="markers", name="source keypoints", text=names,
        marker={"size": 10, "color": colors, "line": outline},
        hovertemplate="%{text}<br>source (%{customdata[0]:.0f}, %{customdata[1]:.0f})<extra></extra>",
        customdata=src_kps[idx],
    ))  # fmt: skip
    hover_r = [f"<br>threshold {r:.1f} px" for r in radii] if radii is not None else [""] * len(idx)
    fig.add_trace(go.Scatter(
        x=gt_c[:, 0], y=gt_c[:, 1], mode="markers", name="ground truth",
        text=[f"{nm}{h}" for nm, h in zip(names, hover_r, strict=True)],
        marker={"size": 11, "color": "rgba(0,0,0,0)", "symbol": "circle", "line": {"color": colors, "width": 2.5}},
        customdata=gt_kps[idx],
        hovertemplate="%{text}<br>ground truth (%{customdata[0]:.0f}, %{customdata[1]:.0f})<extra></extra>",
    ))  # fmt: skip
    fig.add_trace(go.Scatter(
        x=pred_c[:, 0], y=pred_c[:, 1], mode="markers", name="prediction", text=names,
        marker={"size": 9, "symbol": "x", "color": [CORRECT_COLOR if c else WRONG_COLOR for c in ok],
                "line": {"color": "white", "width": 1}},
        customdata=np.column_stack([pred_kps[idx], err]) if len(idx) else np.zeros((0, 3)),
        hovertemplate="%{text}<br>prediction (%{customdata[0]:.0f}, %{customdata[1]:.0f})"
                      "<br>error %{customdata[2]:.1f} px<extra></extra>",
    ))  # fmt: skip

    summary = pck_summary(correct, visible)
    pck_text = "no visible keypoint" if not summary["total"] else (
        f"{summary['correct']} / {summary['total']} correct = {100 * summary['pck']:.1f} %"
    )
    head = f"PCK@{alpha:g}: " if alpha is not None else "PCK: "
    full_title = f"{title} — {head}{pck_text}" if title else head + pck_text
    return _finish(fig, [src_panel, trg_panel], full_title, height_px)


BEST_MATCH_COLOR = "#ffd400"  # yellow diamond, unlike the cyan star of the query


def similarity_figure(
    src_img: np.ndarray,
    trg_img: np.ndarray,
    similarity: np.ndarray,
    query_xy: Sequence[float] | None,
    best_xy: Sequence[float] | None = None,
    *,
    gt_xy: Sequence[float] | None = None,
    extent: Sequence[float] | None = None,
    opacity: float = 0.55,
    grid_cells: int = 20,
    colorscale: str = "Turbo",
    title: str | None = None,
    height_px: int = DEFAULT_HEIGHT_PX,
) -> go.Figure:
    """Source with a clickable point grid and the query; target overlaid with the similarity map and best match.

    ``similarity`` (h x w) covers ``extent`` = (x0, y0, x1, y1) in target pixels (default: the whole
    target). The trace named ``"click a source point"`` is the selectable layer: its ``customdata``
    holds source pixel coordinates (on the canvas the source sits at scale 1, so x/y are pixels too).
    ``gt_xy`` (target pixels) marks the true correspondence when the query is an annotated keypoint.
    """
    sim = np.asarray(similarity, dtype=float)
    if sim.ndim != 2 or min(sim.shape) < 1:
        raise InputError(f"similarity must be an h x w map, got shape {sim.shape}")
    src_panel, trg_panel = layout_row([_image_size(src_img), _image_size(trg_img)])
    ex0, ey0, ex1, ey1 = extent if extent is not None else (0.0, 0.0, float(trg_panel.width), float(trg_panel.height))
    fig = go.Figure()
    add_image(fig, src_img, src_panel, "source")
    add_image(fig, trg_img, trg_panel, "target")
    _panel_label(fig, src_panel, "source — click a point")
    _panel_label(fig, trg_panel, "target — similarity to the query")

    cell_w = (ex1 - ex0) / sim.shape[1]
    cell_h = (ey1 - ey0) / sim.shape[0]
    (hx0, hy0), = trg_panel.to_canvas([[ex0 + cell_w / 2, ey0 + cell_h / 2]])  # fmt: skip
    finite = sim[np.isfinite(sim)]
    fig.add_trace(go.Heatmap(
        z=sim, x0=hx0, dx=cell_w * trg_panel.scale_x, y0=hy0, dy=cell_h * trg_panel.scale_y,
        colorscale=colorscale, opacity=opacity, name="similarity", zsmooth="best",
        zmin=float(finite.min()) if finite.size else None, zmax=float(finite.max()) if finite.size else None,
        colorbar={"title": {"text": "cosine", "side": "right"}, "thickness": 12, "len": 0.9},
        hovertemplate="similarity %{z:.3f}<extra></extra>",
    ))  # fmt: skip

    grid = click_grid(src_panel.height, src_panel.width, grid_cells)
    grid_c = src_panel.to_canvas(grid)
    fig.add_trace(go.Scatter(
        x=grid_c[:, 0], y=grid_c[:, 1], mode="markers", name="click a source point", customdata=grid,
        marker={"size": 7, "color": "rgba(255,255,255,0.18)", "line": {"color": "rgba(0,0,0,0.22)", "width": 1}},
        hovertemplate="query (%{customdata[0]:.0f}, %{customdata[1]:.0f})<extra></extra>", showlegend=False,
    ))  # fmt: skip
    if gt_xy is not None:
        g = trg_panel.to_canvas([gt_xy])
        fig.add_trace(go.Scatter(x=g[:, 0], y=g[:, 1], mode="markers", name="ground truth",
                                 marker={"size": 24, "color": "rgba(0,0,0,0)", "line": {"color": GT_RING_COLOR, "width": 3}},
                                 hovertemplate=f"ground truth ({gt_xy[0]:.0f}, {gt_xy[1]:.0f})<extra></extra>"))  # fmt: skip
    star = {"size": 16, "symbol": "star", "line": {"color": "black", "width": 1.5}}
    if query_xy is not None:
        q = src_panel.to_canvas([query_xy])
        fig.add_trace(go.Scatter(x=q[:, 0], y=q[:, 1], mode="markers", name="query",
                                 marker={**star, "color": QUERY_COLOR},
                                 hovertemplate=f"query ({query_xy[0]:.0f}, {query_xy[1]:.0f})<extra></extra>"))  # fmt: skip
    if best_xy is not None:
        b = trg_panel.to_canvas([best_xy])
        fig.add_trace(go.Scatter(x=b[:, 0], y=b[:, 1], mode="markers", name="best match",
                                 marker={"size": 15, "symbol": "diamond", "color": BEST_MATCH_COLOR,
                                         "line": {"color": "white", "width": 2}},
                                 hovertemplate=f"best match ({best_xy[0]:.0f}, {best_xy[1]:.0f})<extra></extra>"))  # fmt: skip
    return _finish(fig, [src_panel, trg_panel], title, height_px, extra_right=80)


def pca_figure(
    src_rgb: np.ndarray,
    trg_rgb: np.ndarray,
    src_img: np.ndarray | None = None,
    trg_img: np.ndarray | None = None,
    *,
    src_extent: Sequence[float] | None = None,
    trg_extent: Sequence[float] | None = None,
    title: str | None = None,
    height_px: int = DEFAULT_HEIGHT_PX,
) -> go.Figure:
    """Joint-PCA feature colours (h x w x 3, values in [0, 1] or uint8) of source and target, side by side.

    With the images given, they form the top row and each PCA map is stretched under its image to
    the image's extent, or to the pixel box ``src_extent`` / ``trg_extent`` (x0, y0, x1, y1) the
    feature cells cover; without images, the maps are shown at their own aspect.
    """
    if src_img is not None and trg_img is not None:
        sizes = [_image_size(src_img), _image_size(trg_img)]
        top = layout_row(sizes)
        bottom_y0 = top[0].bottom + 2.5 * PANEL_GAP * top[0].height * top[0].scale_y
        bottom = [Panel(p.x0, bottom_y0, p.scale_x, p.scale_y, p.width, p.height) for p in top]
        panels = top + bottom
        fig = go.Figure()
        for img, panel, name in ((src_img, top[0], "source"), (trg_img, top[1], "target")):
            add_image(fig, img, panel, name)
            _panel_label(fig, panel, name)
    else:
        bottom = layout_row([_image_size(src_rgb), _image_size(trg_rgb)])
        panels = bottom
        fig = go.Figure()
    extents = (src_extent, trg_extent) if src_img is not None and trg_img is not None else (None, None)
    for rgb, panel, extent, name in zip((src_rgb, trg_rgb), bottom, extents, ("source features (PCA)", "target features (PCA)"), strict=True):
        add_image(fig, rgb, sub_panel(panel, extent), name)
        _panel_label(fig, panel, name, inside=src_img is not None and trg_img is not None)
    return _finish(fig, panels, title, height_px if src_img is None else int(height_px * 1.6))


def per_category_bars(
    df: pd.DataFrame,
    *,
    value: str = "pck",
    category: str = "category",
    encoder: str = "encoder",
    title: str | None = None,
    add_mean: bool = True,
    value_title: str = "PCK (share of keypoints matched)",
) -> go.Figure:
    """Grouped bars of PCK per category, one colour per encoder, plus the mean over categories.

    ``df`` has one row per (encoder, category) with the PCK as a fraction in [0, 1]. The "mean"
    group is the unweighted mean over the categories shown (each category counts once).
    """
    missing = [c for c in (value, category, encoder) if c not in df.columns]
    if missing:
        raise InputError(f"per-category results lack column(s) {', '.join(missing)}")
    data = df[[encoder, category, value]].dropna().copy()
    data[category] = data[category].astype(str)
    categories = sorted(data[category].unique())
    fig = go.Figure()
    for enc, rows in data.groupby(encoder, sort=True):
        per_cat = rows.groupby(category)[value].mean().reindex(categories)
        xs, ys = list(categories), list(per_cat.to_numpy())
        if add_mean:
            xs.append("mean")
            ys.append(float(np.nanmean(per_cat.to_numpy())))
        fig.add_trace(go.Bar(x=xs, y=ys, name=str(enc), hovertemplate=f"{enc}<br>%{{x}}: %{{y:.1%}}<extra></extra>"))
    fig.update_layout(
        barmode="group",
        title={"text": title or "", "x": 0.01, "xanchor": "left"},
        yaxis={"title": value_title, "tickformat": ".0%", "rangemode": "tozero"},
        xaxis={"title": "Category (mean: unweighted over categories)", "tickangle": -35},
        legend={"title": {"text": "Encoder"}},
        height=DEFAULT_HEIGHT_PX,
        width=max(600, 40 * len(categories) * max(1, len(fig.data)) // 2 + 300),
        margin={"l": 60, "r": 10, "t": 50, "b": 90},
        plot_bgcolor="white",
    )
    fig.update_yaxes(gridcolor="#e5e5e5")
    return fit_title(fig) if title else fig  # room for every line of a wrapped (``style.titled``) title
