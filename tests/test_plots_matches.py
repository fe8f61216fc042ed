"""Figure builders of the keypoint-match viewer: traces, geometry and colours on small synthetic inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from engine.errors import InputError
from engine.plots import matches as pm

TEST_OUTPUT = Path(__file__).resolve().parent.parent / "test-output"


def _images() -> tuple[np.ndarray, np.ndarray]:
    src = np.zeros((60, 80, 3), np.uint8)
    src[..., 0] = np.linspace(0, 255, 80, dtype=np.uint8)[None]
    trg = np.zeros((120, 50, 3), np.uint8)
    trg[..., 1] = 200
    return src, trg


def _by_name(fig: go.Figure, prefix: str) -> go.Scatter:
    hits = [t for t in fig.data if (t.name or "").startswith(prefix)]
    assert len(hits) == 1, [t.name for t in fig.data]
    return hits[0]


def _pair_inputs():
    src_kps = np.array([[10.0, 10.0], [40.0, 30.0], [70.0, 50.0], [5.0, 5.0]])
    gt = np.array([[10.0, 20.0], [25.0, 60.0], [40.0, 100.0], [1.0, 1.0]])
    pred = gt + np.array([[2.0, 0.0], [20.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    visible = np.array([True, True, True, False])
    correct = np.linalg.norm(pred - gt, axis=1) <= 6.0
    return src_kps, gt, pred, visible, correct


def test_pair_matches_geometry_colours_and_pck():
    src, trg = _images()
    src_kps, gt, pred, visible, correct = _pair_inputs()
    fig = pm.pair_matches_figure(src, trg, src_kps, gt, pred, visible, correct, threshold_px=6.0, alpha=0.1)

    images = [t for t in fig.data if isinstance(t, go.Image)]
    assert len(images) == 2
    # target (120 px high) is shown at the source height (60): half scale, same factor on both axes
    assert images[1].dx == pytest.approx(0.5) and images[1].dy == pytest.approx(0.5)
    assert images[0].dx == pytest.approx(1.0)

    src_trace = _by_name(fig, "source keypoints")
    assert list(src_trace.x) == [10.0, 40.0, 70.0]  # invisible keypoint dropped, source at scale 1
    gt_trace = _by_name(fig, "ground truth")
    trg_x0 = 80 + pm.PANEL_GAP * 60
    assert np.allclose(gt_trace.x, trg_x0 + gt[:3, 0] * 0.5)
    assert np.allclose(gt_trace.y, gt[:3, 1] * 0.5)

    pred_trace = _by_name(fig, "prediction")
    assert list(pred_trace.marker.color) == [pm.CORRECT_COLOR, pm.WRONG_COLOR, pm.CORRECT_COLOR]
    ok_lines = _by_name(fig, "correct match")
    bad_lines = _by_name(fig, "wrong match")
    assert ok_lines.line.color == pm.CORRECT_COLOR and bad_lines.line.color == pm.WRONG_COLOR
    assert ok_lines.name == "correct match (2)" and bad_lines.name == "wrong match (1)"
    # each line goes from the source keypoint to the prediction on the target panel
    assert bad_lines.x[0] == 40.0 and bad_lines.x[1] == pytest.approx(trg_x0 + pred[1, 0] * 0.5)

    circles = _by_name(fig, "α=0.1 threshold")
    assert circles.visible == "legendonly"
    xs = np.array([v for v in circles.x[:41]], dtype=float)
    assert xs.max() - xs.min() == pytest.approx(2 * 6.0 * 0.5, rel=1e-3)
    assert "2 / 3 correct = 66.7 %" in fig.layout.title.text
    assert "PCK@0.1" in fig.layout.title.text


def test_pair_matches_show_threshold_and_no_visible():
    src, trg = _images()
    src_kps, gt, pred, _visible, correct = _pair_inputs()
    fig = pm.pair_matches_figure(src, trg, src_kps, gt, pred, np.ones(4, bool), correct, threshold_px=np.full(4, 3.0),
                                 show_threshold=True)  # fmt: skip
    assert _by_name(fig, "α threshold").visible is True
    none = pm.pair_matches_figure(src, trg, src_kps, gt, pred, np.zeros(4, bool), correct)
    assert "no visible keypoint" in none.layout.title.text
    assert len(_by_name(none, "source keypoints").x) == 0


def test_pair_matches_rejects_mismatched_lengths():
    src, trg = _images()
    src_kps, gt, pred, visible, correct = _pair_inputs()
    with pytest.raises(InputError, match="disagree"):
        pm.pair_matches_figure(src, trg, src_kps, gt[:2], pred, visible, correct)
    with pytest.raises(InputError, match="N x 2"):
        pm.pair_matches_figure(src, trg, src_kps[:, :1], gt, pred, visible, correct)


def test_pck_summary():
    assert pm.pck_summary(np.array([1, 0, 1], bool), np.array([1, 1, 0], bool)) == {"correct": 1, "total": 2, "pck": 0.5}
    assert np.isnan(pm.pck_summary(np.zeros(2, bool), np.zeros(2, bool))["pck"])


def test_similarity_figure_heatmap_covers_target_and_grid_is_clickable():
    src, trg = _images()
    sim = np.arange(12, dtype=float).reshape(4, 3)
    fig = pm.similarity_figure(src, trg, sim, (40, 30), (25, 60))
    heat = next(t for t in fig.data if isinstance(t, go.Heatmap))
    trg_x0 = 80 + pm.PANEL_GAP * 60
    # 3 columns over 50 px at scale 0.5: cell width 8.33 canvas units, first centre half a cell in
    assert heat.dx == pytest.approx(50 / 3 * 0.5)
    assert heat.x0 == pytest.approx(trg_x0 + heat.dx / 2)
    assert heat.dy == pytest.approx(120 / 4 * 0.5)
    assert heat.zmin == 0 and heat.zmax == 11
    grid = _by_name(fig, "click a source point")
    assert np.allclose(np.asarray(grid.customdata), np.column_stack([grid.x, grid.y]))  # source at scale 1
    assert np.asarray(grid.customdata)[:, 0].max() < 80 and np.asarray(grid.customdata)[:, 1].max() < 60
    best = _by_name(fig, "best match")
    assert best.x[0] == pytest.approx(trg_x0 + 12.5) and best.y[0] == pytest.approx(30)
    assert _by_name(fig, "query").x[0] == 40
    assert not [t for t in fig.data if t.name == "ground truth"]
    with_gt = pm.similarity_figure(src, trg, sim, (40, 30), (25, 60), gt_xy=(20, 40))
    ring = _by_name(with_gt, "ground truth")
    assert ring.x[0] == pytest.approx(trg_x0 + 10) and ring.y[0] == pytest.approx(20)


def test_similarity_figure_extent_and_bad_map():
    src, trg = _images()
    fig = pm.similarity_figure(src, trg, np.ones((2, 2)), None, extent=(0, 20, 50, 100))
    heat = next(t for t in fig.data if isinstance(t, go.Heatmap))
    assert heat.y0 == pytest.approx((20 + 20) * 0.5)
    assert not [t for t in fig.data if t.name == "query"]
    with pytest.raises(InputError, match="h x w"):
        pm.similarity_figure(src, trg, np.ones(5), None)


def test_pca_figure_stretches_maps_under_images():
    src, trg = _images()
    rng = np.random.default_rng(0)
    fig = pm.pca_figure(rng.random((6, 8, 3)), rng.random((12, 5, 3)), src, trg)
    images = [t for t in fig.data if isinstance(t, go.Image)]
    assert [t.name for t in images] == ["source", "target", "source features (PCA)", "target features (PCA)"]
    assert images[2].dx == pytest.approx(10.0) and images[2].dy == pytest.approx(10.0)  # 8 cells over 80 px
    assert images[3].dx == pytest.approx(5.0) and images[3].dy == pytest.approx(5.0)  # 5 cells over 50 px at 0.5
    assert images[2].y0 > 60  # second row
    # the second row's names sit inside their maps (above them, the names overlapped the images of the first row
    # once two encoders side by side shrank the figure)
    labels = {a.text: a for a in fig.layout.annotations}
    assert labels["source"].yanchor == "bottom" and labels["source"].y == pytest.approx(images[0].y0, abs=1)
    for name, image in (("source features (PCA)", images[2]), ("target features (PCA)", images[3])):
        assert labels[name].yanchor == "top" and labels[name].bgcolor
        assert labels[name].y == pytest.approx(image.y0 - image.dy / 2)  # the map's top edge (y0: a pixel centre)
    alone = pm.pca_figure(rng.random((6, 8, 3)), rng.random((12, 5, 3)))
    assert len([t for t in alone.data if isinstance(t, go.Image)]) == 2


def test_per_category_bars_groups_and_mean():
    df = pd.DataFrame({
        "encoder": ["a", "a", "b", "b"],
        "category": ["dog", "cat", "dog", "cat"],
        "pck": [0.2, 0.4, 0.6, 1.0],
    })  # fmt: skip
    fig = pm.per_category_bars(df)
    assert [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[0].x) == ["cat", "dog", "mean"]
    assert list(fig.data[1].y) == pytest.approx([1.0, 0.6, 0.8])
    assert fig.layout.barmode == "group"
    with pytest.raises(InputError, match="pck"):
        pm.per_category_bars(df.drop(columns="pck"))
    # a wrapped title (main line, then the detail) gets room for each of its lines above the plot
    titled = pm.per_category_bars(df, title="PCK@0.1 per category<br><span>builtin, protocol default</span>")
    assert titled.layout.margin.t >= 40 + 20 * 2 > fig.layout.margin.t


def test_kaleido_png_export_of_a_match_figure():
    src, trg = _images()
    src_kps, gt, pred, visible, correct = _pair_inputs()
    fig = pm.pair_matches_figure(src, trg, src_kps, gt, pred, visible, correct, threshold_px=6.0, show_threshold=True)
    from engine.export import Provenance, figure_to_bytes, read_provenance

    png = figure_to_bytes(fig, "png", Provenance(study="viewer-test", study_hash="0"), width=700, height=400)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert read_provenance(png, "png")["study"] == "viewer-test"
    TEST_OUTPUT.mkdir(exist_ok=True)
    (TEST_OUTPUT / "plots_matches_pair.png").write_bytes(png)


def test_image_data_uri_is_jpeg_for_photos_png_for_small_maps():
    photo = np.zeros((200, 300, 3), np.uint8)
    assert pm.image_data_uri(photo).startswith("data:image/jpeg;base64,")
    assert pm.image_data_uri(photo[:10, :10]).startswith("data:image/png;base64,")
    assert pm.image_data_uri(photo, fmt="png").startswith("data:image/png;base64,")
