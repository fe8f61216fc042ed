"""Shared look of every figure: encoder-family colours, the family table of known settings, layout defaults."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pandas as pd
import plotly.graph_objects as go

# Families of the settings in the bundled study (a table, not name matching); a study may override
# them with a ``family`` column in its settings table. Unknown settings fall in "other".
KNOWN_FAMILIES: dict[str, str] = {
    "CLIP336": "language-supervised",
    "CLIP224": "language-supervised",
    "OpenCLIP": "language-supervised",
    "SigLIP": "language-supervised",
    "SigLIP-B": "language-supervised",
    "SigLIP-L": "language-supervised",
    "SigLIP2-L": "language-supervised",
    "DINOv2": "self-supervised",
    "CLIP224+DINOv2": "combined",
    "CLIP336+DINOv2": "combined",
    "DiT": "diffusion",
    "SDXL": "diffusion",
    "SD3": "diffusion",
    "SD2.1": "diffusion",
    "SD1.5": "diffusion",
    "SDim": "diffusion",
}

FAMILY_COLORS: dict[str, str] = {
    "language-supervised": "#1f77b4",
    "self-supervised": "#2ca02c",
    "combined": "#9467bd",
    "diffusion": "#ff7f0e",
    "other": "#7f7f7f",
}

# One colour per law variant, used by every R² comparison.
VARIANT_COLORS: dict[str, str] = {
    "AC": "#d62728",
    "A": "#1f77b4",
    "C": "#2ca02c",
    "random": "#7f7f7f",
}

TEMPLATE = "plotly_white"
# Point labels stay readable on any background (contour fills included)
LABEL_FONT = {"size": 10, "color": "#222", "shadow": "0px 0px 3px white"}


def setting_families(settings: pd.DataFrame) -> pd.Series:
    """Family of each setting (indexed by setting name): the ``family`` column if given, else the known table."""
    names = settings["setting"].astype(str)
    given = settings["family"] if "family" in settings.columns else pd.Series([None] * len(settings), index=settings.index)
    families = [
        str(fam) if isinstance(fam, str) and fam.strip() else KNOWN_FAMILIES.get(name, "other")
        for name, fam in zip(names, given, strict=True)
    ]
    return pd.Series(families, index=names.values, name="family")


def family_color(family: str) -> str:
    return FAMILY_COLORS.get(family, FAMILY_COLORS["other"])


def by_family(frame: pd.DataFrame, families: pd.Series) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(family, rows)`` of ``frame`` (a ``setting`` column) per encoder family, in name order ('other' if unknown)."""
    fam = frame["setting"].map(families).fillna("other")
    for family in sorted(fam.unique()):
        yield family, frame[fam == family]


def family_marker(family: str, size: int, outline: float | None = 1.0, **extra: object) -> dict:
    """The marker of a family's points: its colour, ``size``, a white ``outline`` of that width (None: no outline)."""
    marker: dict = {"color": family_color(family), "size": size}
    if outline is not None:
        marker["line"] = {"width": outline, "color": "white"}
    return {**marker, **extra}


def finish(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = 480) -> go.Figure:
    """Apply the common template, title and axis labels."""
    fig.update_layout(
        template=TEMPLATE,
        title={"text": title, "x": 0.01, "xanchor": "left"},
        height=height,
        margin={"l": 60, "r": 20, "t": 60, "b": 55},
        legend={"title": None},
    )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


DETAIL_CHARS = 80  # a detail line of 12 px glyphs that fits a half-width figure (two figures side by side)


def titled(main: str, detail: str = "", chars: int = DETAIL_CHARS) -> str:
    """A figure title: the ``main`` line, then ``detail`` in a smaller font wrapped to lines that fit a half-width
    figure, or ``chars`` a line (a one-line title longer than the figure is cut off at its edge)."""
    lines = [f"<span style='font-size:12px'>{line}</span>" for line in textwrap.wrap(detail, chars)]
    return "<br>".join([main, *lines])


def fit_title(fig: go.Figure, extra: int = 0) -> go.Figure:
    """Room above the plot for every line of the figure's title, plus ``extra`` px (e.g. for panel titles)."""
    lines = fig.layout.title.text.count("<br>") + 1
    fig.update_layout(margin={"t": 40 + 20 * lines + extra})
    return fig


LEGEND_BELOW_MARGIN_PX = 145  # the x axis title and four rows of a legend (a half-width figure wraps it)


def legend_below(fig: go.Figure) -> go.Figure:
    """A horizontal legend at the bottom of the figure, under the x axis title: the plot keeps the figure's width (a
    right-hand legend takes a third of a half-width figure). Its room is a fixed bottom margin, so the plot area is
    the same at every width (Plotly would otherwise grow the margin as the legend wraps; labels placed for the
    plot area would then overlap)."""
    fig.update_layout(legend={"orientation": "h", "x": 0, "xref": "container", "y": 0, "yref": "container",
                              "yanchor": "bottom"}, margin={"b": LEGEND_BELOW_MARGIN_PX})  # fmt: skip
    return fig
