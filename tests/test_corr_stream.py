"""Matching beside the encoding (engine.correspondence.streaming): brute-force oracle, failures, cancel, mixed runs."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from _encoders import TinyConvEncoder

from engine.correspondence import cache, results, streaming
from engine.correspondence import evaluate as ev
from engine.correspondence.datasets import open_dataset
from engine.correspondence.features import FeatureProvider
from engine.correspondence.matching import make_grid_map
from engine.correspondence.predictions import read_checkpoint
from engine.errors import LawExplorerError
from engine.jobs.context import JobCancelled

PIPELINE_THREADS = ("corr-match", "corr-write", "corr-decode")


@pytest.fixture(params=["thread", "inline"])
def matching_mode(request, monkeypatch) -> str:
    """Both ways chunks are matched beside the encoding: a matching thread (as beside a GPU) and inline (CPU)."""
    monkeypatch.setattr(streaming, "threaded_matching", lambda device: request.param == "thread")
    return request.param


def _pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(PIPELINE_THREADS)]


def _rows() -> list[tuple[str, str]]:
    from engine import store

    with store.connect(read_only=True) as con:
        return con.execute("SELECT key, path FROM corr_feature_cache").fetchall()


def test_chunks_are_matched_while_encoding_goes_on_and_equal_a_brute_force_oracle(isolated_home, tmp_path, monkeypatch, matching_mode):
    monkeypatch.setattr(ev, "CHUNK_PAIRS", 8)
    enc = TinyConvEncoder()
    events: list[str] = []
    real_forward, real_match = enc._forward, ev.match_records
    monkeypatch.setattr(enc, "_forward", lambda pixels: (events.append("forward"), real_forward(pixels))[1])
    monkeypatch.setattr(ev, "match_records", lambda *a: (events.append(threading.current_thread().name), real_match(*a))[1])
    out = ev.evaluate("builtin", enc, batch_size=3, work_dir=tmp_path / "w", record=False)
    last_forward = max(k for k, event in enumerate(events) if event == "forward")
    matcher = "corr-match" if matching_mode == "thread" else threading.current_thread().name
    assert matcher in events[:last_forward]  # chunks were matched before the last batch was encoded
    assert set(events) == {"forward", matcher}
    assert out.stats.images_encoded == out.stats.images and out.stats.cache_hits == 0
    assert out.stats.pairs_computed == out.stats.pairs == 101 and not _pipeline_threads()

    ds = open_dataset("builtin")
    pairs = ds.pairs("test")
    feats = FeatureProvider(enc, ds, enc.preprocessing).get([p.src_id for p in pairs] + [p.trg_id for p in pairs])
    paths = sorted((tmp_path / "w").glob("*-chunk*.npz"))
    records = [r for k, path in enumerate(paths) for r in read_checkpoint(path, pairs[8 * k : 8 * k + 8]).records()]
    assert [r["pair_id"] for r in records] == [p.pair_id for p in pairs]
    checked = 0
    for pair, record in zip(pairs, records, strict=True):
        src, trg = (feats[i].features.astype(np.float64) for i in (pair.src_id, pair.trg_id))
        src /= np.maximum(np.linalg.norm(src, axis=0, keepdims=True), 1e-8)
        trg /= np.maximum(np.linalg.norm(trg, axis=0, keepdims=True), 1e-8)
        src_map = make_grid_map(pair.src_size, enc.preprocessing, src.shape[1:], 8, 8)
        trg_map = make_grid_map(pair.trg_size, enc.preprocessing, trg.shape[1:], 8, 8)
        for k, (i, j) in enumerate(src_map.to_cell(pair.src_kps)):
            sim = np.einsum("c,chw->hw", src[:, i, j], trg).ravel()
            top = np.sort(sim)[-2:]
            if top[1] - top[0] < 1e-5:  # a near tie: float32 and float64 may pick either cell
                continue
            cell = np.array([[sim.argmax() // trg.shape[2], sim.argmax() % trg.shape[2]]], dtype=np.float64)
            assert np.allclose(record["pred_kps"][k], np.round(trg_map.from_cell(cell)[0], 3), atol=1e-9)
            checked += 1
    assert checked > 500


def test_a_run_mixing_cached_and_new_images_equals_a_fresh_run(isolated_home, tmp_path, monkeypatch, matching_mode):
    monkeypatch.setattr(ev, "CHUNK_PAIRS", 8)
    ev.evaluate("builtin", TinyConvEncoder(), limit=20, record=False)  # caches the images of the first 20 pairs
    mixed = ev.evaluate("builtin", TinyConvEncoder(), limit=60, batch_size=4, record=False)
    assert 0 < mixed.stats.cache_hits < mixed.stats.images
    assert mixed.stats.images_encoded + mixed.stats.cache_hits == mixed.stats.images
    monkeypatch.setenv("LAW_EXPLORER_HOME", str(tmp_path / "fresh-home"))
    fresh = ev.evaluate("builtin", TinyConvEncoder(), limit=60, batch_size=4, record=False)
    assert fresh.stats.images_encoded == fresh.stats.images and fresh.stats.forwards == -(-fresh.stats.images // 4)
    assert mixed.pck == fresh.pck


def test_a_failed_cache_write_is_one_clear_error_and_leaves_no_half_written_entry(isolated_home, tmp_path, monkeypatch, matching_mode):
    monkeypatch.setattr(ev, "CHUNK_PAIRS", 8)
    real = cache.write_files
    calls = []

    def failing(entries):
        calls.append(len(entries))
        if len(calls) == 3:  # half the batch written, then the disk fills up
            real(entries[: len(entries) // 2])
            raise OSError(28, "No space left on device")
        return real(entries)

    monkeypatch.setattr(cache, "write_files", failing)
    with pytest.raises(LawExplorerError, match=r"cannot write the feature cache in .*No space left on device"):
        ev.evaluate("builtin", TinyConvEncoder(), limit=40, batch_size=3, workers=1, work_dir=tmp_path / "w")
    assert not _pipeline_threads()
    assert results.list_results() == []
    rows = _rows()
    assert rows  # the batches written before the failure are indexed
    for _key, path in rows:  # every row names a whole file
        assert np.load(path).dtype == np.float16
    files = list((isolated_home / "features").rglob("*"))
    assert not [f for f in files if f.name.startswith(".")]  # no temporary file left behind
    monkeypatch.setattr(cache, "write_files", real)
    resumed = ev.evaluate("builtin", TinyConvEncoder(), limit=40, batch_size=3, work_dir=tmp_path / "w", record=False)
    monkeypatch.setenv("LAW_EXPLORER_HOME", str(tmp_path / "fresh-home"))
    fresh = ev.evaluate("builtin", TinyConvEncoder(), limit=40, batch_size=3, record=False)
    assert resumed.pck == fresh.pck


def test_a_matching_error_stops_the_encoding_and_surfaces_once(isolated_home, tmp_path, monkeypatch, matching_mode):
    monkeypatch.setattr(ev, "CHUNK_PAIRS", 8)
    enc = TinyConvEncoder()
    real, calls = ev.match_records, []

    def broken(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("matching broke")
        return real(*args)

    monkeypatch.setattr(ev, "match_records", broken)
    with pytest.raises(RuntimeError, match="matching broke"):
        ev.evaluate("builtin", enc, batch_size=2, work_dir=tmp_path / "w", record=False)
    assert not _pipeline_threads()
    assert enc.forward_calls < -(-114 // 2)  # the encoding stopped before the end
    assert len(list((tmp_path / "w").glob("*-chunk*.npz"))) == 1
    assert all(np.load(path).dtype == np.float16 for _key, path in _rows())


def test_a_cancel_mid_encoding_stops_every_thread_and_the_rerun_resumes(isolated_home, tmp_path, monkeypatch, matching_mode):
    monkeypatch.setattr(ev, "CHUNK_PAIRS", 8)
    enc = TinyConvEncoder()
    with pytest.raises(JobCancelled):
        ev.evaluate("builtin", enc, batch_size=3, work_dir=tmp_path / "w", cancelled=lambda: enc.forward_calls >= 12)
    assert not _pipeline_threads()
    done = len(list((tmp_path / "w").glob("*-chunk*.npz")))
    assert 0 < done < 13
    resumed = ev.evaluate("builtin", enc, batch_size=3, work_dir=tmp_path / "w", record=False)
    assert resumed.stats.pairs_resumed == 8 * done and resumed.stats.pairs_computed == 101 - 8 * done
    monkeypatch.setenv("LAW_EXPLORER_HOME", str(tmp_path / "fresh-home"))
    fresh = ev.evaluate("builtin", TinyConvEncoder(), batch_size=3, record=False)
    assert resumed.pck == fresh.pck


def test_features_normalised_for_matching_equal_a_numpy_oracle_and_the_astype_path_bit_for_bit():
    from engine.correspondence.features import unit_of_array

    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((64, 9, 7)) * np.logspace(-9, 4, 7)).astype(np.float16)  # subnormals to large values
    arr[:, 0, 0] = 0.0  # an all-zero cell stays zero (norm clamped)
    expected = arr.astype(np.float32)
    expected /= np.maximum(np.sqrt((expected.astype(np.float64) ** 2).sum(0, keepdims=True)), 1e-8).astype(np.float32)
    got = unit_of_array(arr).numpy()
    assert got.dtype == np.float32 and np.allclose(got, expected, rtol=1e-6, atol=0) and not got[:, 0, 0].any()
    before = torch.from_numpy(arr.astype(np.float32))  # numpy's fp16 -> fp32 (the conversion used until now)
    before /= before.norm(dim=0, keepdim=True).clamp_min(1e-8)
    assert np.array_equal(got, before.numpy())
    arr.flags.writeable = False  # as arrays from Ray actors arrive
    assert np.array_equal(unit_of_array(arr).numpy(), got)


def test_the_matching_thread_never_multiplies_inside_a_tf32_forward(tmp_path, monkeypatch):
    # torch's matmul precision is one setting for the whole process: products the matching thread queued while the
    # encoding thread is inside a tf32 forward (CUDA) would run in TF32, so a cold run's matches (and PCK) would
    # depend on timing and differ from its cached re-run's (matched in the process's own precision)
    import time

    from engine.correspondence.prefetch import forward_precision

    pairs = open_dataset("builtin").pairs("test")[:2]
    ids = streaming.chunk_image_ids(pairs)
    seen = []

    def match(chunk_pairs, units, geometry):
        seen.append(torch.get_float32_matmul_precision())
        return "predictions"

    monkeypatch.setattr(streaming, "write_checkpoint", lambda path, records: None)
    own = torch.get_float32_matmul_precision()
    assert own != "high"
    matcher = streaming.ChunkMatcher({0: pairs}, {0: tmp_path / "chunk.npz"}, match, torch.device("cpu"), threaded=True)
    feats = [cache.CachedFeatures(np.ones((4, 3, 3), np.float16), 8.0, 8.0) for _ in ids]
    with forward_precision("tf32", "cuda"):  # sets the process-wide precision only: no device needed
        matcher.encoded(ids, feats)  # the chunk is ready: the thread takes it at once
        time.sleep(0.5)
        assert torch.get_float32_matmul_precision() == "high"
    assert matcher.finish() == {0: "predictions"}
    assert seen == [own]
    assert not _pipeline_threads()
