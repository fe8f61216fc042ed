"""Point labels of the law and overview plots: placed without overlap, human names on axes and tables."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd

from engine.benchmarks import label
from engine.law import evaluate_study, fit_benchmark
from engine.plots import law as law_plots
from engine.plots import overview as overview_plots
from engine.plots.labels import CHAR_PX, LINE_PX, padded_range, place_labels
from engine.plots.style import setting_families
from engine.study import load_study


def _boxes(x, y, texts, offsets, x_range, y_range, width=600, height=340):
    """Label rectangles in pixels, computed here from the glyph size (independent of the placement search)."""
    out = []
    for xi, yi, t, (dx, dy) in zip(x, y, texts, offsets, strict=True):
        cx = (xi - x_range[0]) / (x_range[1] - x_range[0]) * width + dx
        cy = (yi - y_range[0]) / (y_range[1] - y_range[0]) * height + dy
        w = CHAR_PX * len(t) + 4
        out.append((cx - w / 2, cy - LINE_PX / 2, cx + w / 2, cy + LINE_PX / 2))
    return out


def _overlaps(boxes):
    return [(i, j) for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2)
            if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])]


def test_ac_plane_labels_of_the_bundled_study_do_not_overlap():
    settings = load_study("paper-v3").settings
    xr, yr = padded_range(settings["A"]), padded_range(settings["C"])
    texts = settings["setting"].tolist()
    offsets = place_labels(settings["A"], settings["C"], texts, xr, yr)
    assert _overlaps(_boxes(settings["A"], settings["C"], texts, offsets, xr, yr)) == []
    # without moving them (all centred above their point) the clustered CLIP / SigLIP labels would collide
    assert _overlaps(_boxes(settings["A"], settings["C"], texts, [(0, 16)] * len(texts), xr, yr))


def test_clustered_points_get_separate_labels():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 0.01, 12), rng.normal(0, 0.01, 12)
    texts = [f"setting-{i}" for i in range(12)]
    xr, yr = (-1.0, 1.0), (-1.0, 1.0)
    assert _overlaps(_boxes(x, y, texts, place_labels(x, y, texts, xr, yr), xr, yr)) == []


def test_law_and_overview_figures_label_every_setting_once():
    study = load_study("paper-v3")
    families = setting_families(study.settings)
    fig = overview_plots.ac_scatter(study.settings[["setting", "A", "C"]], families)
    assert sorted(a.text for a in fig.layout.annotations) == sorted(study.setting_names)
    assert all(t.mode == "markers" for t in fig.data)  # names in hover + annotations, no stacked text
    fit = fit_benchmark(study, "mme")
    fig = law_plots.predicted_vs_actual(fit.predictions, families, "MME", fit.r2, fit.loo_r2)
    assert sorted(a.text for a in fig.layout.annotations) == sorted(study.setting_names)
    assert "in-sample" in fig.layout.title.text and "out of sample" in fig.layout.title.text
    held = evaluate_study(study, "paper").heldout
    fig = law_plots.heldout_intervals(held[held["benchmark"] == "mme"], families, "MME", "paper", 0.8)
    bars = [t for t in fig.data if t.error_y and t.error_y.array is not None]
    assert sum(len(t.x) for t in bars) == 15
    assert "80% intervals cover" in fig.layout.title.text
    fig = law_plots.heldout_small_multiples(held, {"mme": "MME"}, families, "paper", 0.8)
    assert len(fig.layout.annotations) == 8 and fig.layout.annotations[1].text.startswith("MME<br>")
    drawn = [t for t in fig.data if t.error_y and t.error_y.array is not None]
    assert sum(len(t.x) for t in drawn) == len(held)


def test_tables_use_human_names():
    table = pd.DataFrame({"feature_set": ["ac_poly"], "loo_r2": [0.7], "null_r2": [0.3], "r2": [0.9]})
    out = law_plots.human_columns(table)
    assert "loo_r2" not in out.columns and "null_r2" not in out.columns
    assert out["features"].iloc[0] == "A and C, quadratic (the law)"
    fig = law_plots.r2_comparison(pd.DataFrame({"feature_set": ["ac_poly", "a_poly"], "variant": ["AC", "A"],
                                                "r2": [0.9, 0.5]}), 0.2, 0.3, "MME")
    assert "ac_poly" not in list(fig.data[0].x)


def test_score_page_ac_plane_labels_every_setting_and_the_candidate():
    from engine.pipeline import figures

    study = load_study("paper-v3")
    fig = figures.candidate_scatter(study.settings, "cand", -1.95, 18.0, "demo")
    texts = [a.text for a in fig.layout.annotations]
    assert sorted(texts) == sorted([*study.setting_names, "cand [demo-scale]"])


def _lines(text: str) -> list[str]:
    return re.sub(r"<span[^>]*>|</span>", "", text).split("<br>")


def test_small_multiple_titles_fit_their_panels():
    """Four panels a row share the width: each panel title line stays short enough not to run into its neighbour
    (the one-line titles 'MMBench (en) (R² in-sample 0.95)' overlapped), the figure title fits the width."""
    study = load_study("paper-v3")
    families = setting_families(study.settings)
    labels = {b: label(b) for b in study.benchmarks}
    held = evaluate_study(study, "paper").heldout
    panels = [(labels[b], fit_benchmark(study, b).predictions, fit_benchmark(study, b).r2) for b in study.benchmarks]
    for fig in (law_plots.heldout_small_multiples(held, labels, families, "paper", 0.8),
                law_plots.small_multiples(panels, families)):
        titles = [a.text for a in fig.layout.annotations]
        assert len(titles) == 8
        assert max(len(line) for t in titles for line in _lines(t)) <= 26, titles
        assert max(len(line) for line in _lines(fig.layout.title.text)) <= 110, fig.layout.title.text
        assert fig.layout.margin.t >= 100  # room for two title lines above two-line panel titles


def test_held_out_legend_markers_are_circles_whatever_the_first_point():
    """The legend shows each family once as a circle; 'x' marks only points outside their interval."""
    study = load_study("paper-v3")
    held = evaluate_study(study, "paper").heldout
    fig = law_plots.heldout_small_multiples(held, {}, setting_families(study.settings), "paper", 0.8)
    legend = [t for t in fig.data if t.showlegend is not False and t.name and t.name in set(setting_families(study.settings))]
    assert sorted(t.name for t in legend) == sorted(set(setting_families(study.settings)))
    assert all(t.marker.symbol in (None, "circle") for t in legend)
    outside = int((~held["inside"]).sum())
    assert sum(list(t.marker.symbol).count("x") for t in fig.data if isinstance(t.marker.symbol, tuple)) == outside


def test_overview_figures_side_by_side_keep_their_width_and_whole_titles():
    """The overview shows its two figures in half-width columns: a right-hand legend squeezed the A-C plane, and the
    one-line bar title ran past the figure's edge ('... vs random featur')."""
    study = load_study("paper-v3")
    from engine.law import fit_study
    from engine.plots import tables

    bars = overview_plots.r2_by_benchmark(tables.r2_by_benchmark(fit_study(study)))
    plane = overview_plots.ac_scatter(study.settings[["setting", "A", "C"]], setting_families(study.settings))
    for fig in (bars, plane):
        assert fig.layout.legend.orientation == "h"
        assert max(len(line) for line in _lines(fig.layout.title.text)) <= 60, fig.layout.title.text
    assert "in-sample" in _lines(bars.layout.title.text)[0]


def test_half_width_law_figures_show_their_whole_title():
    """The law page draws predicted-vs-actual and the fitted surface side by side: their one-line titles were cut
    at the figure's edge, hiding the 'in-sample' / 'out of sample' words and the R² values."""
    from engine.plots import tables

    study = load_study("paper-v3")
    families = setting_families(study.settings)
    fit = fit_benchmark(study, "seed_image")
    held = evaluate_study(study, "multitask").heldout
    a_grid, c_grid, z, points = tables.surface(fit)
    figures = [
        law_plots.predicted_vs_actual(fit.predictions, families, label("seed_image"), fit.r2, fit.loo_r2, " %"),
        law_plots.heldout_intervals(held[held["benchmark"] == "seed_image"], families, label("seed_image"),
                                    "multitask", 0.8, " %"),
        law_plots.surface_contour(a_grid, c_grid, z, points, families, label("seed_image"), " %"),
    ]
    for fig in figures:
        lines = _lines(fig.layout.title.text)
        assert len(lines[0]) <= 60 and all(len(line) <= 80 for line in lines[1:]), lines
        assert fig.layout.margin.t >= 40 + 20 * len(lines)
        assert fig.layout.legend.orientation == "h"
    whole = " ".join(_lines(figures[0].layout.title.text))
    assert f"R² in-sample {fit.r2:.3f}, out of sample {fit.loo_r2:.3f}" in whole
    assert "in-sample" in " ".join(_lines(figures[2].layout.title.text))


def _drawn_overlaps(fig, figure_width, reserved=0.0):
    """Pairs of labels that overlap as the browser draws ``fig`` at ``figure_width`` px: the plot area from the
    figure's own height and margins, each label from its annotation (point + pixel offset), glyph-sized boxes."""
    lay = fig.layout
    height = lay.height - lay.margin.t - lay.margin.b
    width = figure_width - lay.margin.l - lay.margin.r - reserved
    xr, yr = lay.xaxis.range, lay.yaxis.range
    boxes = []
    for a in lay.annotations:
        cx = (a.x - xr[0]) / (xr[1] - xr[0]) * width + a.ax
        cy = (a.y - yr[0]) / (yr[1] - yr[0]) * height - a.ay  # plotly's ay points down
        half = (CHAR_PX * len(a.text) + 4) / 2
        boxes.append((a.text, (cx - half, cy - LINE_PX / 2, cx + half, cy + LINE_PX / 2)))
    return [(s, t) for (s, a), (t, b) in itertools.combinations(boxes, 2)
            if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])]


def test_labels_do_not_overlap_in_the_plot_area_the_figure_really_has_at_any_column_width():
    # the placement used to assume a 600 x 340 px plot area whatever the figure: on the A-C plane (300 px high under
    # its legend) 'CLIP336+DINOv2' covered 'SigLIP2-L' at every width, and the held-out plot had 'SD3' on 'SD2.1'
    from engine.pipeline.figures import candidate_scatter

    study = load_study("paper-v3")
    families = setting_families(study.settings)
    held = evaluate_study(study, "paper").heldout
    figures = [("A-C plane", overview_plots.ac_scatter(study.settings[["setting", "A", "C"]], families), 0.0)]
    for bench in study.benchmarks:
        fit = fit_benchmark(study, bench)
        figures.append((f"{bench} fit", law_plots.predicted_vs_actual(fit.predictions, families, bench, fit.r2,
                                                                       fit.loo_r2), 0.0))  # fmt: skip
        figures.append((f"{bench} held out", law_plots.heldout_intervals(held[held["benchmark"] == bench], families,
                                                                          bench, "paper", 0.8), 0.0))  # fmt: skip
    fit = fit_benchmark(study, "mme")
    grid = np.linspace(0, 1, 5)
    points = pd.DataFrame({"setting": study.setting_names, "A_norm": np.linspace(0, 1, 15) ** 2,
                           "C_norm": np.linspace(0, 1, 15)[::-1], "score": 0.0})  # fmt: skip
    contour = law_plots.surface_contour(grid, grid, np.zeros((5, 5)), points, families, "MME")
    figures.append(("surface", contour, 100.0))  # its colour bar takes ~100 px right of the plot
    others = study.settings[["setting", "A", "C"]]
    figures.append(("candidate", candidate_scatter(others, "new", float(others["A"].median()),
                                                   float(others["C"].median()), "demo"), 0.0))  # fmt: skip
    for name, fig, reserved in figures:
        assert len(fig.layout.annotations) >= 15, name
        for width in (480, 560, 640, 720, 900, 1200):
            assert _drawn_overlaps(fig, width, reserved) == [], (name, width)
