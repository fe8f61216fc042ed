"""Viewer computations agree with the evaluation: click-a-point best match, PCK at any alpha, grid extents."""

from __future__ import annotations

import numpy as np
import pytest

from engine.correspondence import open_dataset
from engine.correspondence.matching import make_grid_map
from engine.correspondence.viewer import predict_pair
from engine.correspondence.viewer_query import correct_at, grid_extent, pca_maps, query_similarity
from engine.encoders.base import Preprocessing
from engine.errors import InputError

ENCODER = "pixels-8"


@pytest.fixture(scope="module")
def pair_and_result():
    dataset = open_dataset("builtin")
    pair = next(p for p in dataset.pairs("test") if p.pair_id == "chelsea:scale075")
    return pair, predict_pair(ENCODER, dataset, pair.pair_id, "default")


@pytest.mark.parametrize("protocol", ["default", "paper-compat"])
def test_clicking_a_keypoint_gives_the_evaluated_prediction(pair_and_result, protocol):
    pair, _ = pair_and_result
    result = predict_pair(ENCODER, open_dataset("builtin"), pair.pair_id, protocol)
    for k in np.flatnonzero(result.visible)[:6]:
        query = query_similarity(result, result.src_kps[k], protocol)
        assert query["best_xy"] == pytest.approx(tuple(result.pred_kps[k]), abs=1e-2)
        assert query["similarity"].ndim == 2 and query["best_score"] <= 1.0 + 1e-5


def test_query_outside_the_source_is_an_input_error(pair_and_result):
    _, result = pair_and_result
    with pytest.raises(InputError, match="outside"):
        query_similarity(result, (-5.0, 10.0))


def test_correct_at_matches_the_protocol_alphas(pair_and_result):
    pair, result = pair_and_result
    for alpha_key, flags in result.correct.items():
        scored = correct_at(result, pair.trg_bbox, float(alpha_key))
        assert scored["correct"].tolist() == flags
        assert scored["pck"] == pytest.approx(result.pck[alpha_key])
    bbox = pair.trg_bbox
    assert correct_at(result, bbox, 0.2)["threshold_px"] == pytest.approx(0.2 * max(bbox[2] - bbox[0], bbox[3] - bbox[1]))
    loose, tight = correct_at(result, bbox, 0.5)["correct"], correct_at(result, bbox, 0.01)["correct"]
    assert (loose >= tight).all()
    with pytest.raises(InputError, match="alpha"):
        correct_at(result, bbox, 1.5)


def test_grid_extent_drops_letterbox_padding():
    pre = Preprocessing((224, 224), "letterbox")
    grid_map = make_grid_map((200, 100), pre, (14, 14), 16, 16)  # a 2:1 image: rows above/below are padding
    rows, cols, extent = grid_extent(grid_map, (200, 100))
    assert (cols.start, cols.stop) == (0, 14)
    # 224 x 112 content at offset 56: cell centres (8 + 16 i - 56) / 1.12 in [0, 100] for i = 3 .. 10
    assert (rows.start, rows.stop) == (3, 11)
    cell = 16 / 1.12  # one cell in original pixels
    assert extent == pytest.approx((0, -cell / 2, 200, 100 + cell / 2))
    stretch = make_grid_map((200, 100), Preprocessing((224, 224), "stretch"), (14, 14), 16, 16)
    assert grid_extent(stretch, (200, 100))[2] == pytest.approx((0, 0, 200, 100))


def test_pca_maps_are_rgb_over_the_image_cells(pair_and_result):
    _, result = pair_and_result
    maps = pca_maps(result)
    assert maps["src_rgb"].dtype == np.uint8 and maps["src_rgb"].shape[-1] == 3
    assert maps["src_rgb"].shape[:2] == result.src_features.shape[1:]
    assert maps["trg_extent"] == pytest.approx((0, 0, 144, 96))
