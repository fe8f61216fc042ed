"""C evaluation: features through the cache, batched matching, checkpointed per-pair results, PCK, the job function."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import config
from engine.correspondence import cache, results
from engine.correspondence.datasets import Dataset, Pair, normalise_split, open_dataset
from engine.correspondence.features import FeatureGeometry, FeatureProvider, protocol_preprocessing
from engine.correspondence.matching import GridMap, make_grid_map, transfer_keypoints_flat
from engine.correspondence.pck import summarise_scores
from engine.correspondence.predictions import (
    ChunkPredictions,
    checkpoint_path,
    has_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from engine.correspondence.protocols import Protocol, get_protocol
from engine.correspondence.result_types import CEvaluation, EvalDataset, EvalEncoder, EvalStats
from engine.correspondence.streaming import ChunkMatcher, chunk_image_ids
from engine.encoders.base import Preprocessing, VisionEncoder
from engine.errors import InputError
from engine.hashing import hash_obj
from engine.jobs import targets

CODE_VERSION = 1
CHUNK_PAIRS = 256
JOB_TARGET = targets.C_EVALUATION

ProgressFn = Callable[[int, int, str], None]


def resolve_encoder(encoder: str | VisionEncoder, device: str = "cpu") -> VisionEncoder:
    """An encoder instance from a registry name (or pass an instance through)."""
    if isinstance(encoder, VisionEncoder):
        return encoder
    from engine.encoders.registry import build_encoder

    return build_encoder(str(encoder), device=device)


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run many small tensor ops on one thread: on a loaded 2-core machine, thread hand-offs cost more than the math
    (measured 10-30x slower for 200 x 784 norms / matmuls with 2 threads at load 11)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _grid_map(
    pair_size: tuple[int, int], feats: cache.CachedFeatures | FeatureGeometry, pre, protocol: Protocol
) -> GridMap:  # fmt: skip
    if isinstance(feats, FeatureGeometry):
        grid = feats.grid
    else:
        grid = (int(feats.features.shape[-2]), int(feats.features.shape[-1]))
    return make_grid_map(pair_size, pre, grid, feats.stride, feats.patch_size, protocol.frame)


def matching_device(provider: FeatureProvider) -> torch.device:
    """Where keypoint matching runs: the encoder's CUDA device, else the CPU."""
    return provider.device if provider.device.type == "cuda" else torch.device("cpu")


def predict_pairs(
    pairs: list[Pair], provider: FeatureProvider, protocol: Protocol, cancelled: Callable[[], bool] | None = None
) -> ChunkPredictions:
    """The pairs' predicted target keypoints in original pixels (``.records()``: JSON-ready per-pair records),
    matched on the encoder's device when it is CUDA, on the CPU otherwise."""
    ids = list(dict.fromkeys([p.src_id for p in pairs] + [p.trg_id for p in pairs]))
    device = matching_device(provider)
    provider.trim_units(ids, device)
    feats = provider.get([i for i in ids if not provider.has_unit(i, device)], cancelled=cancelled)
    with single_torch_thread():
        unit = {i: provider.unit(i, feats.get(i), device) for i in ids}
        geometry = {i: provider.geometry(i) for i in ids}
        return match_records(pairs, unit, geometry, provider.preprocessing, protocol)


def match_records(pairs: list[Pair], unit: dict[str, torch.Tensor], geometry: dict[str, FeatureGeometry],
                  pre: Preprocessing, protocol: Protocol) -> ChunkPredictions:  # fmt: skip
    """The pairs' predictions (columns, rounded to 3 decimals) from the normalised features (``unit``) and feature
    geometry of every image of the pairs; one grid map per image, all keypoints mapped at once."""
    maps: dict[tuple[str, tuple[int, int]], GridMap] = {}

    def grid_map(image_id: str, size: tuple[int, int]) -> GridMap:
        if (image_id, size) not in maps:
            maps[(image_id, size)] = _grid_map(size, geometry[image_id], pre, protocol)
        return maps[(image_id, size)]

    with single_torch_thread():
        src_f = [unit[p.src_id] for p in pairs]
        trg_f = [unit[p.trg_id] for p in pairs]
        src_maps = [grid_map(p.src_id, tuple(p.src_size)) for p in pairs]
        trg_maps = [grid_map(p.trg_id, tuple(p.trg_size)) for p in pairs]
        upsample = 1
        if protocol.matching == "upsampled_map":
            upsample = max(1, round(geometry[pairs[0].trg_id].stride)) if pairs else 1
        src_kps = [p.src_kps for p in pairs]
        pred = transfer_keypoints_flat(src_f, trg_f, src_maps, trg_maps, src_kps, protocol, upsample, normalised=True)
    return ChunkPredictions.of_pairs(pairs, np.round(pred, 3))


def _scored(predictions: ChunkPredictions, protocol: Protocol) -> ChunkPredictions:
    """A chunk with its PCK counts (scored as it is matched: after the last chunk only their sum is left)."""
    return predictions.scored(protocol.alphas, protocol.normalizer, protocol.comparison)


def _eval_key(
    dataset: Dataset, split: str, limit: int | None, encoder: VisionEncoder, weights: str, protocol: Protocol,
    precision: str = "fp32",
) -> str:  # fmt: skip
    parts = {
        "v": CODE_VERSION,
        "dataset": dataset.key,
        "split": split,
        "limit": limit,
        "encoder": encoder.name,
        "weights": weights,
        "layer": str(getattr(encoder, "layer", "default")),
        "protocol": protocol.hash(),
        "chunk": CHUNK_PAIRS,
    }
    if precision != "fp32":  # fp32 result ids are unchanged from earlier versions
        parts["precision"] = precision
    return hash_obj(parts)


def _check_cancel(cancelled: Callable[[], bool] | None) -> None:
    if cancelled is not None and cancelled():
        from engine.jobs.context import JobCancelled

        raise JobCancelled("correspondence evaluation cancelled")


@dataclass(frozen=True)
class EvalOptions:
    """How one C evaluation runs (what it evaluates is the dataset, the encoder and the protocol).

    ``split``/``limit``: which pairs; ``batch_size``: images per forward; ``record``: store the result;
    ``device``/``precision`` (fp32, tf32, bf16: part of the cache key and the result id); ``workers``: decode
    threads (default ``prefetch.default_workers(device)``, 0 decodes in this thread); ``backend`` local | ray
    (``ray_address``, or a local Ray instance; ``ray_actors``: at most this many actors, default one per GPU or CPU
    of the cluster).
    """

    split: str = "test"
    limit: int | None = None
    batch_size: int = 16
    record: bool = True
    device: str = "cpu"
    precision: str = "fp32"
    workers: int | None = None
    backend: str = "local"
    ray_address: str | None = None
    ray_actors: int | None = None


def _checked(options: EvalOptions) -> EvalOptions:
    try:
        limit = None if options.limit is None else int(options.limit)
    except (TypeError, ValueError) as exc:
        raise InputError(f"limit must be a whole number of pairs, got {options.limit!r}") from exc
    if limit is not None and limit < 1:
        raise InputError("limit must be a positive number of pairs")
    actors = options.ray_actors
    if actors is not None and (isinstance(actors, bool) or not isinstance(actors, int) or actors < 1):
        raise InputError(f"ray_actors must be a positive whole number of actors, got {actors!r}")
    return replace(options, split=normalise_split(options.split), limit=limit)


def _open_pairs(dataset_spec: str | Dataset, options: EvalOptions) -> tuple[Dataset, list[Pair]]:
    dataset = dataset_spec if isinstance(dataset_spec, Dataset) else open_dataset(dataset_spec, options.split)
    pairs = dataset.pairs(options.split, options.limit)
    if not pairs:
        raise InputError(f"dataset {dataset.name} has no pairs in split {options.split!r}")
    if options.backend not in ("local", "ray"):
        raise InputError(f"unknown backend {options.backend!r} (use local or ray)")
    return dataset, pairs


class _Background:
    """A value computed on a daemon thread while this one goes on (nothing waits for it when this one fails first)."""

    def __init__(self, compute: Callable[[], Any], name: str) -> None:
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, args=(compute,), name=name, daemon=True).start()

    def _run(self, compute: Callable[[], Any]) -> None:
        try:
            self._value = compute()
        except BaseException as exc:  # raised in the waiting thread
            self._error = exc
        finally:
            self._done.set()

    def result(self) -> Any:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


def _hashed_encoder(encoder_name: str | VisionEncoder, device: str) -> VisionEncoder:
    """The encoder with its weights hash computed (hashing a ViT-L's weights takes about a second)."""
    encoder = resolve_encoder(encoder_name, device)
    encoder.weights_hash()
    return encoder


def _feature_provider(encoder_name: str | VisionEncoder, dataset: Dataset, proto: Protocol, options: EvalOptions,
                      built: _Background | None = None) -> tuple[VisionEncoder, FeatureProvider]:  # fmt: skip
    """The encoder on this machine (``built``: being built and hashed already) and the features' provider (with Ray
    actors as its encoder for ``ray``)."""
    device = options.device
    if options.backend == "ray":  # the driver's copy only gives names, hashes and geometry: it stays on this machine's CPU
        device = "cuda" if device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    encoder = built.result() if built is not None else resolve_encoder(encoder_name, device)
    provider = FeatureProvider(encoder, dataset, protocol_preprocessing(encoder, proto), options.batch_size,
                               precision=options.precision, workers=options.workers)
    if options.backend == "ray":
        provider.remote = _ray_encoding(encoder, dataset, options.split, provider, options.device, options.ray_address,
                                        options.ray_actors)  # fmt: skip
    return encoder, provider


def _prepare_ray(encoder_name: str | VisionEncoder, options: EvalOptions) -> Callable[[Dataset], Callable[[], None]]:
    """Fail early when Ray is missing or the address unreachable. An encoder (by name) with no cached feature at all
    will need the cluster: start joining it (or starting the local Ray instance) now, in the background, while this
    process opens the dataset; the returned function, called with the opened dataset, starts the actors the same way
    while this process builds its copy of the encoder, and returns their release. A cached run never touches Ray."""
    from engine.encoders.registry import get_spec
    from engine.scale.cluster import check_reachable, connect, require_ray, start_in_background

    require_ray()
    if options.ray_address:
        check_reachable(options.ray_address)
    nothing = lambda _dataset: lambda: None  # noqa: E731
    if isinstance(encoder_name, VisionEncoder):  # an instance may carry another layer: its actors start on demand
        return nothing
    try:
        spec = get_spec(str(encoder_name))
    except InputError:
        return nothing  # an unknown encoder: its build below says so
    if cache.has_features(spec.name):
        return nothing
    start_in_background(lambda: connect(options.ray_address))

    def actors(dataset: Dataset) -> Callable[[], None]:
        from engine.scale.ray_encode import ActorSetup, prestart

        setup = ActorSetup(spec.name, spec, None, dataset.name, options.split, options.device)
        return prestart(setup, options.ray_address, options.ray_actors)

    return actors


def _encode_and_match(chunks: list[list[Pair]], paths: list[Path], pending: list[int], provider: FeatureProvider,
                      proto: Protocol, cancelled: Callable[[], bool] | None,
                      report: Callable[[int, int], None] | None) -> tuple[dict[int, ChunkPredictions], float]:  # fmt: skip
    """Encode the missing images of the pending chunks, chunk after chunk, and match each chunk all of whose images
    are encoded here as soon as they are (features still in memory, or on the GPU): beside a GPU on a thread of its
    own while the next images are encoded, on a CPU between batches (``streaming.threaded_matching``). Returns those
    chunks' predictions (scored, checkpoints written) and when the encoding ended;
    chunks using cached images are left to ``_match_chunks``."""
    order = [i for k in pending for i in chunk_image_ids(chunks[k])]
    misses = set(provider.misses(order))
    stream = {k: chunks[k] for k in pending if all(i in misses for i in chunk_image_ids(chunks[k]))}
    if not stream:
        provider.ensure_cached(order, cancelled, report)
        return {}, time.perf_counter()
    pre = provider.preprocessing
    threads = torch.get_num_threads()
    matcher = ChunkMatcher(stream, {k: paths[k] for k in stream},
                           lambda pairs, unit, geometry: _scored(match_records(pairs, unit, geometry, pre, proto), proto),
                           matching_device(provider), cancelled)  # fmt: skip
    try:
        provider.ensure_cached(order, cancelled, report, on_batch=matcher.encoded)
        encoded_at = time.perf_counter()
        return matcher.finish(), encoded_at
    except BaseException:
        matcher.stop()
        raise
    finally:
        torch.set_num_threads(threads)


def _match_chunks(chunks: list[list[Pair]], paths: list[Path], provider: FeatureProvider, proto: Protocol,
                  progress: ProgressFn | None, cancelled: Callable[[], bool] | None,
                  streamed: dict[int, ChunkPredictions] | None = None) -> tuple[list[ChunkPredictions], int, int]:  # fmt: skip
    """Every chunk's scored predictions (``streamed`` ones as given, a checkpointed chunk read back, any other
    matched now and checkpointed); returns them, computed and resumed counts."""
    total = sum(len(chunk) for chunk in chunks)
    parts: list[ChunkPredictions] = []
    done = computed = resumed = 0
    streamed = streamed or {}
    for index, (chunk, path) in enumerate(zip(chunks, paths, strict=True)):
        _check_cancel(cancelled)
        part = streamed.get(index)
        if part is not None:
            computed += len(part)
        elif (part := read_checkpoint(path, chunk)) is not None:
            part = _scored(part, proto)
            resumed += len(part)
        else:
            part = predict_pairs(chunk, provider, proto, cancelled)
            write_checkpoint(path, part)
            part = _scored(part, proto)
            computed += len(part)
        parts.append(part)
        done += len(part)
        if progress is not None:
            progress(done, total, f"{done}/{total} pairs")
    return parts, computed, resumed


def evaluate(
    dataset_spec: str | Dataset,
    encoder_name: str | VisionEncoder,
    protocol: str | Protocol | dict = "default",
    options: EvalOptions | None = None,
    *,
    progress: ProgressFn | None = None,
    cancelled: Callable[[], bool] | None = None,
    work_dir: str | Path | None = None,
    **overrides: Any,
) -> CEvaluation:
    """Zero-shot keypoint-transfer PCK of one encoder on one dataset split under one protocol.

    ``options`` (an ``EvalOptions``; any of its fields may also be given as a keyword, e.g. ``limit=20``) say
    how it runs. Resumable: finished chunks of pairs are checkpointed in ``work_dir`` (default: a folder keyed by
    every input under ``<home>/correspondence/runs``) and skipped on rerun; features come from the cache: the
    images of every pending chunk are encoded first, in one pipelined pass, then the chunks are matched (on
    ``device`` when it is CUDA). ``backend="ray"`` encodes the missing images on Ray actors, this process writes
    the cache and matches (same result as local). Returns a ``CEvaluation`` (PCK values are fractions).
    """
    started = time.perf_counter()
    proto = get_protocol(protocol)
    opts = _checked(replace(options or EvalOptions(), **overrides))
    start_actors = _prepare_ray(encoder_name, opts) if opts.backend == "ray" else None
    built = None
    if opts.backend == "local":  # build and hash the encoder while the pairs are read
        built = _Background(lambda: _hashed_encoder(encoder_name, opts.device), "corr-encoder")
    dataset, pairs = _open_pairs(dataset_spec, opts)
    release = start_actors(dataset) if start_actors is not None else None
    try:
        return _evaluate(dataset, pairs, encoder_name, proto, opts, started, progress, cancelled, work_dir, built)
    finally:
        if release is not None:
            release()


def _evaluate(dataset: Dataset, pairs: list[Pair], encoder_name: str | VisionEncoder, proto: Protocol,
              opts: EvalOptions, started: float, progress: ProgressFn | None, cancelled: Callable[[], bool] | None,
              work_dir: str | Path | None, built: _Background | None = None) -> CEvaluation:  # fmt: skip
    encoder, provider = _feature_provider(encoder_name, dataset, proto, opts, built)
    key = _eval_key(dataset, opts.split, opts.limit, encoder, provider.weights_hash, proto, provider.precision)
    default_dir = work_dir is None
    run_dir = Path(work_dir) if work_dir is not None else config.subdir("correspondence") / "runs" / key
    run_dir.mkdir(parents=True, exist_ok=True)
    chunks = [pairs[i : i + CHUNK_PAIRS] for i in range(0, len(pairs), CHUNK_PAIRS)]
    paths = [checkpoint_path(run_dir, key, index) for index in range(len(chunks))]
    image_ids = [p.src_id for p in pairs] + [p.trg_id for p in pairs]
    provider.prefetch(image_ids)
    # pinned until this evaluation ends: another one's eviction (a concurrent sweep) must not remove the features
    # this one wrote or is about to read (it would encode them again)
    with cache.pinned(provider.key(i) for i in dict.fromkeys(image_ids)):
        if progress is not None:
            # on Ray the first batch waits for the actors to start and load the encoder (tens of seconds cold)
            progress(0, len(pairs), "starting (Ray actors load the encoder)" if opts.backend == "ray" else "starting")
        pending = [k for k, path in enumerate(paths) if not has_checkpoint(path)]
        streamed: dict[int, ChunkPredictions] = {}
        encoded_at = time.perf_counter()
        if pending:  # encode every missing feature in one pipelined pass (no restart per chunk), matching beside it
            report = None if progress is None else (lambda done, total: progress(done, total, f"encoded {done}/{total} images"))
            streamed, encoded_at = _encode_and_match(chunks, paths, pending, provider, proto, cancelled, report)
        parts, computed, resumed = _match_chunks(chunks, paths, provider, proto, progress, cancelled, streamed)
        pck = summarise_scores([part.scores for part in parts], proto.alphas, proto.averaging)
        provider.flush()
        evicted = cache.enforce_limit(protect=provider.used_keys)
    result = CEvaluation(
        pck=pck,
        protocol=proto.describe(),
        stats=EvalStats(
            pairs=len(pairs),
            pairs_computed=computed,
            pairs_resumed=resumed,
            images=len({p.src_id for p in pairs} | {p.trg_id for p in pairs}),
            images_encoded=provider.stats.images_encoded,
            forwards=provider.stats.forwards,
            cache_hits=provider.stats.cache_hits,
            cache_evicted=evicted,
            seconds=round(time.perf_counter() - started, 3),
            encode_seconds=round(encoded_at - started, 3),
            device=str(provider.device) if opts.backend == "local" else opts.device,
            precision=provider.precision,
            backend=opts.backend,
        ),
        encoder=EvalEncoder(encoder.name, provider.weights_hash, str(getattr(encoder, "layer", "default")),
                            provider.precision),
        dataset=EvalDataset(dataset.name, dataset.key, opts.split, opts.limit),
        result_id=key,
    )
    if opts.record:
        results.record_result(result)
    if default_dir:
        with contextlib.suppress(OSError):
            shutil.rmtree(run_dir)
    return result


def _ray_encoding(
    encoder: VisionEncoder, dataset: Dataset, split: str, provider: FeatureProvider, device: str, address: str | None,
    max_actors: int | None = None,
) -> Callable:
    """``provider.remote`` for the ray backend: the misses' batches go to Ray actors (engine.scale.ray_encode)."""
    from engine.encoders.registry import get_spec
    from engine.scale.ray_encode import RemoteEncoding, remote_batches

    job = RemoteEncoding(
        encoder_name=encoder.name, encoder_spec=get_spec(encoder.name), layer=str(getattr(encoder, "layer", "default")),
        dataset_spec=dataset.name, split=split, preprocessing=provider.preprocessing, precision=provider.precision,
        device=device, weights_hash=provider.weights_hash,
    )  # fmt: skip
    return lambda batches, cancelled: remote_batches(job, batches, address, cancelled, max_actors)


def run_job(params: dict, ctx) -> dict:
    """Job function (``engine.correspondence.evaluate:run_job``): params ``dataset``, ``encoder``, ``protocol``,
    ``split``, ``limit`` (optional ``device``, ``precision``); resumes from checkpoints in ``ctx.work_dir``; returns
    the ``CEvaluation``'s JSON."""
    if "dataset" not in params or "encoder" not in params:
        raise InputError("a correspondence job needs 'dataset' and 'encoder' parameters")
    result = evaluate(
        params["dataset"],
        params["encoder"],
        protocol=params.get("protocol", "default"),
        split=params.get("split", "test"),
        limit=params.get("limit"),
        progress=ctx.progress,
        cancelled=ctx.cancelled,
        work_dir=ctx.work_dir,
        device=params.get("device", "cpu"),
        precision=params.get("precision", "fp32"),
        backend=params.get("backend", "local"),
        ray_address=params.get("ray_address"),
    )
    return result.to_dict()


def submit_evaluation(
    dataset: str, encoder: str, protocol: str | dict = "default", split: str = "test", limit: int | None = None,
    device: str = "cpu", precision: str = "fp32", backend: str | None = None, ray_address: str | None = None,
) -> str:  # fmt: skip
    """Queue an evaluation as a background job; returns the job id (an identical queued/running job is reused).
    ``backend`` None: ``LAW_EXPLORER_BACKEND`` / ``RAY_ADDRESS``, else the Jobs page's choice, else local."""
    from engine.jobs import submit
    from engine.scale.backend import resolve_backend

    params = {"dataset": dataset, "encoder": encoder, "protocol": protocol, "split": split, "limit": limit}
    if device != "cpu":  # only non-defaults: the params of default jobs (and so their reuse) are unchanged
        params["device"] = device
    if precision != "fp32":
        params["precision"] = precision
    params.update(resolve_backend(backend, ray_address).job_params())
    from engine.encoders.registry import display_name, get_spec

    name = protocol if isinstance(protocol, str) else get_protocol(protocol).name
    shown = display_name(get_spec(encoder))  # an upload's label, not its upload:<hash> id
    return submit(JOB_TARGET, params, title=f"C of {shown} on {dataset} ({name})")
