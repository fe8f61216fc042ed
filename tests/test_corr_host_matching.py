"""Host side of matching in columns: grid maps for all keypoints at once, PCK over all keypoints at once, per-chunk
records, .npz checkpoints (old JSON ones still read, malformed ones recomputed): brute-force Python oracles."""

from __future__ import annotations

import io
import json
import math
import pickle
import zipfile

import numpy as np
import pytest
import torch
from _encoders import TinyConvEncoder

from engine.correspondence import evaluate as ev
from engine.correspondence.datasets import open_dataset
from engine.correspondence.features import FeatureGeometry, FeatureProvider
from engine.correspondence.matching import (
    GridMap,
    cells_of,
    make_grid_map,
    points_of,
    transfer_keypoints,
)
from engine.correspondence.pck import pck_from_predictions, summarise_scores
from engine.correspondence.predictions import ChunkPredictions, read_checkpoint
from engine.correspondence.protocols import get_protocol
from engine.encoders.base import Preprocessing
from engine.errors import InputError
from engine.jobs.context import JobCancelled


def _maps(rng: np.random.Generator, n: int) -> list[GridMap]:
    """Grid maps of every kind: the three exact resizes and the authors' frame, several grids and image sizes."""
    out = []
    for k in range(n):
        size = (int(rng.integers(20, 400)), int(rng.integers(20, 400)))
        grid = (int(rng.integers(3, 30)), int(rng.integers(3, 30)))
        kind = k % 4
        if kind == 3:
            out.append(make_grid_map(size, Preprocessing((224, 224)), grid, 14, 14, frame=840))
        else:
            resize = ("stretch", "letterbox", "shortest_side_center_crop")[kind]
            stride = float(rng.choice([8.0, 14.0, 16.0]))
            out.append(make_grid_map(size, Preprocessing((int(rng.integers(60, 340)), 224), resize), grid, stride, stride))
    return out


def _cell_by_hand(m: GridMap, x: float, y: float) -> tuple[int, int]:
    """GridMap.to_cell for one point written out from its definition (Python floats, round half to even)."""
    h, w = m.grid
    if m.frame is None:
        g = m.geometry
        half = m.patch_size / 2.0
        xi, yi = x * g.scale_x + g.offset_x, y * g.scale_y + g.offset_y
        i, j = (yi - half) / m.stride, (xi - half) / m.stride
        i, j = (0 if math.isnan(v) else round(v) for v in (i, j))  # round(): halves to even, as rint
    else:
        fx, fy = x * m.frame_scale + m.frame_offset[0], y * m.frame_scale + m.frame_offset[1]
        i, j = (0 if math.isnan(v) else math.trunc(v) for v in (h / m.frame * fy, w / m.frame * fx))
    return min(max(i, 0), h - 1), min(max(j, 0), w - 1)


def _point_by_hand(m: GridMap, i: float, j: float) -> tuple[float, float]:
    h, w = m.grid
    if m.frame is None:
        g = m.geometry
        half = m.patch_size / 2.0
        return ((j * m.stride + half) - g.offset_x) / g.scale_x, ((i * m.stride + half) - g.offset_y) / g.scale_y
    sx, sy = m.frame / w, m.frame / h
    return (j * sx + sx // 2 - m.frame_offset[0]) / m.frame_scale, (i * sy + sy // 2 - m.frame_offset[1]) / m.frame_scale


def test_cells_and_points_of_many_images_at_once_equal_a_per_keypoint_loop_and_the_per_image_maps():
    rng = np.random.default_rng(0)
    maps = _maps(rng, 40)
    counts = rng.integers(0, 9, size=len(maps))
    counts[5] = 0
    sizes = np.repeat([m.geometry.orig_size if m.geometry else (300, 300) for m in maps], counts, axis=0)
    points = rng.uniform(-0.2, 1.2, size=(int(counts.sum()), 2)) * sizes  # some outside the image: clipped
    points[3] = (np.nan, 5.0)
    points[:, :][::7] = np.round(points[::7])  # whole pixels: rounding ties
    cells = cells_of(maps, points, counts)
    fractional = rng.uniform(-1, 30, size=(len(points), 2))
    pixels = points_of(maps, fractional, counts)
    assert cells.dtype == np.int64 and cells.shape == pixels.shape == (len(points), 2)
    row = 0
    for m, n in zip(maps, counts, strict=True):
        mine = slice(row, row + n)
        assert np.array_equal(cells[mine], m.to_cell(points[mine]).reshape(-1, 2))  # the per-image map, exactly
        assert np.array_equal(pixels[mine], m.from_cell(fractional[mine]).reshape(-1, 2))
        for k in range(row, row + n):
            assert tuple(cells[k]) == _cell_by_hand(m, *points[k])
            assert np.allclose(pixels[k], _point_by_hand(m, *fractional[k]), rtol=0, atol=1e-9)
        row += n
    assert {m.frame is None for m in maps} == {True, False}  # both kinds mixed in one call


def _pck_by_hand(records: list[dict], alphas, normalizer: str, comparison: str, primary: str) -> dict:
    """PCK written out keypoint by keypoint (Python floats and lists)."""
    per_pair = []  # (category, [correct count per alpha], scored)
    skipped = 0
    for r in records:
        if normalizer == "bbox":
            x1, y1, x2, y2 = r["trg_bndbox"]
            length = max(x2 - x1, y2 - y1)
        else:
            length = max(r["trg_imsize"][0], r["trg_imsize"][1])
        hits, scored = [0] * len(alphas), 0
        for (px, py), (gx, gy), vis in zip(r["pred_kps"], r["gt_kps"], r["visible"], strict=True):
            if not vis or not (math.isfinite(gx) and math.isfinite(gy)):
                continue
            scored += 1
            err = math.sqrt((px - gx) ** 2 + (py - gy) ** 2)
            for a, alpha in enumerate(alphas):
                limit = alpha * length
                if math.isfinite(err) and (err <= limit if comparison == "<=" else err < limit):
                    hits[a] += 1
        if scored:
            per_pair.append((r["category"], hits, scored))
        else:
            skipped += 1

    def image_mean(rows):
        return [sum(h[a] / s for _, h, s in rows) / len(rows) for a in range(len(alphas))]

    def point_mean(rows):
        return [sum(h[a] for _, h, _s in rows) / sum(s for _, _h, s in rows) for a in range(len(alphas))]

    cats = sorted({c for c, _, _ in per_pair})
    by_cat = {c: [p for p in per_pair if p[0] == c] for c in cats}
    return {
        "per_image": image_mean(per_pair),
        "per_point": point_mean(per_pair),
        "per_category": {c: (image_mean if primary == "per_image" else point_mean)(rows) for c, rows in by_cat.items()},
        "per_category_pairs": {c: len(rows) for c, rows in by_cat.items()},
        "pairs": len(per_pair),
        "points": sum(s for _, _, s in per_pair),
        "skipped_pairs": skipped,
    }


def _random_records(rng: np.random.Generator, n: int) -> list[dict]:
    records = []
    for k in range(n):
        m = int(rng.integers(0, 12))
        gt = rng.uniform(0, 200, size=(m, 2))
        pred = np.round(gt + rng.normal(0, 15, size=(m, 2)), 3)
        if m > 2:
            gt[1] = (np.nan, 3.0)  # not scored
            pred[2] = (np.inf, 0.0)  # never correct
        if m > 4:
            pred[3] = gt[3] + (3.0, 4.0)  # exactly 5 px away: on the 0.1 x 50 threshold of the box below
        box = [0.0, 0.0, 50.0, 40.0] if k % 3 == 0 else [float(v) for v in np.sort(rng.uniform(0, 300, 4))]
        records.append({"pair_id": f"p{k}", "category": f"c{k % 4}", "pred_kps": pred.tolist(), "gt_kps": gt.tolist(),
                        "visible": (rng.random(m) < 0.8).tolist(), "trg_bndbox": box,
                        "trg_imsize": [int(rng.integers(1, 400)), int(rng.integers(1, 400))]})  # fmt: skip
    return records


@pytest.mark.parametrize("normalizer,comparison,primary", [("bbox", "<=", "per_image"), ("bbox", "<", "per_point"),
                                                            ("image", "<=", "per_point")])  # fmt: skip
def test_pck_over_all_keypoints_at_once_equals_a_per_keypoint_loop(normalizer, comparison, primary):
    rng = np.random.default_rng(1)
    records = _random_records(rng, 300)
    alphas = (0.05, 0.1, 0.15)
    got = pck_from_predictions(records, alphas, normalizer, comparison, primary)
    want = _pck_by_hand(records, alphas, normalizer, comparison, primary)
    keys = ["0.05", "0.1", "0.15"]
    for field in ("per_image", "per_point"):
        assert list(got[field]) == keys
        assert np.allclose([got[field][k] for k in keys], want[field], rtol=0, atol=1e-12)
    assert sorted(got["per_category"]) == sorted(want["per_category"])
    for c, values in want["per_category"].items():
        assert np.allclose([got["per_category"][c][k] for k in keys], values, rtol=0, atol=1e-12)
    for field in ("per_category_pairs", "pairs", "points", "skipped_pairs"):
        assert got[field] == want[field], field
    assert got["skipped_pairs"] > 0 and got["primary"] == primary
    if normalizer == "bbox":  # the exact-threshold keypoints are in for <= and out for <
        assert got["per_point"] != pck_from_predictions(records, alphas, normalizer, "<" if comparison == "<=" else "<=", primary)["per_point"]


def test_chunk_records_equal_per_pair_records_built_the_old_way_and_chunked_pck_is_exact():
    """A chunk matched in columns gives the records each pair gets on its own (built field by field as the JSON
    records were), and its PCK summed over chunks equals the PCK of those records bit for bit."""
    ds = open_dataset("builtin")
    enc = TinyConvEncoder()
    pairs = ds.pairs("test")
    ids = list(dict.fromkeys([p.src_id for p in pairs] + [p.trg_id for p in pairs]))
    provider = FeatureProvider(enc, ds, enc.preprocessing, use_cache=False)
    feats = provider.get(ids)
    unit = {i: torch.nn.functional.normalize(torch.from_numpy(feats[i].features.astype(np.float32)), dim=0) for i in ids}
    geometry = {i: FeatureGeometry(tuple(feats[i].features.shape[-2:]), 8, 8) for i in ids}
    for name in ("default", "paper-compat", "dense-upsampled"):
        proto = get_protocol(name)
        chunks = [ev.match_records(pairs[a : a + 30], unit, geometry, enc.preprocessing, proto) for a in range(0, len(pairs), 30)]
        records = [r for chunk in chunks for r in chunk.records()]
        old = []
        for p in pairs:  # one pair at a time, the record as the per-pair code wrote it
            src_map = make_grid_map(p.src_size, enc.preprocessing, geometry[p.src_id].grid, 8, 8, proto.frame)
            trg_map = make_grid_map(p.trg_size, enc.preprocessing, geometry[p.trg_id].grid, 8, 8, proto.frame)
            up = 8 if proto.matching == "upsampled_map" else 1
            [pred] = transfer_keypoints([unit[p.src_id]], [unit[p.trg_id]], [src_map], [trg_map], [p.src_kps], proto, up, True)
            old.append({"pair_id": p.pair_id, "category": p.category, "pred_kps": np.round(pred, 3).tolist(),
                        "gt_kps": np.asarray(p.trg_kps).tolist(), "visible": np.asarray(p.visible, dtype=bool).tolist(),
                        "trg_bndbox": [float(v) for v in p.trg_bbox], "trg_imsize": [int(v) for v in p.trg_size]})  # fmt: skip
        assert json.dumps(records) == json.dumps(old), name
        scored = [c.scored(proto.alphas, proto.normalizer, proto.comparison) for c in chunks]
        chunked = summarise_scores([c.scores for c in scored], proto.alphas, proto.averaging)
        assert chunked == pck_from_predictions(json.loads(json.dumps(old)), proto.alphas, proto.normalizer,
                                               proto.comparison, proto.averaging)  # fmt: skip
        by_hand = _pck_by_hand(old, proto.alphas, proto.normalizer, proto.comparison, proto.averaging)
        assert np.allclose(list(chunked["per_image"].values()), by_hand["per_image"], rtol=0, atol=1e-12)


def test_a_pair_with_a_visible_keypoint_and_no_box_length_is_one_error():
    pairs = [p for p in open_dataset("builtin").pairs("test")[:2]]
    bad = ChunkPredictions.of_pairs(pairs, np.zeros((sum(len(p.src_kps) for p in pairs), 2)))
    flat = bad.trg_bndbox.copy()
    flat[1, 2] = flat[1, 0]  # x2 = x1
    flat[1, 3] = flat[1, 1]
    with pytest.raises(InputError, match=f"pair {pairs[1].pair_id}: the bbox normaliser length is not positive"):
        ChunkPredictions(**{**bad.__dict__, "trg_bndbox": flat}).scored((0.1,), "bbox", "<=")


def _cancelled_run(work, enc) -> int:
    """Cancel an evaluation of the builtin set after some chunks of 8 pairs; the number of checkpoints left."""
    with pytest.raises(JobCancelled):
        ev.evaluate("builtin", enc, batch_size=3, work_dir=work, cancelled=lambda: enc.forward_calls >= 12)
    done = len(list(work.glob("*-chunk*.npz")))
    assert 0 < done < 13
    return done


def test_checkpoints_of_the_old_json_format_are_resumed_and_give_the_fresh_result(isolated_home, tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "CHUNK_PAIRS", 8)
    work = tmp_path / "w"
    done = _cancelled_run(work, TinyConvEncoder())
    pairs = open_dataset("builtin").pairs("test")
    for path in sorted(work.glob("*-chunk*.npz")):  # rewritten as the JSON records earlier versions wrote
        k = int(path.stem.rsplit("chunk", 1)[1])
        records = read_checkpoint(path, pairs[8 * k : 8 * k + 8]).records()
        path.with_suffix(".json").write_text(json.dumps(records), encoding="utf-8")
        path.unlink()
    resumed = ev.evaluate("builtin", TinyConvEncoder(), batch_size=3, work_dir=work, record=False)
    assert resumed.stats.pairs_resumed == 8 * done and resumed.stats.pairs_computed == 101 - 8 * done
    monkeypatch.setenv("LAW_EXPLORER_HOME", str(tmp_path / "fresh-home"))
    fresh = ev.evaluate("builtin", TinyConvEncoder(), batch_size=3, record=False)
    assert resumed.pck == fresh.pck


def _hostile_files(path, pairs):
    """(name, writer) of malformed checkpoints for the chunk of ``pairs`` at ``path``."""
    counts = np.asarray([len(p.src_kps) for p in pairs])
    good = {"format": np.asarray(1), "pair_ids": np.asarray([p.pair_id for p in pairs]), "counts": counts,
            "pred": np.zeros((int(counts.sum()), 2))}  # fmt: skip

    def npz(**changes):
        def write():
            with open(path, "wb") as fh:
                np.savez(fh, **{k: v for k, v in {**good, **changes}.items() if v is not None})
        return write

    def raw(data: bytes, where=None):
        return lambda: (where or path).write_bytes(data)

    def lying_header(rows: int):
        """An archive whose predictions claim ``rows`` x 2 float64 in their header and hold 64 bytes."""
        def write():
            npz()()
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (rows, 2)})
            entries = {}
            with zipfile.ZipFile(path) as z:
                entries = {name: z.read(name) for name in z.namelist()}
            entries["pred.npy"] = header.getvalue() + bytes(64)
            with zipfile.ZipFile(path, "w") as z:
                for name, data in entries.items():
                    z.writestr(name, data)
        return write

    legacy = path.with_suffix(".json")
    return [
        ("a header claiming 14.6 TiB", lying_header(10**12)),
        ("a header claiming 3 GiB", lying_header(2 * 10**8)),
        ("garbage", raw(b"\x00not a zip at all")),
        ("empty", raw(b"")),
        ("truncated", lambda: (npz()(), path.write_bytes(path.read_bytes()[:300]))),
        ("a lone npy", lambda: np.save(open(path, "wb"), np.zeros((3, 2)))),
        ("a pickled object array", npz(pred=np.asarray([{"x": 1}], dtype=object))),
        ("another chunk's pair ids", npz(pair_ids=np.asarray(["x"] * len(pairs)))),
        ("wrong counts", npz(counts=counts + 1)),
        ("float32 predictions", npz(pred=np.zeros((int(counts.sum()), 2), dtype=np.float32))),
        ("too few predictions", npz(pred=np.zeros((1, 2)))),
        ("a missing entry", npz(counts=None)),
        ("an unknown format", npz(format=np.asarray(99))),
        ("a zip of text", lambda: zipfile.ZipFile(path, "w").writestr("pred.npy", "hello")),
        ("old json: garbage", raw(b"{[", legacy)),
        ("old json: not a list", raw(b'{"a": 1}', legacy)),
        ("old json: other pairs", raw(json.dumps([{"pair_id": "x", "pred_kps": []}] * len(pairs)).encode(), legacy)),
        ("old json: text for numbers", raw(json.dumps([{"pair_id": p.pair_id, "pred_kps": "1,2"} for p in pairs]).encode(), legacy)),
        ("old json: not utf-8", raw(b"\xff\xfe\x00", legacy)),
    ]


def test_malformed_checkpoints_are_matched_again_without_unpickling(isolated_home, tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "CHUNK_PAIRS", 8)
    work = tmp_path / "w"
    fresh = ev.evaluate("builtin", TinyConvEncoder(), limit=16, work_dir=work, record=False)  # 2 checkpoints
    first, second = sorted(work.glob("*-chunk*.npz"))
    pairs = open_dataset("builtin").pairs("test")[:8]

    def no_pickle(*_args, **_kwargs):
        raise AssertionError("a checkpoint was unpickled")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    cases = _hostile_files(first, pairs)
    for name, write in cases:
        for path in (first, first.with_suffix(".json")):
            path.unlink(missing_ok=True)
        write()
        assert read_checkpoint(first, pairs) is None, name
        again = ev.evaluate("builtin", TinyConvEncoder(), limit=16, work_dir=work, record=False)
        assert again.stats.pairs_computed == 8 and again.stats.pairs_resumed == 8, name  # the second one is read
        assert again.pck == fresh.pck, name
        assert read_checkpoint(first, pairs) is not None and second.exists(), name  # rewritten in this format
    assert len(cases) == 19
