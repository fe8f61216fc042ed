"""Point labels that do not overlap: each label is moved around its point (with a leader line) to a free spot."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from engine.plots.style import LABEL_FONT

MAX_TEXT_LABELS = 30  # more points than this: hover only
CHAR_PX = 6.2  # mean glyph width of the 10 px label font
LINE_PX = 13
MARKER_PX = 7
LABEL_ON_LABEL = 4  # text over text is unreadable; text over a marker (on a light background) is not
RADII_PX = (0, 16, 26, 38, 52, 68, 86, 108, 132)
ANGLES = np.deg2rad([90, 270, 0, 180, 45, 135, 315, 225, 68, 112, 248, 292, 22, 158, 202, 338])


def label_box(px: float, py: float, text: str) -> tuple[float, float, float, float]:
    """Pixel box (x0, y0, x1, y1) of a label centred at (px, py)."""
    w, h = CHAR_PX * len(text) + 4, LINE_PX
    return px - w / 2, py - h / 2, px + w / 2, py + h / 2


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    dx = min(a[2], b[2]) - max(a[0], b[0])
    dy = min(a[3], b[3]) - max(a[1], b[1])
    return max(dx, 0.0) * max(dy, 0.0)


def place_labels(
    x: Sequence[float], y: Sequence[float], texts: Sequence[str], x_range: tuple[float, float],
    y_range: tuple[float, float], width_px: float | Sequence[float] = 600, height_px: float = 340,
) -> list[tuple[float, float]]:
    """Pixel offsets (dx, dy; dy up) of each label from its point so that labels overlap neither each other nor
    the markers, on a plot area of ``width_px`` x ``height_px`` spanning the given data ranges; several widths: the
    offsets suit each of them (a responsive figure takes its column's width, which the server does not know)."""
    widths = [float(w) for w in (width_px if isinstance(width_px, Sequence) else [width_px])]
    sy = height_px / ((y_range[1] - y_range[0]) or 1.0)
    py = (np.asarray(y, dtype=float) - y_range[0]) * sy
    pxs = [(np.asarray(x, dtype=float) - x_range[0]) * (w / ((x_range[1] - x_range[0]) or 1.0)) for w in widths]
    markers = [[(a - MARKER_PX, b - MARKER_PX, a + MARKER_PX, b + MARKER_PX) for a, b in zip(px, py, strict=True)]
               for px in pxs]  # fmt: skip
    placed: list[list[tuple[float, float, float, float]]] = [[] for _ in widths]
    offsets: list[tuple[float, float]] = [(0.0, 0.0)] * len(py)
    # crowded points first (at the narrowest width): they have the fewest free spots
    narrow = pxs[int(np.argmin(widths))]
    crowd = [sum(math.hypot(narrow[i] - narrow[j], py[i] - py[j]) < 60 for j in range(len(py))) for i in range(len(py))]
    for i in sorted(range(len(py)), key=lambda k: -crowd[k]):
        best, best_cost = (0.0, LINE_PX), math.inf
        for r in RADII_PX[1:]:
            for ang in ANGLES:
                dx, dy = r * math.cos(ang), r * math.sin(ang)
                if r == RADII_PX[1]:
                    dy = math.copysign(max(abs(dy), LINE_PX), dy) if abs(dy) > 1e-9 else 0.0
                cost = 0.01 * r
                for w, px, marks, done in zip(widths, pxs, markers, placed, strict=True):
                    box = label_box(px[i] + dx, py[i] + dy, texts[i])
                    cost += LABEL_ON_LABEL * sum(_overlap(box, other) for other in done) + sum(_overlap(box, m) for m in marks)
                    cost += 50 * (max(0.0, -box[0]) + max(0.0, box[2] - w) + max(0.0, -box[1]) + max(0.0, box[3] - height_px))
                if cost < best_cost:
                    best, best_cost = (dx, dy), cost
            if best_cost < 1.0:
                break
        offsets[i] = best
        for px, done in zip(pxs, placed, strict=True):
            done.append(label_box(px[i] + best[0], py[i] + best[1], texts[i]))
    return offsets


def label_annotations(
    x: Sequence[float], y: Sequence[float], texts: Sequence[str], x_range: tuple[float, float],
    y_range: tuple[float, float], width_px: float | Sequence[float] = 600, height_px: float = 340, xref: str = "x",
    yref: str = "y",
) -> list[dict]:
    """Plotly annotations labelling each point at a free spot (a thin leader line when moved away); none when
    there are more than ``MAX_TEXT_LABELS`` points (hover carries the names then)."""
    if len(texts) > MAX_TEXT_LABELS:
        return []
    offsets = place_labels(x, y, texts, x_range, y_range, width_px, height_px)
    out = []
    for xi, yi, text, (dx, dy) in zip(x, y, texts, offsets, strict=True):
        far = math.hypot(dx, dy) > RADII_PX[1] + 1
        out.append({"x": xi, "y": yi, "text": str(text), "xref": xref, "yref": yref, "ax": dx, "ay": -dy,
                    "axref": "pixel", "ayref": "pixel", "showarrow": True, "arrowhead": 0, "arrowwidth": 0.6,
                    "arrowcolor": "#888" if far else "rgba(0,0,0,0)", "standoff": 4 if far else 0,
                    "font": {k: v for k, v in LABEL_FONT.items() if k != "shadow"}, "bgcolor": "rgba(255,255,255,0.6)"})
    return out


FIGURE_WIDTHS_PX = (480, 640, 900, 1200)  # a figure in a half or three-fifths column of the wide layout, small to large


def label_points(
    fig: go.Figure, x: Sequence[float], y: Sequence[float], texts: Sequence[str], x_range: tuple[float, float],
    y_range: tuple[float, float], figure_widths_px: Sequence[float] = FIGURE_WIDTHS_PX,
) -> go.Figure:
    """Label each point of a finished figure (height and margins set) at a free spot of its real plot area, for
    each of the figure widths it may be drawn at."""
    margin = fig.layout.margin
    height = (fig.layout.height or 450) - (margin.t or 0) - (margin.b or 0)
    widths = [w - (margin.l or 0) - (margin.r or 0) for w in figure_widths_px]
    return fig.update_layout(annotations=label_annotations(x, y, texts, x_range, y_range, widths, height))


def padded_range(values: Sequence[float], pad: float = 0.06) -> tuple[float, float]:
    """Data range with a margin (the axis range the labels are placed in)."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    lo, hi = float(arr.min()), float(arr.max())
    span = (hi - lo) or 1.0
    return lo - pad * span, hi + pad * span
