"""Point labels that do not overlap: each label is moved around its point (with a leader line) to a free spot."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from engine.plots.style import LABEL_FONT

MAX_TEXT_LABELS = 30  # more points than this: hover only
CHAR_PX = 6.2  # mean glyph width of the 10 px label font
LINE_PX = 13
MARKER_PX = 7
RADII_PX = (0, 16, 26, 38, 52, 68, 86)
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
    y_range: tuple[float, float], width_px: float = 600, height_px: float = 340,
) -> list[tuple[float, float]]:
    """Pixel offsets (dx, dy; dy up) of each label from its point so that labels overlap neither each other nor
    the markers, on a plot area of ``width_px`` x ``height_px`` spanning the given data ranges."""
    sx = width_px / ((x_range[1] - x_range[0]) or 1.0)
    sy = height_px / ((y_range[1] - y_range[0]) or 1.0)
    px = (np.asarray(x, dtype=float) - x_range[0]) * sx
    py = (np.asarray(y, dtype=float) - y_range[0]) * sy
    markers = [(a - MARKER_PX, b - MARKER_PX, a + MARKER_PX, b + MARKER_PX) for a, b in zip(px, py, strict=True)]
    placed: list[tuple[float, float, float, float]] = []
    offsets: list[tuple[float, float]] = [(0.0, 0.0)] * len(px)
    # crowded points first: they have the fewest free spots
    crowd = [sum(math.hypot(px[i] - px[j], py[i] - py[j]) < 60 for j in range(len(px))) for i in range(len(px))]
    for i in sorted(range(len(px)), key=lambda k: -crowd[k]):
        best, best_cost = (0.0, LINE_PX), math.inf
        for r in RADII_PX[1:]:
            for ang in ANGLES:
                dx, dy = r * math.cos(ang), r * math.sin(ang)
                if r == RADII_PX[1]:
                    dy = math.copysign(max(abs(dy), LINE_PX), dy) if abs(dy) > 1e-9 else 0.0
                box = label_box(px[i] + dx, py[i] + dy, texts[i])
                cost = sum(_overlap(box, other) for other in placed) + sum(_overlap(box, m) for m in markers)
                outside = max(0.0, -box[0]) + max(0.0, box[2] - width_px) + max(0.0, -box[1]) + max(0.0, box[3] - height_px)
                cost += 50 * outside + 0.01 * r
                if cost < best_cost:
                    best, best_cost = (dx, dy), cost
            if best_cost < 1.0:
                break
        offsets[i] = best
        placed.append(label_box(px[i] + best[0], py[i] + best[1], texts[i]))
    return offsets


def label_annotations(
    x: Sequence[float], y: Sequence[float], texts: Sequence[str], x_range: tuple[float, float],
    y_range: tuple[float, float], width_px: float = 600, height_px: float = 340, xref: str = "x", yref: str = "y",
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


def padded_range(values: Sequence[float], pad: float = 0.06) -> tuple[float, float]:
    """Data range with a margin (the axis range the labels are placed in)."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    lo, hi = float(arr.min()), float(arr.max())
    span = (hi - lo) or 1.0
    return lo - pad * span, hi + pad * span
