"""Matching on features with known correspondences; grid maps; soft-argmax; similarity maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.correspondence.matching import (
    MatchRule,
    frame_transform,
    make_grid_map,
    match_cells,
    similarity_map,
    soft_argmax_2d,
    transfer_keypoints,
)
from engine.correspondence.protocols import get_protocol
from engine.encoders.base import Preprocessing


def test_nearest_neighbour_recovers_a_flip_batched():
    torch.manual_seed(0)
    src = torch.randn(3, 16, 5, 7)
    trg = torch.flip(src, dims=[-1]) * 3.0  # scale does not matter for cosine
    cells = torch.tensor([[[0, 0], [4, 6], [2, 3]]] * 3)
    out = match_cells(src, trg, cells)
    expected = torch.tensor([[0, 6], [4, 0], [2, 3]], dtype=torch.float32)
    assert torch.equal(out, expected.expand(3, 3, 2))


def test_soft_argmax_hand_computed():
    sim = torch.full((1, 5, 5), -1.0)
    sim[0, 2, 2] = 1.0
    sim[0, 2, 3] = 1.0 - 0.02 * np.log(3.0)  # weight ratio exp(-log 3) = 1/3 at beta 0.02
    out = soft_argmax_2d(sim, window=1, beta=0.02)[0]
    # -1 cells get exp(-2/0.02) ~ 0; expected j = (2 * 1 + 3 * 1/3) / (4/3) = 2.25
    assert out[0].item() == pytest.approx(2.0, abs=1e-5)
    assert out[1].item() == pytest.approx(2.25, abs=1e-4)
    # a far-away second peak is ignored inside a window, but pulls the whole-map (window 0) expectation
    sim[0, 0, 0] = 0.99
    assert soft_argmax_2d(sim, window=1, beta=0.02)[0, 1].item() == pytest.approx(2.25, abs=1e-4)
    assert soft_argmax_2d(sim, window=0, beta=0.02)[0, 1].item() < 2.0


def test_upsampled_map_refines_between_cells():
    # target features interpolate between two cells; the upsampled map peaks between them.
    src = torch.zeros(1, 2, 1, 1)
    src[0, 0] = 1.0
    src[0, 1] = 1.0
    trg = torch.zeros(1, 2, 1, 4)
    trg[0, :, 0, 1] = torch.tensor([1.0, 0.0])
    trg[0, :, 0, 2] = torch.tensor([0.0, 1.0])
    cells = torch.zeros(1, 1, 2, dtype=torch.long)
    coarse = match_cells(src, trg, cells)[0, 0]
    fine = match_cells(src, trg, cells, MatchRule("upsampled_map", upsample=8))[0, 0]
    assert coarse[1].item() in (1.0, 2.0)
    assert 1.0 < fine[1].item() < 2.0


def test_grid_map_exact_round_trip_and_frame():
    pre = Preprocessing(input_size=(64, 64), resize="stretch")
    gm = make_grid_map((128, 32), pre, grid=(8, 8), stride=8, patch_size=8)
    cells = np.array([[0, 0], [7, 7], [3, 5]])
    xy = gm.from_cell(cells)
    assert np.allclose(xy[0], [8.0, 2.0])  # centre of cell (0,0): input (4, 4) -> original x 4*2, y 4/2
    assert np.array_equal(gm.to_cell(xy), cells)
    # authors' frame: 200 x 100 image in 840 frame -> scale 4.2, y offset int((840 - 420) / 2) = 210
    scale, offset = frame_transform((200, 100), 840)
    assert scale == pytest.approx(4.2) and offset == (0.0, 210.0)
    fm = make_grid_map((200, 100), pre, grid=(60, 60), stride=14, patch_size=14, frame=840)
    # x=100 -> 420 in frame -> int(60/840*420) = 30; y=50 -> 210+210=420 -> 30
    assert fm.to_cell(np.array([[100.0, 50.0]])).tolist() == [[30, 30]]
    # centre of cell 30 in the frame: 30 * 14 + 14 // 2 = 427 -> x = 427 / 4.2, y = (427 - 210) / 4.2
    assert np.allclose(fm.from_cell(np.array([[30, 30]])), [[427 / 4.2, 217 / 4.2]])


def test_transfer_keypoints_pixels_end_to_end():
    # one-hot position features: each cell is its own descriptor, the target is the same image flipped.
    pre = Preprocessing(input_size=(32, 32), resize="stretch")
    feats = torch.eye(16).reshape(16, 4, 4)
    flipped = torch.flip(feats, dims=[-1])
    gm = make_grid_map((32, 32), pre, grid=(4, 4), stride=8, patch_size=8)
    kps = np.array([[4.0, 4.0], [20.0, 12.0]])
    out = transfer_keypoints([feats], [flipped], [gm], [gm], [kps], get_protocol("default"))[0]
    assert np.allclose(out, [[28.0, 4.0], [12.0, 12.0]])


def test_similarity_map_peaks_at_the_match():
    torch.manual_seed(1)
    src = torch.randn(8, 4, 4)
    trg = torch.roll(src, shifts=1, dims=-1)
    sim = similarity_map(src, trg, (2, 1))  # x=j=2, y=i=1
    assert sim.shape == (4, 4)
    assert np.unravel_index(sim.argmax(), sim.shape) == (1, 3)
    assert sim.max() == pytest.approx(1.0, abs=1e-5)


def test_batched_gpu_matching_path_equals_the_grouped_path():
    """The one-product-per-chunk path used on GPUs gives the per-target path's cells (checked on the CPU)."""
    from engine.correspondence.matching import _batched_cells, _grouped_cells
    from engine.correspondence.protocols import get_protocol

    gen = torch.Generator().manual_seed(3)
    images = [torch.nn.functional.normalize(torch.randn(16, 6, 7, generator=gen), dim=0) for _ in range(5)]
    pairs = [(0, 1), (2, 1), (3, 4), (1, 0), (4, 1), (0, 4)]
    kps = [np.arange(2 * n).reshape(n, 2) % 6 for n in (3, 1, 4, 2, 5, 1)]
    src = [images[a] for a, _ in pairs]
    trg = [images[b] for _, b in pairs]
    groups: dict[int, list[int]] = {}
    for k in range(len(pairs)):
        groups.setdefault(id(trg[k]), []).append(k)
    order = [k for m in groups.values() for k in m]
    cells = torch.from_numpy(np.concatenate([kps[k] for k in order])).long()
    for name in ("default", "paper-compat"):
        proto = get_protocol(name)
        grouped = _grouped_cells(src, trg, list(groups.values()), kps, cells, lambda t: t, proto, 1)
        batched = _batched_cells(src, trg, list(groups.values()), order, kps, cells, lambda t: t, proto, 1)
        assert batched.shape == (sum(len(k) for k in kps), 2)
        assert torch.allclose(batched, grouped, atol=1e-5)
        brute = []  # independent oracle: argmax of each source descriptor against its target grid
        for k in order:
            for i, j in kps[k]:
                sim = torch.einsum("c,chw->hw", src[k][:, i, j], trg[k])
                best = int(sim.flatten().argmax())
                brute.append([best // sim.shape[1], best % sim.shape[1]])
        if proto.argmax == "argmax" and proto.matching == "nn_feature":
            assert torch.equal(batched, torch.tensor(brute, dtype=torch.float32))


def test_only_pairs_the_batched_gpu_path_can_take_go_to_it():
    """On a GPU one batched product takes a chunk only when its sources share one grid (they are stacked), its targets
    one grid, with the same channels: sources of other grids went to it when only the targets were checked, and
    failed there (the grouped path matches them, and names a channel mismatch)."""
    from engine.correspondence.matching import _batched_cells, _grouped_cells, _one_product
    from engine.errors import InputError

    gen = torch.Generator().manual_seed(5)
    big, small, target = (torch.nn.functional.normalize(torch.randn(8, *hw, generator=gen), dim=0)
                          for hw in ((6, 7), (4, 5), (6, 7)))  # fmt: skip
    src, trg = [big, small], [target, target]
    kps = [np.array([[1, 2], [3, 4]]), np.array([[2, 3]])]
    groups, order = [[0, 1]], [0, 1]
    cells = torch.from_numpy(np.concatenate(kps)).long()
    proto = get_protocol("default")
    with pytest.raises(RuntimeError):
        _batched_cells(src, trg, groups, order, kps, cells, lambda t: t, proto, 1)
    assert not _one_product(src, trg, order)
    grouped = _grouped_cells(src, trg, groups, kps, cells, lambda t: t, proto, 1)
    for row, (k, (i, j)) in enumerate([(0, kps[0][0]), (0, kps[0][1]), (1, kps[1][0])]):  # brute-force oracle
        best = int(torch.einsum("c,chw->hw", src[k][:, i, j], target).flatten().argmax())
        assert grouped[row].tolist() == [best // 7, best % 7]
    assert _one_product([big, target], [target, big], order)
    assert not _one_product([big, big], [target[:4], target[:4]], order)  # other channels: the grouped path's error
    with pytest.raises(InputError, match="channel"):
        _grouped_cells([big, big], [target[:4], target[:4]], groups, kps, cells, lambda t: t, proto, 1)
