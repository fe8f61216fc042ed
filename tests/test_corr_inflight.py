"""One batch in flight on a GPU (engine.correspondence.inflight) and the packed image upload: the ordering logic on a
CPU with a simulated device, the same features, records and counts as the plain loop, cancel and errors; on CUDA
(skipped without one) bit-identical features against a plain per-image-upload loop, units complete when handed over,
a cancel leaving no partial cache entry."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from _checkpoints import checkpoint_contents
from _encoders import TinyConvEncoder

from engine.correspondence import evaluate as ev
from engine.correspondence import features as features_module
from engine.correspondence import streaming
from engine.correspondence.datasets import open_dataset
from engine.correspondence.features import FeatureProvider, unit_of_array
from engine.correspondence.inflight import lagged
from engine.encoders.base import Preprocessing, to_uint8_rgb
from engine.encoders.preprocess import prepare, prepare_tensors, upload_images
from engine.jobs.context import JobCancelled

PIPELINE_THREADS = ("corr-match", "corr-write", "corr-decode")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class FakeDevice:
    """A device that runs queued work only when an event after it is waited for; a result read earlier is missing."""

    def __init__(self) -> None:
        self.queue: list[int] = []
        self.results: dict[int, int] = {}
        self.log: list[tuple[str, int]] = []

    def launch(self, item: int) -> FakeEvent:
        self.log.append(("launch", item))
        self.queue.append(item)
        return FakeEvent(self, item)


class FakeEvent:
    def __init__(self, device: FakeDevice, item: int) -> None:
        self.device, self.item = device, item

    def synchronize(self) -> None:
        while self.item not in self.device.results:
            done = self.device.queue.pop(0)
            self.device.results[done] = done * 10


def _finish(event: FakeEvent) -> int:
    event.synchronize()
    event.device.log.append(("finish", event.item))
    return event.device.results[event.item]


def test_lagged_launches_item_k_plus_1_before_it_hands_out_item_k():
    device = FakeDevice()
    got = []
    for value in lagged(range(4), device.launch, _finish):
        device.log.append(("got", value // 10))
        got.append(value)
        assert len(device.queue) <= 1  # at most the next item is queued while the caller has this one
    assert got == [0, 10, 20, 30]
    assert device.log == [
        ("launch", 0), ("launch", 1), ("finish", 0), ("got", 0),
        ("launch", 2), ("finish", 1), ("got", 1),
        ("launch", 3), ("finish", 2), ("got", 2),
        ("finish", 3), ("got", 3),
    ]  # fmt: skip
    assert list(lagged([], device.launch, _finish)) == []


def test_lagged_hands_out_the_whole_item_before_an_error_of_the_next_one():
    def items():
        yield 0
        yield 1
        raise ValueError("image 2 is corrupt")

    device = FakeDevice()
    got = []
    with pytest.raises(ValueError, match="image 2"):
        for value in lagged(items(), device.launch, _finish):
            got.append(value)
    assert got == [0, 10] and device.log[-1] == ("finish", 1)

    def failing_launch(item: int) -> FakeEvent:
        if item == 2:
            raise RuntimeError("out of memory")
        return device.launch(item)

    device = FakeDevice()
    got = []
    with pytest.raises(RuntimeError, match="out of memory"):
        for value in lagged(range(5), failing_launch, _finish):
            got.append(value)
    assert got == [0, 10] and ("launch", 3) not in device.log


def test_closing_lagged_drops_the_launched_item_unfinished():
    device = FakeDevice()
    stream = lagged(range(10), device.launch, _finish)
    assert next(stream) == 0
    stream.close()
    assert device.log == [("launch", 0), ("launch", 1), ("finish", 0)]
    assert device.queue == [1]  # launched, never waited for nor handed out


def test_a_copy_out_waits_for_its_event_then_gives_ordinary_memory():
    from engine.correspondence.inflight import CopyOut

    host = torch.zeros(2, 3, dtype=torch.float16)  # the pinned buffer, filled by the "device" when the event is waited for

    class Event:
        waited = False

        def synchronize(self) -> None:
            host.copy_(torch.arange(6, dtype=torch.float16).view(2, 3))
            Event.waited = True

    array = CopyOut(host, Event()).array()
    assert Event.waited and np.array_equal(array, np.arange(6, dtype=np.float16).reshape(2, 3))
    assert array.flags.owndata and not np.shares_memory(array, host.numpy())


def test_packed_upload_gives_views_of_one_buffer_equal_to_the_images():
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    rgba = rng.integers(0, 256, (3, 11, 4), dtype=np.uint8)
    wide = rng.integers(0, 256, (2, 13, 3), dtype=np.uint8)
    images = [to_uint8_rgb(gray), to_uint8_rgb(rgba), rng.integers(0, 256, (1, 1, 3), dtype=np.uint8), wide[:, ::-1],
              to_uint8_rgb(rng.random((9, 4, 3)))]  # fmt: skip
    assert not images[1].flags.c_contiguous and not images[3].flags.c_contiguous
    views = upload_images(images, "cpu")
    assert [tuple(v.shape) for v in views] == [a.shape for a in images]
    for view, image in zip(views, images, strict=True):
        assert view.dtype == torch.uint8 and np.array_equal(view.numpy(), image)
    assert len({v.untyped_storage().data_ptr() for v in views}) == 1  # one buffer, one copy
    assert np.array_equal(views[0].numpy()[..., 1], gray) and np.array_equal(views[1].numpy(), rgba[..., :3])
    with pytest.raises(TypeError):
        upload_images([rng.random((2, 2, 3))], "cpu")  # only uint8: no silent cast


def test_prepare_of_packed_views_equals_prepare():
    ds = open_dataset("builtin")
    images = [to_uint8_rgb(ds.load_image(p.src_id)) for p in ds.pairs("test")[:5]]
    for pre in (Preprocessing(input_size=(40, 56), resize="letterbox"), Preprocessing(input_size=(33, 33)),
                Preprocessing(input_size=(24, 40), resize="shortest_side_center_crop")):  # fmt: skip
        expected, geoms = prepare(images, pre)
        got, got_geoms = prepare_tensors(upload_images(images, "cpu"), pre)
        assert torch.equal(got, expected) and got_geoms == geoms


@pytest.fixture
def simulated_gpu(monkeypatch) -> list[tuple[str, int]]:
    """The in-flight path on the CPU: copies out are queued on a simulated device and run only when waited for."""
    log: list[tuple[str, int]] = []

    class QueuedCopy:
        def __init__(self, tensor: torch.Tensor) -> None:
            self._tensor, self._host = tensor, None
            log.append(("queued", tensor.shape[0]))

        def synchronize(self) -> None:
            self._host = self._tensor.numpy().copy()

        def array(self) -> np.ndarray:
            self.synchronize()
            log.append(("landed", self._host.shape[0]))
            return self._host

    monkeypatch.setattr(features_module, "one_in_flight", lambda device: True)
    monkeypatch.setattr(features_module, "queue_copy_out", QueuedCopy)
    return log



def _pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(PIPELINE_THREADS)]


def test_in_flight_path_gives_the_plain_paths_features_records_and_counts(isolated_home, tmp_path, monkeypatch,
                                                                         simulated_gpu):  # fmt: skip
    ds = open_dataset("builtin")
    enc = TinyConvEncoder()
    ids = list(dict.fromkeys(p.trg_id for p in ds.pairs("test")))[:23]
    events: list[str] = []
    real_forward = enc._forward
    monkeypatch.setattr(enc, "_forward", lambda pixels: (events.append("forward"), real_forward(pixels))[1])
    provider = FeatureProvider(enc, ds, enc.preprocessing, batch_size=4, workers=2)
    provider.ensure_cached(ids, on_batch=lambda batch, feats, units: events.append(f"batch {len(batch)}"))
    assert events == ["forward", "forward", "batch 4", "forward", "batch 4", "forward", "batch 4", "forward",
                      "batch 4", "forward", "batch 4", "batch 3"]  # forward k + 1 before batch k is handed over
    assert provider.stats.forwards == 6 and provider.stats.images_encoded == 23
    assert [e for e, _ in simulated_gpu].count("landed") == 6
    monkeypatch.setattr(features_module, "one_in_flight", lambda device: False)
    plain = FeatureProvider(TinyConvEncoder(), ds, enc.preprocessing, batch_size=4, use_cache=False).get(ids)
    cached = FeatureProvider(TinyConvEncoder(), ds, enc.preprocessing, batch_size=4).get(ids)  # the files just written
    for i in ids:
        assert np.array_equal(cached[i].features, plain[i].features)

    monkeypatch.setattr(ev, "CHUNK_PAIRS", 8)
    monkeypatch.setattr(streaming, "threaded_matching", lambda device: True)  # the matching thread, as beside a GPU
    monkeypatch.setattr(features_module, "one_in_flight", lambda device: True)
    monkeypatch.setenv("LAW_EXPLORER_HOME", str(tmp_path / "in-flight"))
    lag = ev.evaluate("builtin", TinyConvEncoder(), limit=40, batch_size=3, work_dir=tmp_path / "a", record=False)
    monkeypatch.setattr(features_module, "one_in_flight", lambda device: False)
    monkeypatch.setenv("LAW_EXPLORER_HOME", str(tmp_path / "plain"))
    ref = ev.evaluate("builtin", TinyConvEncoder(), limit=40, batch_size=3, work_dir=tmp_path / "b", record=False)
    assert (lag.stats.images_encoded, lag.stats.forwards) == (ref.stats.images_encoded, ref.stats.forwards)
    assert lag.stats.images_encoded == ref.stats.images and lag.stats.forwards == -(-ref.stats.images // 3)
    assert checkpoint_contents(tmp_path / "a") == checkpoint_contents(tmp_path / "b") != [] and lag.pck == ref.pck
    assert not _pipeline_threads()


def _encoding_order(ds) -> list[str]:
    """The images a cold evaluation encodes, in order: chunk after chunk, each chunk's sources first."""
    pairs = ds.pairs("test")
    chunks = [pairs[s : s + ev.CHUNK_PAIRS] for s in range(0, len(pairs), ev.CHUNK_PAIRS)]
    return list(dict.fromkeys(i for chunk in chunks for i in streaming.chunk_image_ids(chunk)))


def _cached_ids(provider: FeatureProvider, order: list[str]) -> list[str]:
    from engine import store

    with store.connect(read_only=True) as con:
        keys = {k for (k,) in con.execute("SELECT key FROM corr_feature_cache").fetchall()}
    return [i for i in order if provider.key(i) in keys]


def test_a_cancel_in_flight_records_whole_batches_only_and_the_rerun_resumes(isolated_home, tmp_path, monkeypatch,
                                                                           simulated_gpu):  # fmt: skip
    monkeypatch.setattr(ev, "CHUNK_PAIRS", 8)
    monkeypatch.setattr(streaming, "threaded_matching", lambda device: True)
    enc = TinyConvEncoder()
    with pytest.raises(JobCancelled):
        ev.evaluate("builtin", enc, batch_size=3, work_dir=tmp_path / "w", cancelled=lambda: enc.forward_calls >= 7)
    assert not _pipeline_threads()
    # batch k is handed over once forward k + 1 is queued: the cancel is seen with batch 6, which is dropped (as is
    # the queued forward 7), batches 1-5 are recorded whole
    assert enc.forward_calls == 7
    ds = open_dataset("builtin")
    order = _encoding_order(ds)
    provider = FeatureProvider(TinyConvEncoder(), ds, enc.preprocessing)
    cached = _cached_ids(provider, order)
    assert cached == order[:15]
    monkeypatch.setattr(features_module, "one_in_flight", lambda device: False)
    plain = FeatureProvider(TinyConvEncoder(), ds, enc.preprocessing, batch_size=3, use_cache=False).get(cached)
    for image_id, feats in provider.get(cached).items():  # every entry is whole and right
        assert np.array_equal(feats.features, plain[image_id].features)
    assert provider.stats.images_encoded == 0
    monkeypatch.setattr(features_module, "one_in_flight", lambda device: True)
    resumed = ev.evaluate("builtin", TinyConvEncoder(), batch_size=3, work_dir=tmp_path / "w", record=False)
    assert resumed.stats.images_encoded == resumed.stats.images - 15
    monkeypatch.setenv("LAW_EXPLORER_HOME", str(tmp_path / "fresh-home"))
    monkeypatch.setattr(features_module, "one_in_flight", lambda device: False)
    fresh = ev.evaluate("builtin", TinyConvEncoder(), batch_size=3, record=False)
    assert resumed.pck == fresh.pck


class BusyTinyConvEncoder(TinyConvEncoder):
    """TinyConvEncoder whose forward first keeps the GPU busy for tens of milliseconds (its output unchanged, its
    weight uploaded once): a host that read a batch's features before their copy had finished would read stale
    pinned memory, and a stream that read units too early would read them unfinished."""

    def __init__(self) -> None:
        super().__init__()
        self._weights: dict[torch.device, torch.Tensor] = {}

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        busy = torch.ones(4096, 4096, device=pixels.device)
        for _ in range(30):
            busy = busy @ busy / 4096.0
        if pixels.device not in self._weights:
            self._weights[pixels.device] = self.weight.to(pixels.device)
        self.images_seen += pixels.shape[0]
        self.forward_calls += 1
        return torch.nn.functional.conv2d(torch.nn.functional.pixel_unshuffle(pixels, 8), self._weights[pixels.device])


def _reference_features(enc, ds, ids: list[str], batch_size: int, precision: str = "fp32") -> dict[str, np.ndarray]:
    """The plain loop: each image uploaded by itself (pageable, synchronous), encoded, copied back with ``.cpu()``."""
    from engine.correspondence.prefetch import forward_precision

    out = {}
    for s in range(0, len(ids), batch_size):
        batch = ids[s : s + batch_size]
        arrays = [np.ascontiguousarray(to_uint8_rgb(ds.load_image(i))) for i in batch]
        pixels, _ = prepare_tensors([torch.from_numpy(a).to(enc.device) for a in arrays], enc.preprocessing)
        with forward_precision(precision, enc.device):
            dense = enc.encode(pixels)
        half = dense.features.to(torch.float16).cpu().numpy()
        out.update(zip(batch, half, strict=True))
    return out


@cuda
def test_cuda_packed_upload_equals_the_per_image_upload_bit_for_bit():
    ds = open_dataset("builtin")
    images = [to_uint8_rgb(ds.load_image(p.src_id)) for p in ds.pairs("test")[:9]]
    views = upload_images(images, "cuda")
    assert all(v.device.type == "cuda" and np.array_equal(v.cpu().numpy(), a) for v, a in zip(views, images, strict=True))
    for pre in (Preprocessing(input_size=(40, 56), resize="letterbox"), Preprocessing(input_size=(33, 33)),
                Preprocessing(input_size=(24, 40), resize="shortest_side_center_crop")):  # fmt: skip
        packed, _ = prepare(images, pre, "cuda")
        single, _ = prepare_tensors([torch.from_numpy(np.ascontiguousarray(a)).to("cuda") for a in images], pre)
        assert torch.equal(packed, single)


@cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_in_flight_features_and_units_equal_a_plain_loop_bit_for_bit(isolated_home, precision):
    ds = open_dataset("builtin")
    enc = BusyTinyConvEncoder().to("cuda")
    ids = list(dict.fromkeys(p.trg_id for p in ds.pairs("test")))[:30]
    side = torch.cuda.Stream()
    handed: dict[str, tuple[np.ndarray, torch.Tensor]] = {}

    def on_batch(batch, feats, units):
        # read the units on another stream, without waiting for the default one: as the matching thread does
        with torch.cuda.stream(side):
            for image_id, f, u in zip(batch, feats, units, strict=True):
                u.record_stream(side)
                handed[image_id] = (f.features, u.clone())

    provider = FeatureProvider(enc, ds, enc.preprocessing, batch_size=4, workers=3, precision=precision)
    provider.ensure_cached(ids, on_batch=on_batch)
    side.synchronize()
    assert provider.stats.forwards == 8 and provider.stats.images_encoded == 30
    expected = _reference_features(enc, ds, ids, 4, precision)
    for image_id in ids:
        features, unit = handed[image_id]
        assert features.base is not None and features.base.flags.owndata  # numpy's memory, not the pinned buffer
        assert np.array_equal(features, expected[image_id])
        assert torch.equal(unit, unit_of_array(expected[image_id], "cuda"))


@cuda
def test_cuda_cold_in_flight_evaluation_equals_the_cached_rerun(isolated_home, monkeypatch):
    monkeypatch.setattr(ev, "CHUNK_PAIRS", 8)
    enc = BusyTinyConvEncoder().to("cuda")
    cold = ev.evaluate("builtin", enc, limit=60, batch_size=5, record=False)
    assert cold.stats.images_encoded == cold.stats.images and cold.stats.forwards == -(-cold.stats.images // 5)
    cached = ev.evaluate("builtin", enc, limit=60, batch_size=5, record=False)
    assert cached.stats.images_encoded == 0 and cached.pck == cold.pck
    assert not _pipeline_threads()


@cuda
def test_cuda_cancel_in_flight_leaves_only_whole_right_cache_entries(isolated_home, tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "CHUNK_PAIRS", 8)
    enc = BusyTinyConvEncoder().to("cuda")
    with pytest.raises(JobCancelled):
        ev.evaluate("builtin", enc, batch_size=3, work_dir=tmp_path / "w", cancelled=lambda: enc.forward_calls >= 7)
    torch.cuda.synchronize()
    assert not _pipeline_threads() and enc.forward_calls == 7
    ds = open_dataset("builtin")
    order = _encoding_order(ds)
    provider = FeatureProvider(enc, ds, enc.preprocessing)
    cached = _cached_ids(provider, order)
    assert cached == order[:15]  # the batch seen with the cancel and the one queued after it are not recorded
    expected = _reference_features(enc, ds, cached, 3)
    for image_id, feats in provider.get(cached).items():
        assert np.array_equal(feats.features, expected[image_id])
    assert provider.stats.images_encoded == 0
    resumed = ev.evaluate("builtin", enc, batch_size=3, work_dir=tmp_path / "w", record=False)
    assert resumed.stats.images_encoded == resumed.stats.images - 15
    monkeypatch.setenv("LAW_EXPLORER_HOME", str(tmp_path / "fresh-home"))
    fresh = ev.evaluate("builtin", BusyTinyConvEncoder().to("cuda"), batch_size=3, record=False)
    assert resumed.pck == fresh.pck
