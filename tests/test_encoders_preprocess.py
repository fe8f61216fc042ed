"""Preprocessing: the three resize strategies put image points where the geometry says, and round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.encoders.base import Preprocessing
from engine.encoders.preprocess import feature_to_input, input_to_feature, nearest_cell, prepare
from engine.errors import InputError

MODES = ["stretch", "letterbox", "shortest_side_center_crop"]


def _dot_image(w: int, h: int, x: int, y: int) -> np.ndarray:
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[y - 2 : y + 3, x - 2 : x + 3] = 255
    return img


@pytest.mark.parametrize("mode", MODES)
def test_points_land_where_geometry_says(mode):
    pre = Preprocessing((64, 96), mode, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    img = _dot_image(200, 120, 110, 60)
    batch, (geom,) = prepare([img], pre)
    assert batch.shape == (1, 3, 64, 96)
    expected = geom.to_input(np.array([[110.5, 60.5]]))[0]
    channel = batch[0, 0].numpy()
    ys, xs = np.nonzero(channel > 0.5 * channel.max())
    assert abs(xs.mean() + 0.5 - expected[0]) < 1.0 and abs(ys.mean() + 0.5 - expected[1]) < 1.0


@pytest.mark.parametrize("mode", MODES)
def test_round_trip_and_batches_of_different_sizes(mode):
    pre = Preprocessing((56, 56), mode)
    imgs = [np.full((30, 80, 3), 128, np.uint8), np.full((90, 40, 3), 7, np.uint8)]
    batch, geoms = prepare(imgs, pre)
    assert batch.shape == (2, 3, 56, 56) and batch.dtype == torch.float32
    pts = np.array([[0.0, 0.0], [12.5, 20.25], [39.0, 29.0]])
    for geom in geoms:
        np.testing.assert_allclose(geom.to_original(geom.to_input(pts)), pts, atol=1e-9)


def test_letterbox_pads_and_keeps_aspect():
    pre = Preprocessing((40, 40), "letterbox", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), pad_value=-3.0)
    batch, (geom,) = prepare([np.full((10, 20, 3), 255, np.uint8)], pre)
    assert geom.scale_x == geom.scale_y == 2.0 and geom.offset_y == 10.0 and geom.offset_x == 0.0
    assert torch.all(batch[0, :, :10] == -3.0) and torch.all(batch[0, :, 30:] == -3.0)
    torch.testing.assert_close(batch[0, :, 10:30], torch.ones(3, 20, 40))
    assert geom.valid_input_box() == (0.0, 10.0, 40.0, 30.0)


def test_center_crop_offsets():
    pre = Preprocessing((20, 20), "shortest_side_center_crop")
    _, (geom,) = prepare([np.zeros((10, 30, 3), np.uint8)], pre)
    assert geom.scale_x == geom.scale_y == 2.0 and geom.offset_x == -20.0 and geom.offset_y == 0.0


def test_cell_centre_helpers_are_inverse():
    ij = np.array([[0, 0], [3, 5], [15, 15]])
    xy = feature_to_input(ij, stride=14, patch_size=14)
    np.testing.assert_allclose(xy[1], [5 * 14 + 7, 3 * 14 + 7])
    np.testing.assert_allclose(input_to_feature(xy, 14, 14), ij)
    np.testing.assert_array_equal(nearest_cell(np.array([[-50.0, 1000.0], [76.0, 48.0]]), 14, 14, (16, 16)), [[15, 0], [3, 5]])


def test_bad_input():
    with pytest.raises(InputError):
        prepare([], Preprocessing((8, 8)))
    with pytest.raises(InputError, match="resize"):
        prepare([np.zeros((4, 4, 3), np.uint8)], Preprocessing((8, 8), "zoom"))
