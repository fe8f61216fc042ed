"""Evaluation: feature cache (a rerun encodes nothing), resume after a cancel, results table, viewer helpers."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.correspondence import cache, results
from engine.correspondence import evaluate as ev
from engine.correspondence.viewer import feature_pca_rgb, predict_pair
from engine.encoders.base import Preprocessing, VisionEncoder
from engine.jobs.context import JobCancelled


class TinyPatchEncoder(VisionEncoder):
    """Raw 8 x 8 pixel patches as features (a deterministic, weight-free test encoder)."""

    name = "tiny-patches"
    family = "test"
    patch_size = 8
    stride = 8
    embed_dim = 192

    def __init__(self) -> None:
        super().__init__()
        self.images_seen = 0

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(input_size=(64, 64), resize="letterbox")

    def weights_hash(self) -> str:
        return "tiny-patches-v1"

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.images_seen += pixels.shape[0]
        return F.pixel_unshuffle(pixels, 8)


def test_second_evaluation_encodes_nothing(isolated_home):
    enc = TinyPatchEncoder()
    first = ev.evaluate("builtin", enc, limit=20)
    assert first.stats.images_encoded == first.stats.images == enc.images_seen > 0
    assert first.stats.cache_hits == 0
    assert set(first.pck) >= {"per_image", "per_point", "per_category"}
    assert set(first.pck["per_image"]) == {"0.05", "0.1", "0.15"}
    assert first.protocol["name"] == "default" and first.protocol["hash"]
    seen = enc.images_seen
    second = ev.evaluate("builtin", enc, limit=20)
    assert enc.images_seen == seen
    assert second.stats.images_encoded == 0 and second.stats.cache_hits == first.stats.images
    assert second.pck == first.pck
    summary = cache.cache_summary()
    assert summary["entries"] == first.stats.images and summary["bytes"] > 0


def test_flip_pairs_are_matched_well_by_raw_patches(isolated_home):
    out = ev.evaluate("builtin", TinyPatchEncoder(), record=False)
    hflip = [k for k in out.pck["per_category"]]
    assert hflip  # categories present
    assert 0.2 < out.pck["per_image"]["0.1"] <= 1.0


def test_resume_computes_only_the_remaining_pairs(isolated_home, tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "CHUNK_PAIRS", 8)
    enc = TinyPatchEncoder()
    work = tmp_path / "work"

    def cancel_after_three_chunks() -> bool:
        return len(list(work.glob("*-chunk*.npz"))) >= 3

    with pytest.raises(JobCancelled):
        ev.evaluate("builtin", enc, limit=40, cancelled=cancel_after_three_chunks, work_dir=work)
    done = len(list(work.glob("*-chunk*.npz")))
    assert done == 3
    resumed = ev.evaluate("builtin", enc, limit=40, work_dir=work)
    assert resumed.stats.pairs_resumed == 24 and resumed.stats.pairs_computed == 16
    fresh = ev.evaluate("builtin", enc, limit=40, work_dir=tmp_path / "other")
    assert fresh.pck == resumed.pck


def test_run_job_inline_resumes_from_work_dir(isolated_home, tmp_path):
    from engine.jobs import run_inline

    seen = []
    out = run_inline(ev.JOB_TARGET, {"dataset": "builtin", "encoder": "pixels-8", "limit": 6},
                     progress=lambda d, t, m: seen.append((d, t)), work_dir=tmp_path / "w")
    assert out["stats"]["pairs"] == 6 and seen[-1] == (6, 6)
    again = run_inline(ev.JOB_TARGET, {"dataset": "builtin", "encoder": "pixels-8", "limit": 6}, work_dir=tmp_path / "w")
    assert again["stats"]["pairs_resumed"] == 6 and again["stats"]["images_encoded"] == 0


def test_results_table_and_attach(isolated_home, monkeypatch):
    res = ev.evaluate("builtin", TinyPatchEncoder(), limit=10, protocol="paper-compat")
    rows = results.list_results()
    assert [r["id"] for r in rows] == [res.result_id]
    assert rows[0]["protocol_name"] == "paper-compat" and rows[0]["protocol_hash"] == res.protocol["hash"]
    assert rows[0]["pck"] == res.pck
    calls = []
    fake = types.ModuleType("engine.study")
    fake.set_setting_scores = lambda study, setting, **scores: calls.append((study, setting, scores))
    monkeypatch.setitem(sys.modules, "engine.study", fake)
    value = results.attach_c_to_study(res.result_id, "s1", "tiny")
    [(study, setting, scores)] = calls
    assert (study, setting) == ("s1", "tiny") and scores["C"] == pytest.approx(100 * res.pck["per_image"]["0.1"])
    # how it was measured travels with it: 10 builtin pairs are not on the scale of SPair-71k test C
    assert scores["metadata"]["c_method"] == ("builtin test PCK@0.10 per image x 100, protocol paper-compat, first 10 "
                                              "pairs (demo scale: not comparable to SPair-71k test C)")
    assert value == pytest.approx(100 * res.pck["per_image"]["0.1"])
    table = results.per_category_table(res, rows[0])
    assert table.shape[1] == 2 and "overall (per_image)" in table.index


def test_cache_limit_evicts_least_recently_used(isolated_home, monkeypatch):
    ev.evaluate("builtin", TinyPatchEncoder(), limit=10, record=False)
    before = cache.cache_summary()
    assert cache.enforce_limit(limit_bytes=before["bytes"] // 2) > 0
    after = cache.cache_summary()
    assert after["bytes"] <= before["bytes"] // 2 and after["entries"] < before["entries"]


def test_predict_pair_and_feature_pca(isolated_home):
    out = predict_pair(TinyPatchEncoder(), "builtin", "astronaut:hflip")
    n = len(out.src_kps)
    assert out.pred_kps.shape == (n, 2) and out.gt_kps.shape == (n, 2) and len(out.visible) == n
    assert set(out.correct) == {"0.05", "0.1", "0.15"} and len(out.correct["0.1"]) == n
    assert out.src_image.dtype == np.uint8 and out.src_features.shape[0] == 192
    a, b = feature_pca_rgb(out.src_features, out.trg_features)
    assert a.shape == (8, 8, 3) and b.shape == (8, 8, 3) and a.dtype == np.uint8
    with pytest.raises(Exception, match="no pair"):
        predict_pair(TinyPatchEncoder(), "builtin", "nope")


def test_background_job_runs_in_a_worker(isolated_home):
    from engine import jobs

    job_id = ev.submit_evaluation("builtin", "pixels-8", limit=4)
    record = jobs.wait(job_id, timeout=240)
    assert record.status == "done", record.error
    assert record.result["stats"]["pairs"] == 4 and record.result["protocol"]["name"] == "default"
    assert [r["id"] for r in results.list_results()] == [record.result["result_id"]]


def test_a_torn_cache_file_is_re_encoded(isolated_home):
    enc = TinyPatchEncoder()
    first = ev.evaluate("builtin", enc, limit=3, record=False)
    victim = sorted((isolated_home / "features").rglob("*.npy"))[0]
    victim.write_bytes(b"not an array")
    again = ev.evaluate("builtin", enc, limit=3, record=False)
    assert again.stats.images_encoded == 1 and again.pck == first.pck


def test_resize_knob_switches_preprocessing():
    from engine.correspondence.features import protocol_preprocessing
    from engine.correspondence.protocols import get_protocol

    enc = TinyPatchEncoder()
    assert protocol_preprocessing(enc, get_protocol("default")) == enc.preprocessing
    stretched = protocol_preprocessing(enc, get_protocol("paper-compat"))
    assert stretched.resize == "stretch" and stretched.input_size == (64, 64)


def test_lru_keeps_recently_used_features(isolated_home):
    from engine.correspondence.datasets import open_dataset
    from engine.correspondence.features import FeatureProvider

    ds = open_dataset("builtin")
    enc = TinyPatchEncoder()
    old_ids, new_ids = ["astronaut", "camera"], ["chelsea", "coffee"]
    first = FeatureProvider(enc, ds, enc.preprocessing)
    first.get(old_ids + new_ids)
    first.flush()
    again = FeatureProvider(enc, ds, enc.preprocessing)
    again.get(old_ids)  # a later use of the "old" images makes them the most recent
    again.flush()
    per_file = cache.cache_summary()["bytes"] // 4
    assert cache.enforce_limit(limit_bytes=2 * per_file + 10) == 2
    check = FeatureProvider(enc, ds, enc.preprocessing)
    check.get(old_ids)
    assert check.stats.cache_hits == 2 and check.stats.images_encoded == 0
    check.get(new_ids)
    assert check.stats.images_encoded == 2


@pytest.mark.parametrize(("dataset", "split", "limit", "paper_scale"), [
    ("spair:/data/SPair-71k", "test", None, True),
    ("spair:/data/SPair-71k", "test", 500, False),
    ("spair:/data/SPair-71k", "trn", None, False),
    ("builtin", "test", None, False),
])
def test_only_the_whole_spair_test_split_is_described_as_paper_scale_c(dataset, split, limit, paper_scale):
    text = results.c_method(dataset, split, limit, "default")
    assert ("demo scale" not in text) == paper_scale
    assert text.startswith(f"{'SPair-71k' if dataset != 'builtin' else 'builtin'} {split} PCK@0.10")
    assert (f"first {limit} pairs" in text) == (limit is not None)


def test_c_method_is_the_same_from_an_evaluation_its_json_and_its_stored_row(isolated_home):
    res = ev.evaluate("builtin", TinyPatchEncoder(), limit=4, protocol="default")
    expected = results.c_method("builtin", "test", 4, "default")
    assert results.c_method_of(res) == results.c_method_of(res.to_dict()) == expected
    assert results.c_method_of(results.get_result(res.result_id)) == expected
