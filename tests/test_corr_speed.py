"""Speed paths of C evaluation give the same answers: prefetching decode threads, precision-keyed cache, CLI knobs."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from _checkpoints import checkpoint_contents
from _encoders import TinyConvEncoder

from engine.correspondence import cache
from engine.correspondence import evaluate as ev
from engine.correspondence.datasets import open_dataset
from engine.correspondence.features import FeatureProvider
from engine.correspondence.prefetch import effective_precision, prepared_batches
from engine.encoders.base import Preprocessing
from engine.encoders.preprocess import prepare
from engine.errors import InputError


def test_prepared_batches_keep_order_and_pixels():
    ds = open_dataset("builtin")
    pre = Preprocessing(input_size=(40, 56), resize="letterbox")
    ids = [p.src_id for p in ds.pairs("test")][:7] + [p.trg_id for p in ds.pairs("test")][:7]
    batches = [ids[i : i + 3] for i in range(0, len(ids), 3)]
    sequential = list(prepared_batches(batches, ds.load_image, pre, workers=0))
    threaded = list(prepared_batches(batches, ds.load_image, pre, workers=4))
    assert [b for b, _ in threaded] == [b for b, _ in sequential] == batches
    for (batch, a), (_, b) in zip(sequential, threaded, strict=True):
        expected, _ = prepare([ds.load_image(i) for i in batch], pre)
        assert torch.equal(a, expected) and torch.equal(b, expected)


def test_closing_the_stream_early_stops_the_decode_threads():
    ds = open_dataset("builtin")
    ids = [p.src_id for p in ds.pairs("test")]
    stream = prepared_batches([ids[i : i + 2] for i in range(0, len(ids), 2)], ds.load_image,
                              Preprocessing(input_size=(32, 32)), workers=3)  # fmt: skip
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("corr-decode")]


def test_prefetching_provider_gives_the_sequential_features(isolated_home):
    ds = open_dataset("builtin")
    enc = TinyConvEncoder()
    ids = list(dict.fromkeys(p.src_id for p in ds.pairs("test")))
    seq = FeatureProvider(enc, ds, enc.preprocessing, batch_size=3, use_cache=False, workers=0).get(ids)
    par = FeatureProvider(enc, ds, enc.preprocessing, batch_size=3, use_cache=False, workers=3).get(ids)
    assert list(seq) == list(par) == ids
    for i in ids:
        assert np.array_equal(seq[i].features, par[i].features)


def test_prefetching_evaluation_gives_identical_records(isolated_home, tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "CHUNK_PAIRS", 8)
    seq = ev.evaluate("builtin", TinyConvEncoder(), limit=20, workers=0, batch_size=3, work_dir=tmp_path / "a",
                      record=False)  # fmt: skip
    assert cache.enforce_limit(limit_bytes=0) == seq.stats.images
    par = ev.evaluate("builtin", TinyConvEncoder(), limit=20, workers=3, batch_size=3, work_dir=tmp_path / "b",
                      record=False)  # fmt: skip
    assert par.stats.images_encoded == seq.stats.images_encoded == seq.stats.images
    assert par.stats.forwards == seq.stats.forwards
    assert par.pck == seq.pck
    assert checkpoint_contents(tmp_path / "a") == checkpoint_contents(tmp_path / "b") != []
    again = ev.evaluate("builtin", TinyConvEncoder(), limit=20, workers=3, record=False)
    assert again.stats.images_encoded == 0 and again.pck == seq.pck


def test_precision_is_part_of_the_cache_key(isolated_home):
    args = ("enc", "w", {"input_size": [8, 8]}, "default", "image-1")
    assert cache.feature_key(*args) == cache.feature_key(*args, precision="fp32")
    assert cache.feature_key(*args, precision="bf16") != cache.feature_key(*args)
    assert cache.feature_key(*args, precision="tf32") not in {cache.feature_key(*args), cache.feature_key(*args, precision="bf16")}
    assert effective_precision("tf32", "cpu") == "fp32" and effective_precision("tf32", "cuda") == "tf32"
    with pytest.raises(InputError, match="precision"):
        effective_precision("fp8", "cpu")

    enc = TinyConvEncoder()
    fp32 = ev.evaluate("builtin", enc, limit=6, record=False)
    bf16 = ev.evaluate("builtin", enc, limit=6, record=False, precision="bf16")
    assert bf16.stats.images_encoded == fp32.stats.images  # fp32 features are never reused as bf16
    assert bf16.result_id != fp32.result_id and bf16.encoder.precision == "bf16"
    assert cache.cache_summary()["entries"] == 2 * fp32.stats.images
    ds = open_dataset("builtin")
    image = ds.pairs("test")[0].src_id
    a = FeatureProvider(enc, ds, enc.preprocessing).get([image])[image].features
    b = FeatureProvider(enc, ds, enc.preprocessing, precision="bf16").get([image])[image].features
    assert not np.array_equal(a, b) and np.allclose(a, b, atol=0.1)
    tf32 = ev.evaluate("builtin", enc, limit=6, record=False, precision="tf32")  # plain fp32 on a CPU
    assert tf32.stats.images_encoded == 0 and tf32.result_id == fp32.result_id


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matching_agrees_with_cpu(isolated_home):
    cpu = ev.evaluate("builtin", TinyConvEncoder(), limit=20, record=False)
    gpu_encoder = TinyConvEncoder().to("cuda")
    gpu = ev.evaluate("builtin", gpu_encoder, limit=20, record=False, work_dir=isolated_home / "gpu-run")
    assert gpu.stats.device.startswith("cuda") and gpu.stats.images_encoded == 0  # same fp32 cache keys
    bf16 = ev.evaluate("builtin", gpu_encoder, limit=20, record=False, precision="bf16")
    assert bf16.stats.images_encoded == cpu.stats.images
    for alpha, value in cpu.pck["per_point"].items():
        assert abs(gpu.pck["per_point"][alpha] - value) <= 0.02


def test_cli_precision_and_workers_flags(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "LAW_EXPLORER_HOME": str(tmp_path), "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"}
    base = [sys.executable, "-m", "engine", "correspondence", "evaluate", "--dataset", "builtin", "--encoder", "pixels-8",
            "--limit", "4", "--format", "json"]  # fmt: skip
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run([*base, "--precision", "bf16", "--workers", "2"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["encoder"]["precision"] == data["stats"]["precision"] == "bf16" and data["stats"]["pairs"] == 4
    bad = subprocess.run([*base, "--precision", "fp8"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "precision" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_preprocessing_equals_cpu_preprocessing():
    from engine.encoders.preprocess import prepare

    ds = open_dataset("builtin")
    images = [ds.load_image(p.src_id) for p in ds.pairs("test")[:6]]
    enc = TinyConvEncoder()
    cpu, _ = prepare(images, enc.preprocessing)
    gpu, _ = prepare(images, enc.preprocessing, "cuda")
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_features_normalised_at_encoding_match_the_cached_path(isolated_home):
    gpu_encoder = TinyConvEncoder().to("cuda")
    cold = ev.evaluate("builtin", gpu_encoder, limit=30, record=False)  # units kept from the forward
    cached = ev.evaluate("builtin", gpu_encoder, limit=30, record=False)  # units from the fp16 cache files
    assert cold.stats.images_encoded > 0 and cached.stats.images_encoded == 0
    assert cached.pck == cold.pck


def test_gpu_bench_forward_timing_waits_for_the_device_it_times(monkeypatch):
    # torch.cuda.synchronize() waits for the current device only (cuda:0 in a fresh thread): a forward timed on cuda:1
    # would then time the kernel launches, not the forward
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "bench_gpu_correspondence.py"
    spec = importlib.util.spec_from_file_location("bench_gpu_correspondence_under_test", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    enc = TinyConvEncoder()
    pixels, _ = prepare([np.zeros((16, 16, 3), np.uint8)], enc.preprocessing)
    assert bench.forward_images_per_s(enc, pixels, "cuda:1", "fp32", 2) > 0
    assert len(waited) == 2 and all(d is not None and torch.device(d) == torch.device("cuda:1") for d in waited)
