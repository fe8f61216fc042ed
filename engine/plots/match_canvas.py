"""Canvas primitives of the match viewer figures: panels, image embedding, layout, framing, path helpers.

One canvas (a single x/y axis with equal scale and y pointing down) holds images side by side; image coordinates are
continuous pixels: (0, 0) is the top-left corner of the image and pixel ``i`` spans ``[i, i + 1)``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from engine.encoders.base import to_uint8_rgb
from engine.errors import InputError

CORRECT_COLOR = "#1a9850"
WRONG_COLOR = "#d73027"
QUERY_COLOR = "#00e5ff"
GT_RING_COLOR = "#ff2bd6"  # magenta: not in the Turbo colormap, visible on white legends too
KEYPOINT_PALETTE = (
    "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
    "#393b79", "#e7ba52", "#ad494a", "#a55194", "#6b6ecf", "#637939", "#843c39", "#3182bd",
)  # fmt: skip
PANEL_GAP = 0.04  # gap between panels, as a fraction of the display height
DEFAULT_HEIGHT_PX = 460


@dataclass(frozen=True)
class Panel:
    """Where one image sits on the canvas: offset (x0, y0) and display scale (canvas units per image pixel)."""

    x0: float
    y0: float
    scale_x: float
    scale_y: float
    width: float
    height: float

    def to_canvas(self, xy: np.ndarray) -> np.ndarray:
        """N x 2 image pixel coordinates -> N x 2 canvas coordinates."""
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        return np.column_stack([self.x0 + xy[:, 0] * self.scale_x, self.y0 + xy[:, 1] * self.scale_y])

    @property
    def right(self) -> float:
        return self.x0 + self.width * self.scale_x

    @property
    def bottom(self) -> float:
        return self.y0 + self.height * self.scale_y


JPEG_MIN_PIXELS = 128 * 128  # photos this large travel as JPEG (5-10x lighter); small feature maps stay PNG (exact)


def image_data_uri(image: np.ndarray, fmt: str | None = None) -> str:
    """An RGB image as a base64 data URI (far lighter in a figure than a pixel array); JPEG for large images."""
    arr = to_uint8_rgb(image)
    fmt = fmt or ("jpeg" if arr.shape[0] * arr.shape[1] >= JPEG_MIN_PIXELS else "png")
    buf = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    else:
        Image.fromarray(arr).save(buf, format="PNG")
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def add_image(fig: go.Figure, image: np.ndarray, panel: Panel, name: str, width: int | None = None) -> None:
    """Draw ``image`` so that it fills ``panel`` (an image coarser than the panel is stretched to cover it)."""
    img = to_uint8_rgb(image)
    h, w = img.shape[:2]
    dx = panel.width * panel.scale_x / w
    dy = panel.height * panel.scale_y / h
    fig.add_trace(
        go.Image(source=image_data_uri(img), x0=panel.x0 + dx / 2, y0=panel.y0 + dy / 2, dx=dx, dy=dy,
                 name=name, hoverinfo="skip")
    )  # fmt: skip


def layout_row(sizes: Sequence[tuple[int, int]], y0: float = 0.0, height: float | None = None) -> list[Panel]:
    """Panels for images of (height, width) ``sizes`` side by side, each scaled to a common display height."""
    if not sizes:
        raise InputError("no image to lay out")
    target_h = float(height if height is not None else sizes[0][0])
    gap = PANEL_GAP * target_h
    panels, x = [], 0.0
    for h, w in sizes:
        scale = target_h / h
        panels.append(Panel(x0=x, y0=y0, scale_x=scale, scale_y=scale, width=float(w), height=float(h)))
        x += w * scale + gap
    return panels


def _image_size(image: np.ndarray) -> tuple[int, int]:
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or min(arr.shape[:2]) < 1:
        raise InputError(f"expected an H x W x 3 image, got an array of shape {arr.shape}")
    return int(arr.shape[0]), int(arr.shape[1])


def _points(values: np.ndarray | Sequence, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputError(f"{name} must be an N x 2 array of (x, y) pixels, got shape {arr.shape}")
    return arr


def _finish(
    fig: go.Figure, panels: Sequence[Panel], title: str | None, height_px: int, extra_right: int = 0
) -> go.Figure:
    """Equal-scale, y-down axes framing the panels; the figure width follows the canvas aspect (no blank bands)."""
    left = min(p.x0 for p in panels)
    right = max(p.right for p in panels)
    top = min(p.y0 for p in panels)
    bottom = max(p.bottom for p in panels)
    aspect = (right - left) / max(bottom - top, 1e-9)
    has_legend = any(getattr(t, "showlegend", None) is not False and isinstance(t, go.Scatter) for t in fig.data)
    margin = {"l": 10, "r": 10 + extra_right, "t": 60 if title else 30, "b": 60 if has_legend else 10}
    plot_h = height_px - margin["t"] - margin["b"]
    width_px = int(min(max(aspect * plot_h + margin["l"] + margin["r"], 360), 1800))
    fig.update_xaxes(range=[left, right], visible=False, constrain="domain", automargin=False)
    fig.update_yaxes(range=[bottom, top], visible=False, scaleanchor="x", scaleratio=1, constrain="domain", automargin=False)
    fig.update_layout(
        title={"text": title or "", "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        height=height_px,
        width=width_px,
        margin=margin,
        plot_bgcolor="white",
        paper_bgcolor="white",
        legend={"orientation": "h", "yanchor": "top", "y": -0.02, "xanchor": "left", "x": 0},
        hovermode="closest",
        dragmode="pan",
    )
    return fig


def _panel_label(fig: go.Figure, panel: Panel, text: str, inside: bool = False) -> None:
    """The panel's name above it, or ``inside`` its top-left corner on a light box (a panel right under another:
    the gap between them shrinks with the figure, a label above it then sat on the upper panel)."""
    style = {"yanchor": "top", "bgcolor": "rgba(255,255,255,0.75)"} if inside else {"yanchor": "bottom"}
    fig.add_annotation(x=panel.x0, y=panel.y0, text=text, showarrow=False, xanchor="left",
                       font={"size": 12, "color": "#333"}, **style)  # fmt: skip


def _circle_path(centres: np.ndarray, radii: np.ndarray, steps: int = 41) -> tuple[list, list]:
    theta = np.linspace(0, 2 * np.pi, steps)
    xs: list = []
    ys: list = []
    for (cx, cy), r in zip(centres, radii, strict=True):
        xs += [*(cx + r * np.cos(theta)), None]
        ys += [*(cy + r * np.sin(theta)), None]
    return xs, ys


def _segments(a: np.ndarray, b: np.ndarray) -> tuple[list, list]:
    xs: list = []
    ys: list = []
    for (ax, ay), (bx, by) in zip(a, b, strict=True):
        xs += [ax, bx, None]
        ys += [ay, by, None]
    return xs, ys


def click_grid(height: int, width: int, cells: int = 24) -> np.ndarray:
    """Centres of a regular grid of about ``cells`` points along the longer side (clickable query points)."""
    step = max(height, width) / cells
    xs = np.arange(step / 2, width, step)
    ys = np.arange(step / 2, height, step)
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()])


def sub_panel(panel: Panel, extent: Sequence[float] | None) -> Panel:
    """The part of ``panel`` covering the pixel box ``extent`` = (x0, y0, x1, y1) of its image."""
    if extent is None:
        return panel
    x0, y0, x1, y1 = (float(v) for v in extent)
    return Panel(panel.x0 + x0 * panel.scale_x, panel.y0 + y0 * panel.scale_y, panel.scale_x, panel.scale_y,
                 x1 - x0, y1 - y0)  # fmt: skip
