"""Viewer-side computations on one ``predict_pair`` result: click-a-point similarity, best match, PCA crops, PCK at any alpha.

Everything here reuses the evaluation's own pieces (``GridMap``, ``match_cells``, ``similarity_map``,
``feature_pca_rgb``, ``normalizer_length``), so what the viewer shows is what ``evaluate`` measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from engine.correspondence.matching import GridMap, MatchRule, match_cells, similarity_map
from engine.correspondence.pck import normalizer_length
from engine.correspondence.protocols import Protocol, get_protocol
from engine.correspondence.result_types import PairPrediction
from engine.errors import InputError

Extent = tuple[float, float, float, float]


def grid_extent(grid_map: GridMap, image_size: tuple[int, int]) -> tuple[slice, slice, Extent]:
    """Rows / columns of the feature grid whose cell centres lie inside the image, and the pixel box they cover.

    ``image_size`` is (w, h). Letterbox padding cells (centre outside ``[0, w] x [0, h]``) are dropped;
    the box is the true pixel span of the kept cells (half a cell beyond the outermost centres, so it may
    overhang the image edge by up to half a cell: clipping it would stretch the map).
    """
    w, h = (float(v) for v in image_size)
    rows, cols = grid_map.grid
    if rows < 1 or cols < 1:
        raise InputError(f"empty feature grid {grid_map.grid}")
    xs = grid_map.from_cell(np.column_stack([np.zeros(cols), np.arange(cols)]))[:, 0]
    ys = grid_map.from_cell(np.column_stack([np.arange(rows), np.zeros(rows)]))[:, 1]
    eps = 1e-6  # a centre exactly on the image edge counts as inside (float noise must not decide)
    keep_c = np.flatnonzero((xs >= -eps) & (xs <= w + eps))
    keep_r = np.flatnonzero((ys >= -eps) & (ys <= h + eps))
    if not len(keep_c) or not len(keep_r):
        return slice(0, rows), slice(0, cols), (0.0, 0.0, w, h)
    step_x = (xs[-1] - xs[0]) / (cols - 1) if cols > 1 else w
    step_y = (ys[-1] - ys[0]) / (rows - 1) if rows > 1 else h
    c0, c1, r0, r1 = int(keep_c[0]), int(keep_c[-1]), int(keep_r[0]), int(keep_r[-1])
    extent: Extent = (xs[c0] - step_x / 2, ys[r0] - step_y / 2, xs[c1] + step_x / 2, ys[r1] + step_y / 2)
    return slice(r0, r1 + 1), slice(c0, c1 + 1), extent


def _image_wh(image: np.ndarray) -> tuple[int, int]:
    return int(image.shape[1]), int(image.shape[0])


def query_similarity(result: PairPrediction, query_xy: Sequence[float], protocol: str | Protocol = "default") -> dict[str, Any]:
    """Similarity of every target cell to the source cell under ``query_xy`` (source pixels), and the best match.

    The best match goes through ``match_cells`` with the protocol's matching / argmax settings, exactly
    like a keypoint in ``evaluate``. Returns ``similarity`` (cropped to the target image), ``extent``
    (its pixel box in the target), ``best_xy`` (target pixels) and ``best_score``.
    """
    proto = get_protocol(protocol)
    query = np.asarray(query_xy, dtype=np.float64).reshape(2)
    src_w, src_h = _image_wh(result.src_image)
    if not (0 <= query[0] <= src_w and 0 <= query[1] <= src_h):
        raise InputError(f"query point ({query[0]:.0f}, {query[1]:.0f}) lies outside the {src_w}x{src_h} source image")
    src_map, trg_map = result.src_map, result.trg_map
    sim = similarity_map(result.src_features, result.trg_features, query, src_map)
    cell = torch.from_numpy(src_map.to_cell(query[None]))[None]
    upsample = max(1, round(trg_map.stride)) if proto.matching == "upsampled_map" else 1
    src_f = torch.from_numpy(np.asarray(result.src_features, dtype=np.float32))[None]
    trg_f = torch.from_numpy(np.asarray(result.trg_features, dtype=np.float32))[None]
    best_ij = match_cells(src_f, trg_f, cell, MatchRule.of(proto, upsample))
    best_xy = trg_map.from_cell(best_ij[0].numpy())[0]
    rows, cols, extent = grid_extent(trg_map, _image_wh(result.trg_image))
    return {
        "similarity": sim[rows, cols],
        "extent": extent,
        "best_xy": (float(best_xy[0]), float(best_xy[1])),
        "best_score": float(np.nanmax(sim)),
        "query_xy": (float(query[0]), float(query[1])),
    }


def pca_maps(result: PairPrediction) -> dict[str, Any]:
    """Joint 3-component PCA colours of the source and target features, over the cells inside each image only."""
    from engine.correspondence.viewer import feature_pca_rgb

    src_rows, src_cols, src_extent = grid_extent(result.src_map, _image_wh(result.src_image))
    trg_rows, trg_cols, trg_extent = grid_extent(result.trg_map, _image_wh(result.trg_image))
    src_rgb, trg_rgb = feature_pca_rgb(
        np.asarray(result.src_features)[:, src_rows, src_cols], np.asarray(result.trg_features)[:, trg_rows, trg_cols]
    )
    return {"src_rgb": src_rgb, "trg_rgb": trg_rgb, "src_extent": src_extent, "trg_extent": trg_extent}


def correct_at(
    result: PairPrediction, trg_bbox: Sequence[float], alpha: float, protocol: str | Protocol = "default"
) -> dict[str, Any]:
    """Per-keypoint correctness at any ``alpha`` with the protocol's normaliser and comparison.

    Returns ``correct`` (N bools, False where not visible), ``threshold_px`` (alpha x normaliser length,
    target pixels), ``error_px`` (N floats) and ``pck`` (over visible keypoints; None when there is none).
    """
    proto = get_protocol(protocol)
    if not 0 < float(alpha) < 1:
        raise InputError(f"alpha must be a fraction in (0, 1), got {alpha}")
    gt = np.asarray(result.gt_kps, dtype=np.float64).reshape(-1, 2)
    pred = np.asarray(result.pred_kps, dtype=np.float64).reshape(-1, 2)
    visible = np.asarray(result.visible, dtype=bool) & np.isfinite(gt).all(axis=1)
    w, h = _image_wh(result.trg_image)
    record = {"trg_bndbox": list(trg_bbox), "trg_imsize": [w, h]}
    threshold = float(alpha) * normalizer_length(record, proto.normalizer)
    error = np.linalg.norm(pred - gt, axis=1)
    error = np.where(np.isfinite(error), error, np.inf)
    hit = error <= threshold if proto.comparison == "<=" else error < threshold
    correct = hit & visible
    return {
        "correct": correct,
        "threshold_px": threshold,
        "error_px": error,
        "pck": float(correct[visible].mean()) if visible.any() else None,
    }
