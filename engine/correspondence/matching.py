"""Keypoint transfer by feature matching: grid maps (pixels <-> feature cells), NN / upsampled maps, soft-argmax.

Vectorised over keypoints; ``match_cells`` batches equal-shape pairs, ``transfer_keypoints`` batches all pairs
that share a target image into one matrix product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.correspondence.protocols import Protocol
from engine.encoders.base import Preprocessing
from engine.encoders.preprocess import ImageGeometry, _geometry  # _geometry: the exact resize geometry, no pixels
from engine.errors import InputError

_MAX_UPSAMPLED_ELEMENTS = 20_000_000  # floats per chunk of upsampled similarity maps


@dataclass(frozen=True)
class GridMap:
    """Maps original-image pixels (x, y) to continuous feature-cell coordinates (i=row, j=col) and back.

    ``frame is None``: exact, through the encoder's preprocessing geometry; cell (i, j) centre sits at model-input
    pixel (j * stride + patch_size / 2, i * stride + patch_size / 2). ``frame = F``: the authors' convention
    (GeoAware-SC ``preprocess_kps_pad`` / ``kpts_to_patch_idx``): keypoints are placed in an F x F zero-padded,
    aspect-kept, centred frame which is *assumed* to tile the feature grid uniformly, whatever the encoder saw.
    """

    grid: tuple[int, int]
    geometry: ImageGeometry | None = None
    stride: float = 1.0
    patch_size: float = 1.0
    frame: int | None = None
    frame_scale: float = 1.0
    frame_offset: tuple[float, float] = (0.0, 0.0)

    def to_cell(self, xy: np.ndarray) -> np.ndarray:
        """N x 2 original (x, y) -> N x 2 integer (i, j) of the cell holding the point, clipped to the grid."""
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        h, w = self.grid
        if self.frame is None:
            assert self.geometry is not None
            inp = self.geometry.to_input(pts)
            half = self.patch_size / 2.0
            ij = np.stack([np.rint((inp[:, 1] - half) / self.stride), np.rint((inp[:, 0] - half) / self.stride)], 1)
        else:
            fx = pts[:, 0] * self.frame_scale + self.frame_offset[0]
            fy = pts[:, 1] * self.frame_scale + self.frame_offset[1]
            ij = np.stack([np.trunc(h / self.frame * fy), np.trunc(w / self.frame * fx)], 1)
        ij = np.nan_to_num(ij, nan=0.0).astype(np.int64)
        ij[:, 0] = np.clip(ij[:, 0], 0, h - 1)
        ij[:, 1] = np.clip(ij[:, 1], 0, w - 1)
        return ij

    def from_cell(self, ij: np.ndarray) -> np.ndarray:
        """N x 2 continuous (i, j) -> N x 2 original (x, y)."""
        cells = np.asarray(ij, dtype=np.float64).reshape(-1, 2)
        if self.frame is None:
            assert self.geometry is not None
            half = self.patch_size / 2.0
            inp = np.stack([cells[:, 1] * self.stride + half, cells[:, 0] * self.stride + half], 1)
            return self.geometry.to_original(inp)
        h, w = self.grid
        sx, sy = self.frame / w, self.frame / h
        fx = cells[:, 1] * sx + sx // 2
        fy = cells[:, 0] * sy + sy // 2
        return np.stack(
            [(fx - self.frame_offset[0]) / self.frame_scale, (fy - self.frame_offset[1]) / self.frame_scale], 1
        )


def frame_transform(size: tuple[int, int], frame: int) -> tuple[float, tuple[float, float]]:
    """Scale and (x, y) offset of the authors' aspect-kept, centred, zero-padded F x F frame."""
    w, h = size
    scale = frame / max(w, h)
    if h < w:
        new_h = int(np.around(frame * h / w))
        return scale, (0.0, float(int((frame - new_h) / 2)))
    if w < h:
        new_w = int(np.around(frame * w / h))
        return scale, (float(int((frame - new_w) / 2)), 0.0)
    return scale, (0.0, 0.0)


def make_grid_map(
    orig_size: tuple[int, int],
    pre: Preprocessing,
    grid: tuple[int, int],
    stride: float,
    patch_size: float,
    frame: int | None = None,
) -> GridMap:
    """The GridMap of one image of size (w, h) encoded with ``pre`` into a feature grid (h, w)."""
    if frame is not None:
        scale, offset = frame_transform(orig_size, int(frame))
        return GridMap(grid=tuple(grid), frame=int(frame), frame_scale=scale, frame_offset=offset)  # type: ignore[arg-type]
    geometry, _ = _geometry(int(orig_size[0]), int(orig_size[1]), pre)
    return GridMap(grid=tuple(grid), geometry=geometry, stride=float(stride), patch_size=float(patch_size))  # type: ignore[arg-type]


def _map_table(maps: Sequence[GridMap], counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per point (``counts[k]`` points of ``maps[k]`` after each other): whether its map uses the authors' frame, and
    its map's numbers (grid h, w, then stride, patch / 2, scale x, offset x, scale y, offset y of the exact geometry,
    or frame, scale, offset x, offset y of the frame)."""
    table = np.zeros((len(maps), 8), dtype=np.float64)
    framed = np.zeros(len(maps), dtype=bool)
    for k, m in enumerate(maps):
        if m.frame is None:
            assert m.geometry is not None
            g = m.geometry
            table[k] = (m.grid[0], m.grid[1], m.stride, m.patch_size / 2.0, g.scale_x, g.offset_x, g.scale_y, g.offset_y)
        else:
            framed[k] = True
            table[k, :6] = (m.grid[0], m.grid[1], m.frame, m.frame_scale, m.frame_offset[0], m.frame_offset[1])
    return np.repeat(framed, counts), np.repeat(table, counts, axis=0)


def _map_many(maps: Sequence[GridMap], values: np.ndarray, counts: Sequence[int],
              exact: Callable[[np.ndarray, np.ndarray], np.ndarray],
              framed: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``values`` (K x 2, ``counts[k]`` rows of ``maps[k]`` after each other) mapped by ``exact(table, rows)`` for
    images of an exact geometry and ``framed(table, rows)`` for the paper-compat frame; also returns the table."""
    rows = np.asarray(values, dtype=np.float64).reshape(-1, 2)
    is_framed, table = _map_table(maps, np.asarray(counts, dtype=np.int64))
    out = np.empty((len(rows), 2), dtype=np.float64)
    for mask, mapping in ((~is_framed, exact), (is_framed, framed)):
        if mask.any():
            out[mask] = mapping(table[mask], rows[mask])
    return out, table


def _cells_exact(e: np.ndarray, q: np.ndarray) -> np.ndarray:
    in_x, in_y = q[:, 0] * e[:, 4] + e[:, 5], q[:, 1] * e[:, 6] + e[:, 7]
    return np.stack([np.rint((in_y - e[:, 3]) / e[:, 2]), np.rint((in_x - e[:, 3]) / e[:, 2])], 1)


def _cells_framed(f: np.ndarray, q: np.ndarray) -> np.ndarray:
    fx, fy = q[:, 0] * f[:, 3] + f[:, 4], q[:, 1] * f[:, 3] + f[:, 5]
    return np.stack([np.trunc(f[:, 0] / f[:, 2] * fy), np.trunc(f[:, 1] / f[:, 2] * fx)], 1)


def _points_exact(e: np.ndarray, c: np.ndarray) -> np.ndarray:
    in_x, in_y = c[:, 1] * e[:, 2] + e[:, 3], c[:, 0] * e[:, 2] + e[:, 3]
    return np.stack([(in_x - e[:, 5]) / e[:, 4], (in_y - e[:, 7]) / e[:, 6]], 1)


def _points_framed(f: np.ndarray, c: np.ndarray) -> np.ndarray:
    sx, sy = f[:, 2] / f[:, 1], f[:, 2] / f[:, 0]
    fx, fy = c[:, 1] * sx + sx // 2, c[:, 0] * sy + sy // 2
    return np.stack([(fx - f[:, 4]) / f[:, 3], (fy - f[:, 5]) / f[:, 3]], 1)


def cells_of(maps: Sequence[GridMap], points: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """``GridMap.to_cell`` of many images at once, value for value: ``points`` (K x 2 original x, y) holds
    ``counts[k]`` points of ``maps[k]`` after each other; returns K x 2 int64 (i, j)."""
    ij, table = _map_many(maps, points, counts, _cells_exact, _cells_framed)
    out = np.nan_to_num(ij, nan=0.0).astype(np.int64)
    out[:, 0] = np.clip(out[:, 0], 0, table[:, 0].astype(np.int64) - 1)
    out[:, 1] = np.clip(out[:, 1], 0, table[:, 1].astype(np.int64) - 1)
    return out


def points_of(maps: Sequence[GridMap], cells: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """``GridMap.from_cell`` of many images at once, value for value: ``cells`` (K x 2 continuous i, j) holds
    ``counts[k]`` cells of ``maps[k]`` after each other; returns K x 2 original (x, y)."""
    return _map_many(maps, cells, counts, _points_exact, _points_framed)[0]


def normalise(features: torch.Tensor) -> torch.Tensor:
    """L2-normalise along the channel axis (dim -3 of ... x C x h x w)."""
    return F.normalize(features.float(), dim=-3, eps=1e-8)


def soft_argmax_2d(sim: torch.Tensor, window: int, beta: float) -> torch.Tensor:
    """... x h x w similarity -> ... x 2 expected (i, j) of softmax(sim / beta) within ``window`` cells of the max.

    The window is (2 * window + 1)^2 cells; ``window <= 0`` means the whole map (as ``SOFT_EVAL_WINDOW=0`` upstream).
    """
    *lead, h, w = sim.shape
    flat = sim.reshape(-1, h * w)
    best = flat.argmax(dim=1)
    bi, bj = (best // w).float(), (best % w).float()
    ii = torch.arange(h, dtype=torch.float32, device=sim.device).repeat_interleave(w)
    jj = torch.arange(w, dtype=torch.float32, device=sim.device).repeat(h)
    logits = flat.float() / beta
    if window > 0:
        inside = ((ii[None] - bi[:, None]).abs() <= window) & ((jj[None] - bj[:, None]).abs() <= window)
        logits = logits.masked_fill(~inside, float("-inf"))
    weights = torch.softmax(logits, dim=1)
    out = torch.stack([(weights * ii[None]).sum(1), (weights * jj[None]).sum(1)], dim=1)
    return out.reshape(*lead, 2)


def hard_argmax_2d(sim: torch.Tensor) -> torch.Tensor:
    *lead, h, w = sim.shape
    best = sim.reshape(-1, h * w).argmax(dim=1)
    return torch.stack([best // w, best % w], dim=1).float().reshape(*lead, 2)


@dataclass(frozen=True)
class MatchRule:
    """How a similarity map becomes a match: a protocol's ``matching``, ``argmax``, ``soft_window`` and ``soft_beta``
    (see ``Protocol``), and the ``upsample`` factor of an ``upsampled_map``."""

    matching: str = "nn_feature"
    argmax: str = "argmax"
    soft_window: int = 5
    soft_beta: float = 0.02
    upsample: int = 1

    @classmethod
    def of(cls, protocol: Protocol, upsample: int = 1) -> MatchRule:
        return cls(protocol.matching, protocol.argmax, protocol.soft_window, protocol.soft_beta, upsample)


def locate(sim: torch.Tensor, rule: MatchRule = MatchRule()) -> torch.Tensor:
    """K x h x w similarity maps -> K x 2 continuous cell coordinates (i, j) of the match."""
    if rule.matching not in ("nn_feature", "upsampled_map"):
        raise InputError(f"unknown matching {rule.matching!r}")

    def peak(maps: torch.Tensor) -> torch.Tensor:
        return soft_argmax_2d(maps, rule.soft_window, rule.soft_beta) if rule.argmax == "soft_argmax" else hard_argmax_2d(maps)

    if rule.matching == "nn_feature" or rule.upsample <= 1:
        return peak(sim)
    k, h, w = sim.shape
    up_by = rule.upsample
    out = torch.empty(k, 2, device=sim.device)
    chunk = max(1, _MAX_UPSAMPLED_ELEMENTS // max(1, h * w * up_by * up_by))
    for start in range(0, k, chunk):
        part = sim[start : start + chunk]
        up = F.interpolate(part[:, None], scale_factor=up_by, mode="bilinear", align_corners=False)[:, 0]
        out[start : start + part.shape[0]] = (peak(up) + 0.5) / up_by - 0.5
    return out


def match_cells(
    src_feats: torch.Tensor, trg_feats: torch.Tensor, src_cells: torch.Tensor, rule: MatchRule = MatchRule()
) -> torch.Tensor:
    """Transfer cells from source to target grids, batched.

    ``src_feats`` B x C x hs x ws, ``trg_feats`` B x C x ht x wt (raw; normalised here), ``src_cells`` B x N x 2 long
    (i, j). Returns B x N x 2 float continuous target cell coordinates (i, j).
    """
    if src_feats.shape[0] != trg_feats.shape[0] or src_feats.shape[1] != trg_feats.shape[1]:
        raise InputError("source and target features must have the same batch size and channel count")
    b, c, hs, ws = src_feats.shape
    ht, wt = trg_feats.shape[-2:]
    src = normalise(src_feats).reshape(b, c, hs * ws)
    trg = normalise(trg_feats).reshape(b, c, ht * wt)
    index = (src_cells[..., 0] * ws + src_cells[..., 1]).long()  # B x N
    vectors = torch.gather(src, 2, index[:, None, :].expand(b, c, index.shape[1])).transpose(1, 2)  # B x N x C
    sim = torch.bmm(vectors, trg).reshape(-1, ht, wt)  # (B * N) x ht x wt
    return locate(sim, rule).reshape(b, -1, 2)


def transfer_keypoints(
    src_feats: Sequence[torch.Tensor],
    trg_feats: Sequence[torch.Tensor],
    src_maps: Sequence[GridMap],
    trg_maps: Sequence[GridMap],
    src_kps: Sequence[np.ndarray],
    protocol: Protocol,
    upsample: int = 1,
    normalised: bool = False,
) -> list[np.ndarray]:
    """Predict target keypoints (original pixels) for many pairs.

    ``src_feats[k]`` / ``trg_feats[k]`` are C x h x w tensors (pass the same tensor object for the same image);
    ``src_kps[k]`` is N_k x 2 original (x, y). Pairs sharing a target image are batched into one matrix product
    of all their source descriptors with that target grid; each image is normalised once (skipped when
    ``normalised``). The products run where the features live (a CUDA device included).
    """
    counts = [len(kps) for kps in src_kps]
    flat = transfer_keypoints_flat(src_feats, trg_feats, src_maps, trg_maps, src_kps, protocol, upsample, normalised)
    ends = np.cumsum(counts, dtype=np.int64)
    return [flat[e - n : e] if n else np.zeros((0, 2)) for n, e in zip(counts, ends, strict=True)]


def transfer_keypoints_flat(
    src_feats: Sequence[torch.Tensor],
    trg_feats: Sequence[torch.Tensor],
    src_maps: Sequence[GridMap],
    trg_maps: Sequence[GridMap],
    src_kps: Sequence[np.ndarray],
    protocol: Protocol,
    upsample: int = 1,
    normalised: bool = False,
) -> np.ndarray:
    """``transfer_keypoints`` as one K x 2 array: every pair's predictions after each other, in pair order (K = all
    source keypoints). Cells and pixels are mapped for all pairs at once (``cells_of``, ``points_of``)."""
    count = len(src_feats)
    counts = np.asarray([len(kps) for kps in src_kps], dtype=np.int64)
    out = np.zeros((int(counts.sum()), 2), dtype=np.float64)
    unit: dict[int, torch.Tensor] = {}

    def unit_of(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in unit:
            unit[id(t)] = t.float() if normalised else normalise(t)
        return unit[id(t)]

    groups: dict[int, list[int]] = {}
    for k in range(count):
        if counts[k]:
            groups.setdefault(id(trg_feats[k]), []).append(k)
    if not groups:
        return out
    # every source cell computed on the CPU and moved in one copy, every prediction moved back in one: a copy per
    # group would wait for the device each time (thousands of small syncs per chunk on a GPU)
    order = [k for members in groups.values() for k in members]
    in_order = counts[order]
    points = np.concatenate([np.asarray(src_kps[k], dtype=np.float64).reshape(-1, 2) for k in order])
    device = trg_feats[order[0]].device
    all_cells = torch.from_numpy(cells_of([src_maps[k] for k in order], points, in_order)).to(device)
    if device.type == "cuda" and _one_product(src_feats, trg_feats, order):
        cell_pred = _batched_cells(src_feats, trg_feats, list(groups.values()), order, src_kps, all_cells, unit_of,
                                   protocol, upsample).cpu().numpy()  # fmt: skip
    else:
        cell_pred = _grouped_cells(src_feats, trg_feats, list(groups.values()), src_kps, all_cells, unit_of, protocol,
                                   upsample).cpu().numpy()  # fmt: skip
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    order_starts = np.concatenate([[0], np.cumsum(in_order)[:-1]])
    rows = np.arange(len(points)) + np.repeat(starts[order] - order_starts, in_order)  # order's rows in pair order
    out[rows] = points_of([trg_maps[k] for k in order], cell_pred, in_order)
    return out


def _one_product(src_feats, trg_feats, order) -> bool:
    """Whether ``_batched_cells`` can take these pairs: the sources of one shape (they are stacked), the targets of one
    shape, the same channels; otherwise the grouped path (any grids; a clear error for other channel counts)."""
    sources = {tuple(src_feats[k].shape) for k in order}
    targets = {tuple(trg_feats[k].shape) for k in order}
    return len(sources) == 1 and len(targets) == 1 and next(iter(sources))[0] == next(iter(targets))[0]


def _grouped_cells(src_feats, trg_feats, groups, src_kps, all_cells, unit_of, protocol, upsample) -> torch.Tensor:
    """One product per target image (its pairs' source descriptors against its grid)."""
    predictions = []
    offset = 0
    for members in groups:
        trg = unit_of(trg_feats[members[0]])
        c, ht, wt = trg.shape
        vectors = []
        for k in members:
            src = unit_of(src_feats[k])
            n = len(src_kps[k])
            cells = all_cells[offset : offset + n]
            offset += n
            if src.shape[0] != c:
                raise InputError("source and target features must have the same channel count")
            vectors.append(src[:, cells[:, 0], cells[:, 1]].T)
        sim = (torch.cat(vectors) @ trg.reshape(c, ht * wt)).reshape(-1, ht, wt)
        predictions.append(locate(sim, MatchRule.of(protocol, upsample)))
    return torch.cat(predictions)


def _batched_cells(src_feats, trg_feats, groups, order, src_kps, all_cells, unit_of, protocol, upsample) -> torch.Tensor:
    """All groups in one batched product on a GPU (targets of one grid size): a few launches per chunk instead of a
    few per target image, which is what bounded matching there. Rows come out in ``order`` as in the grouped path."""
    sources: dict[int, int] = {}
    src_units = []
    for k in order:
        if id(src_feats[k]) not in sources:
            sources[id(src_feats[k])] = len(src_units)
            src_units.append(unit_of(src_feats[k]))
    stacked = torch.stack(src_units)  # U x C x hs x ws
    counts = [len(src_kps[k]) for k in order]
    device = stacked.device
    which = torch.tensor([sources[id(src_feats[k])] for k in order], device=device).repeat_interleave(
        torch.tensor(counts, device=device))
    vectors = stacked[which, :, all_cells[:, 0], all_cells[:, 1]]  # K x C
    trg = torch.stack([unit_of(trg_feats[m[0]]) for m in groups])  # G x C x ht x wt
    g, c, ht, wt = trg.shape
    sizes = [sum(len(src_kps[k]) for k in m) for m in groups]
    width = max(sizes)
    group_of = torch.repeat_interleave(torch.arange(g, device=device), torch.tensor(sizes, device=device))
    starts = torch.tensor([0, *np.cumsum(sizes)[:-1].tolist()], device=device)
    slot = torch.arange(vectors.shape[0], device=device) - starts[group_of]
    padded = vectors.new_zeros(g, width, c)
    padded[group_of, slot] = vectors
    sim = torch.bmm(padded, trg.reshape(g, c, ht * wt))[group_of, slot].reshape(-1, ht, wt)
    return locate(sim, MatchRule.of(protocol, upsample))


def similarity_map(
    src_feats: torch.Tensor | np.ndarray,
    trg_feats: torch.Tensor | np.ndarray,
    src_xy: Sequence[float] | np.ndarray,
    src_map: GridMap | None = None,
) -> np.ndarray:
    """Cosine similarity (ht x wt) of every target cell to the source cell at ``src_xy``.

    ``src_xy`` is an original-image (x, y) when ``src_map`` is given, else (x=j, y=i) in feature cells.
    """
    src = torch.as_tensor(np.asarray(src_feats, dtype=np.float32))
    trg = torch.as_tensor(np.asarray(trg_feats, dtype=np.float32))
    if src.ndim != 3 or trg.ndim != 3 or src.shape[0] != trg.shape[0]:
        raise InputError("similarity_map expects C x h x w source and target features with the same C")
    point = np.asarray(src_xy, dtype=np.float64).reshape(1, 2)
    if src_map is not None:
        i, j = src_map.to_cell(point)[0]
    else:
        i = int(np.clip(np.rint(point[0, 1]), 0, src.shape[1] - 1))
        j = int(np.clip(np.rint(point[0, 0]), 0, src.shape[2] - 1))
    vec = normalise(src)[:, i, j]
    return torch.einsum("c,chw->hw", vec, normalise(trg)).numpy()
