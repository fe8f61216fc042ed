"""Datasets: builtin ground truth is exact; the SPair loader reads the standard layout; bad folders fail clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.correspondence.datasets import open_dataset
from engine.correspondence.synthetic import write_synthetic_spair
from engine.errors import InputError, NotAvailableError


@pytest.fixture(scope="module")
def builtin():
    return open_dataset("builtin")


def _pixels(image, kps):
    idx = np.floor(kps).astype(int)
    return image[idx[:, 1], idx[:, 0]].astype(np.float64)


def _bilinear(image, kps):
    """Sample at continuous coordinates (pixel centre at c + 0.5)."""
    x, y = kps[:, 0] - 0.5, kps[:, 1] - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    h, w = image.shape[:2]
    x0, y0 = np.clip(x0, 0, w - 2), np.clip(y0, 0, h - 2)
    img = image.astype(np.float64)
    return (
        img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
        + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy
    )


def test_builtin_is_deterministic_and_sized(builtin):
    pairs = builtin.pairs()
    assert 60 <= len(pairs) <= 150
    assert len(builtin.categories) >= 8
    again = type(builtin)()
    assert again.key == builtin.key
    assert [p.pair_id for p in again.pairs()] == [p.pair_id for p in pairs]
    assert np.array_equal(again.load_image(pairs[5].trg_id), builtin.load_image(pairs[5].trg_id))
    assert all(p.src_kps.shape == p.trg_kps.shape and p.visible.any() for p in pairs)
    with pytest.raises(InputError):
        builtin.pairs("trn")


def test_flip_and_crop_ground_truth_is_pixel_exact(builtin):
    checked = 0
    for p in builtin.pairs():
        if p.pair_id.split(":")[1] in ("hflip", "crop"):
            src, trg = builtin.load_image(p.src_id), builtin.load_image(p.trg_id)
            v = p.visible
            assert np.array_equal(_pixels(src, p.src_kps[v]), _pixels(trg, p.trg_kps[v])), p.pair_id
            checked += 1
    assert checked >= 20


def test_continuous_warps_land_on_the_same_content(builtin):
    rng = np.random.default_rng(0)
    for p in builtin.pairs():
        warp = p.pair_id.split(":")[1]
        if warp in ("hflip", "crop", "photometric") or p.category == "motorcycle":
            continue
        src, trg = builtin.load_image(p.src_id), builtin.load_image(p.trg_id)
        v = p.visible & (p.trg_kps[:, 0] > 1) & (p.trg_kps[:, 1] > 1)
        v &= (p.trg_kps[:, 0] < p.trg_size[0] - 1) & (p.trg_kps[:, 1] < p.trg_size[1] - 1)
        a = _bilinear(src.astype(float), p.src_kps[v])
        b = _bilinear(trg.astype(float), p.trg_kps[v])
        wrong = _bilinear(trg.astype(float), rng.permutation(p.trg_kps[v]))
        assert np.abs(a - b).mean() < 0.6 * np.abs(a - wrong).mean() + 1.0, p.pair_id


def test_points_leaving_the_image_are_not_visible(builtin):
    for p in builtin.pairs():
        w, h = p.trg_size
        inside = (p.trg_kps[:, 0] >= 0) & (p.trg_kps[:, 0] < w) & (p.trg_kps[:, 1] >= 0) & (p.trg_kps[:, 1] < h)
        assert not (p.visible & ~inside).any(), p.pair_id
    crops = [p for p in builtin.pairs() if p.pair_id.endswith(":crop")]
    assert any(not p.visible.all() for p in crops)


def test_stereo_pairs_follow_disparity(builtin):
    stereo = [p for p in builtin.pairs() if p.category == "motorcycle"]
    assert len(stereo) == 2
    for p in stereo:
        v = p.visible
        assert np.allclose(p.trg_kps[v, 1], p.src_kps[v, 1])
        assert (p.trg_kps[v, 0] <= p.src_kps[v, 0]).all()  # x_right = x_left - d, d > 0


def test_spair_loader_reads_the_standard_layout(tmp_path):
    root = write_synthetic_spair(tmp_path / "SPair-71k", n_categories=2, images_per_category=4, n_pairs=6, size_range=(40, 60))
    ds = open_dataset(f"spair:{root}")
    assert ds.categories == ["cat00", "cat01"]
    pairs = ds.pairs("test")
    assert len(pairs) == 6 and len(ds.pairs("test", limit=2)) == 2
    p = pairs[0]
    data = json.loads(next((root / "PairAnnotation" / "test").glob(f"{p.pair_id}.json")).read_text())
    assert p.category == data["category"] and p.src_id == f"{p.category}/{data['src_imname']}"
    assert np.array_equal(p.src_kps, np.asarray(data["src_kps"], dtype=float).reshape(-1, 2))
    assert p.trg_bbox == tuple(float(v) for v in data["trg_bndbox"])
    assert p.trg_size == tuple(data["trg_imsize"][:2])
    image = ds.load_image(p.src_id)
    assert image.dtype == np.uint8 and image.shape == (p.src_size[1], p.src_size[0], 3)
    assert ds.image_key(p.src_id) != ds.image_key(p.trg_id)
    with pytest.raises(InputError, match="split"):
        ds.pairs("trn")


def test_spair_errors_name_the_problem(tmp_path):
    with pytest.raises(NotAvailableError):
        open_dataset(f"spair:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="JPEGImages"):
        open_dataset(f"spair:{tmp_path / 'empty'}")
    root = write_synthetic_spair(tmp_path / "bad", n_categories=1, images_per_category=2, n_pairs=2, size_range=(32, 40))
    victim = sorted((root / "PairAnnotation" / "test").glob("*.json"))[1]
    victim.write_text("{not json")
    with pytest.raises(InputError, match=victim.name.replace(":", ".")):
        open_dataset(f"spair:{root}").pairs("test")
    victim.write_text(json.dumps({"category": "cat00"}))
    with pytest.raises(InputError, match="malformed"):
        open_dataset(f"spair:{root}").pairs("test")
    with pytest.raises(InputError):
        open_dataset("nope:/x")
