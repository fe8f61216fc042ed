"""PCK and protocol knobs on hand-computed fixtures."""

from __future__ import annotations

import pytest

from engine.correspondence.pck import pck_from_predictions
from engine.correspondence.protocols import Protocol, alpha_key, get_protocol, list_protocols
from engine.errors import InputError


def rec(pred, gt, visible=None, box=(0, 0, 100, 50), size=(200, 100), category="a"):
    out = {"category": category, "pred_kps": pred, "gt_kps": gt, "trg_bndbox": list(box), "trg_imsize": list(size)}
    if visible is not None:
        out["visible"] = visible
    return out


def test_comparison_at_the_boundary():
    # bbox longest side 100 -> threshold at alpha 0.1 is exactly 10 px; the error is exactly 10 px.
    r = [rec([[10.0, 0.0]], [[0.0, 0.0]])]
    assert pck_from_predictions(r, [0.1], "bbox", "<=")["per_image"]["0.1"] == 1.0
    assert pck_from_predictions(r, [0.1], "bbox", "<")["per_image"]["0.1"] == 0.0


def test_normalizer_bbox_vs_image():
    # error 15 px: bbox norm 100 -> 0.1*100 = 10 (wrong); image norm max(200, 100) = 200 -> 20 (right).
    r = [rec([[15.0, 0.0]], [[0.0, 0.0]])]
    assert pck_from_predictions(r, [0.1], "bbox")["per_image"]["0.1"] == 0.0
    assert pck_from_predictions(r, [0.1], "image")["per_image"]["0.1"] == 1.0


def test_per_image_vs_per_point_and_visibility():
    # pair 1: 1 of 2 visible points correct (third point invisible and wildly wrong); pair 2: 4 of 4 correct.
    p1 = rec([[0, 0], [50, 0], [999, 999]], [[0, 0], [0, 0], [0, 0]], visible=[True, True, False], category="x")
    p2 = rec([[1, 1]] * 4, [[0, 0]] * 4, category="y")
    out = pck_from_predictions([p1, p2], [0.05, 0.1], "bbox", "<=")
    assert out["per_image"]["0.1"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["per_point"]["0.1"] == pytest.approx(5 / 6)
    assert out["per_category"] == {"x": {"0.05": 0.5, "0.1": 0.5}, "y": {"0.05": 1.0, "0.1": 1.0}}
    assert out["pairs"] == 2 and out["points"] == 6
    per_point_primary = pck_from_predictions([p1, p2], [0.1], primary="per_point")
    assert per_point_primary["per_category"]["x"]["0.1"] == 0.5


def test_pairs_without_visible_keypoints_are_skipped():
    empty = rec([[0, 0]], [[0, 0]], visible=[False])
    good = rec([[0, 0]], [[0, 0]])
    out = pck_from_predictions([empty, good], [0.1])
    assert out["pairs"] == 1 and out["skipped_pairs"] == 1 and out["per_image"]["0.1"] == 1.0
    none = pck_from_predictions([empty], [0.1])
    assert none["per_image"]["0.1"] is None


def test_alphas_are_independent_thresholds():
    # errors 3, 7, 12 with norm 100: alpha .05 -> 1/3, .1 -> 2/3, .15 -> 3/3
    r = [rec([[3, 0], [7, 0], [12, 0]], [[0, 0]] * 3)]
    out = pck_from_predictions(r, (0.05, 0.10, 0.15))["per_image"]
    assert out == {"0.05": pytest.approx(1 / 3), "0.1": pytest.approx(2 / 3), "0.15": 1.0}


@pytest.mark.parametrize(
    "bad",
    [
        {"category": "a", "pred_kps": [[0, 0]], "gt_kps": [[0, 0], [1, 1]], "trg_bndbox": [0, 0, 1, 1]},
        {"category": "a", "pred_kps": [[0, 0]], "gt_kps": [[0, 0]]},
        {"category": "a", "pred_kps": "x", "gt_kps": [[0, 0]], "trg_bndbox": [0, 0, 1, 1]},
        {"category": "a", "pred_kps": [[0, 0]], "gt_kps": [[0, 0]], "visible": [1, 1], "trg_bndbox": [0, 0, 1, 1]},
        {"category": "a", "pred_kps": [[0, 0]], "gt_kps": [[0, 0]], "trg_bndbox": [0, 0, 0, 0]},
    ],
)
def test_bad_records_raise_input_error(bad):
    with pytest.raises(InputError):
        pck_from_predictions([bad], [0.1])


def test_protocol_registry_and_hash():
    names = {p.name for p in list_protocols()}
    assert {"default", "paper-compat"} <= names
    default, paper = get_protocol("default"), get_protocol("paper-compat")
    assert default.comparison == "<=" and default.averaging == "per_image" and default.normalizer == "bbox"
    assert paper.comparison == "<" and paper.argmax == "soft_argmax" and paper.frame == 840
    assert paper.resize == "stretch_square" and paper.soft_window == 5 and paper.soft_beta == 0.02
    assert default.hash() != paper.hash()
    renamed = Protocol.from_dict({**default.to_dict(), "name": "mine", "description": "x"})
    assert renamed.hash() == default.hash()
    changed = Protocol.from_dict({**default.to_dict(), "comparison": "<"})
    assert changed.hash() != default.hash()
    assert alpha_key(0.10) == "0.1" and alpha_key(0.05) == "0.05"


@pytest.mark.parametrize(
    "bad",
    [{"normalizer": "diag"}, {"comparison": "=="}, {"alphas": [1.5]}, {"matching": "x"}, {"bogus": 1}, {"soft_beta": 0}],
)
def test_bad_protocols_raise(bad):
    with pytest.raises(InputError):
        Protocol.from_dict({"name": "x", **bad})
    with pytest.raises(InputError):
        get_protocol("no-such-protocol")
