"""Encoding the missing images of a C evaluation on Ray actors (one per GPU, or CPU actors); features return to
the driver, which alone writes the feature cache and DuckDB."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import LawExplorerError, NotAvailableError
from engine.scale.cluster import ClusterInfo, actor_runtime_env, actor_start_timeout_s, connect, import_ray

IN_FLIGHT_PER_ACTOR = 2  # one batch decoding while the other is in the forward
ACTOR_RESTARTS = 3  # a worker process that dies (kill -9, OOM) is restarted and its batch retried


@dataclass(frozen=True)
class ActorSetup:
    """What an actor loads once: the encoder (by name, its spec shipped), at ``layer`` (None: the encoder's default),
    and the dataset, on its device."""

    encoder_name: str
    encoder_spec: Any  # the EncoderSpec (shipped: an encoder registered at run time exists on the driver only)
    layer: str | None
    dataset_spec: str
    split: str
    device: str  # "cuda" or "cpu"

    def serves(self, other: ActorSetup) -> bool:
        """Whether actors started for this setup can encode for ``other`` (its layer is checked when they are ready)."""
        return (self.encoder_name, self.dataset_spec, self.split, self.device) == (
            other.encoder_name, other.dataset_spec, other.split, other.device)  # fmt: skip


@dataclass(frozen=True)
class RemoteEncoding:
    """What every actor needs to rebuild the driver's encoder and open the driver's dataset."""

    encoder_name: str
    encoder_spec: Any  # the EncoderSpec (shipped: an encoder registered at run time exists on the driver only)
    layer: str
    dataset_spec: str
    split: str
    preprocessing: Any  # the protocol's Preprocessing
    precision: str
    device: str  # "cuda" or "cpu"
    weights_hash: str

    def setup(self) -> ActorSetup:
        return ActorSetup(self.encoder_name, self.encoder_spec, self.layer, self.dataset_spec, self.split, self.device)


class EncodeActor:
    """Holds one encoder and one dataset; encodes batches of image ids into fp16 features (the protocol's
    preprocessing and the precision come with each batch: an actor started before the driver knew them serves it)."""

    def __init__(self, job: ActorSetup, threads: int) -> None:
        self.node = f"{socket.gethostname()} ({_node_ip()})"
        self.error: str | None = None
        self.info: dict[str, Any] = {}
        self._lock = threading.Lock()
        try:
            import torch

            from engine.correspondence.datasets import open_dataset
            from engine.encoders import registry

            torch.set_num_threads(1 if job.device == "cpu" else max(1, int(threads)))
            self._decoders = ThreadPoolExecutor(max_workers=max(1, int(threads)), thread_name_prefix="actor-decode")
            self.job = job
            try:
                registry.get_spec(job.encoder_name)
            except LawExplorerError:
                registry.register_encoder(job.encoder_spec)
            self.dataset = open_dataset(job.dataset_spec, job.split)
            self.encoder = registry.build_encoder(job.encoder_name, device=job.device)
            if job.layer is not None and str(getattr(self.encoder, "layer", "default")) != job.layer:
                self.encoder = registry.build_encoder(job.encoder_name, device=job.device, layer=job.layer)
            self.info = {"weights_hash": self.encoder.weights_hash(), "layer": str(getattr(self.encoder, "layer", "default"))}
        except Exception as exc:
            from engine.jobs.runner import one_line_error

            self.error = one_line_error(exc)

    def ready(self) -> dict[str, Any]:
        return {"node": self.node, "pid": os.getpid(), "error": self.error, **self.info}

    def encode(self, ids: list[str], preprocessing: Any, precision: str) -> tuple[str, Any]:
        """("ok", (ids, B x C x h x w fp16, patch, stride)) or ("error", message naming the node)."""
        try:
            import torch

            from engine.correspondence.inflight import queue_copy_out
            from engine.correspondence.prefetch import decode_one, forward_precision
            from engine.encoders.preprocess import prepare

            images = list(self._decoders.map(lambda i: decode_one(self.dataset.load_image, i), ids))
            # the same per-image operations as the local backend (resized on the GPU when the encoder is there)
            on_gpu = self.job.device.startswith("cuda")
            with self._lock, torch.inference_mode():
                pixels = prepare(images, preprocessing, self.job.device if on_gpu else None)[0]
                with forward_precision(precision, self.job.device):
                    dense = self.encoder.encode(pixels)
                half = dense.features.detach().to(torch.float16, memory_format=torch.contiguous_format)
                copy = queue_copy_out(half) if on_gpu else None
            # on a GPU the wait for this batch's copy is outside the lock: the actor's other call queues its forward
            feats = copy.array() if copy is not None else half.numpy()
            return "ok", (ids, feats, float(dense.patch_size), float(dense.stride))
        except Exception as exc:
            from engine.jobs.runner import one_line_error

            return "error", f"node {self.node}: {one_line_error(exc)}"


def _node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:
        return "?"


def plan_actors(
    cluster: ClusterInfo, device: str, batches: int, max_actors: int | None = None
) -> tuple[int, dict[str, float]]:
    """How many actors and what each asks for: one per GPU for CUDA, else one CPU each (at most one per batch, and
    at most ``max_actors``: a sweep that runs several encoders at once gives each its share of the cluster)."""
    cap = batches if max_actors is None else max(1, min(batches, int(max_actors)))
    if device == "cuda":
        if cluster.gpus < 1:
            nodes = ", ".join(f"{n.address}: {n.gpus:g} GPUs" for n in cluster.nodes) or "no live nodes"
            raise NotAvailableError(f"the Ray cluster at {cluster.address or 'this machine'} has no GPU ({nodes}); "
                                    "use --device cpu or add GPU nodes")
        return max(1, min(int(cluster.gpus), cap)), {"num_gpus": 1, "num_cpus": 1}  # its decode threads are extra
    return max(1, min(int(cluster.cpus), cap)), {"num_cpus": 1}


def share_cluster(cluster: ClusterInfo, device: str, evaluations: int) -> tuple[int, int]:
    """How many evaluations of a sweep run at once and at most how many actors each gets: one evaluation per GPU
    (``cuda``) or CPU of the cluster, at most ``evaluations``; the slots left over are shared out among them."""
    if device.startswith("cuda"):
        plan_actors(cluster, "cuda", 1)  # no GPU in the cluster: the one clear error
        slots = int(cluster.gpus)
    else:
        slots = int(cluster.cpus)
    at_once = max(1, min(slots, int(evaluations)))
    return at_once, max(1, slots // at_once)


def remote_batches(
    job: RemoteEncoding,
    batches: list[list[str]],
    address: str | None = None,
    cancelled: Callable[[], bool] | None = None,
    max_actors: int | None = None,
) -> Iterator[tuple[list[str], np.ndarray, float, float]]:
    """Yield ``(ids, fp16 features, patch, stride)`` per batch, in completion order, from actors on the cluster.

    A batch goes only to an actor that reported ready: encoder loaded with the driver's weights hash and layer,
    dataset opened (an actor that cannot: one error naming the node and what is missing). Batches wait in one queue
    and go to whichever ready actor has room, so the first actor up starts at once and an actor still starting when
    the queue is empty is never waited for. Actors are killed at the end, on error and on cancel.
    """
    if not batches:
        return
    ray = import_ray()
    cluster = connect(address)
    device = "cuda" if job.device.startswith("cuda") else "cpu"
    n, resources = plan_actors(cluster, device, len(batches), max_actors)
    actors = _adopt_prestarted(ray, job, n)
    actors += [_actor_class(ray, resources).remote(job.setup(), _threads(device)) for _ in range(n - len(actors))]
    try:
        yield from _stream(ray, job, actors, batches, cluster, resources, cancelled)
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):  # an actor that is already gone
                ray.kill(actor)


def _stream(ray: Any, job: RemoteEncoding, actors: list, batches: list[list[str]], cluster: ClusterInfo,
            resources: dict[str, float], cancelled: Callable[[], bool] | None) -> Iterator[tuple]:  # fmt: skip
    timeout = actor_start_timeout_s()
    deadline = time.monotonic() + timeout
    starting = {actor.ready.remote(): k for k, actor in enumerate(actors)}
    queue = deque(batches)
    pending: dict[Any, int] = {}  # encode call -> actor
    busy = [0] * len(actors)

    def feed(k: int) -> None:
        while queue and busy[k] < IN_FLIGHT_PER_ACTOR:
            pending[actors[k].encode.remote(queue.popleft(), job.preprocessing, job.precision)] = k
            busy[k] += 1

    while queue or pending:
        if cancelled is not None and cancelled():
            from engine.jobs.context import JobCancelled

            raise JobCancelled("correspondence evaluation cancelled")
        if not pending and time.monotonic() > deadline:  # no actor is ready yet
            raise NotAvailableError(
                f"{len(starting)} of {len(actors)} Ray actor(s) did not start within {timeout:g} s on "
                f"{cluster.describe()}: each asks for {resources} (LAW_EXPLORER_RAY_START_TIMEOUT_S sets the wait)"
            )
        waiting = list(pending) + (list(starting) if queue else [])
        done, _ = ray.wait(waiting, num_returns=1, timeout=1.0)
        for ref in done:
            if ref in starting:
                k = starting.pop(ref)
                _check_ready(ray, ref, job)
                feed(k)
                continue
            k = pending.pop(ref)
            busy[k] -= 1
            try:
                status, payload = ray.get(ref)
            except Exception as exc:  # an actor that died more often than it may be restarted
                raise NotAvailableError(f"Ray actor {k} failed: {' '.join(str(exc).split())[:400]}") from exc
            if status != "ok":
                raise NotAvailableError(payload)
            feed(k)
            yield payload


def _check_ready(ray: Any, ref: Any, job: RemoteEncoding) -> None:
    """An actor's ``ready()``: its encoder and dataset loaded, with the driver's weights and layer (else the error)."""
    try:
        info = ray.get(ref)
    except Exception as exc:  # the actor's process could not start at all (e.g. engine not importable there)
        raise NotAvailableError(f"a Ray actor could not start: {' '.join(str(exc).split())[:400]}") from exc
    if info["error"]:
        raise NotAvailableError(f"node {info['node']}: {info['error']}")
    if info.get("weights_hash") != job.weights_hash or info.get("layer") != job.layer:
        raise NotAvailableError(
            f"node {info['node']}: encoder {job.encoder_name} has other weights or layer there "
            f"({info.get('weights_hash')}, {info.get('layer')}) than on the driver ({job.weights_hash}, {job.layer})"
        )


def _threads(device: str) -> int:
    return 1 if device == "cpu" else 8  # decode threads of a GPU actor


def _actor_class(ray: Any, resources: dict[str, float]) -> Any:
    runtime_env = actor_runtime_env()
    return ray.remote(EncodeActor).options(
        **resources, max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS, max_concurrency=IN_FLIGHT_PER_ACTOR,
        **({"runtime_env": runtime_env} if runtime_env else {}),
    )  # fmt: skip


# Actors started before the driver knew its batches (``prestart``), by encoder name (one evaluation per encoder at a
# time in a process); a start in progress is an Event, so that the evaluation waits for it rather than asking the
# cluster for a second set of actors.
_POOL: dict[str, tuple[ActorSetup, list]] = {}
_POOL_STARTING: dict[str, threading.Event] = {}
_POOL_LOCK = threading.Lock()


def prestart(setup: ActorSetup, address: str | None = None, max_actors: int | None = None) -> Callable[[], None]:
    """Join the cluster (or start the local Ray instance) and start an evaluation's actors now, in the background,
    while the driver opens the dataset and builds its copy of the encoder; the evaluation adopts them
    (``remote_batches``). Returns the release function: it kills the actors the evaluation did not adopt (call it
    when the evaluation ends, whatever happened). Errors here are silent: the evaluation's own start reports them."""
    from engine.scale.cluster import start_in_background

    key = setup.encoder_name
    started = threading.Event()
    with _POOL_LOCK:
        if key in _POOL_STARTING or key in _POOL:  # another evaluation of the same setup owns this key
            return lambda: None
        _POOL_STARTING[key] = started

    def run() -> None:
        try:
            ray = import_ray()
            cluster = connect(address)
            n, resources = plan_actors(cluster, "cuda" if setup.device.startswith("cuda") else "cpu", 1 << 30,
                                       max_actors)  # fmt: skip
            actors = [_actor_class(ray, resources).remote(setup, _threads(setup.device)) for _ in range(n)]
            with _POOL_LOCK:
                _POOL[key] = (setup, actors)
        finally:
            started.set()

    start_in_background(run)

    def release() -> None:
        started.wait(actor_start_timeout_s())
        with _POOL_LOCK:
            if _POOL_STARTING.get(key) is started:
                _POOL_STARTING.pop(key)
            left = _POOL.pop(key, (setup, []))[1] if started.is_set() else []
        _kill(left)

    return release


def _adopt_prestarted(ray: Any, job: RemoteEncoding, n: int) -> list:
    """Up to ``n`` actors prestarted for this job's setup; the rest, or all of them when they were started for another
    dataset, split or device, are killed (they would hold the resources the job's own actors need)."""
    wanted = job.setup()
    with _POOL_LOCK:
        starting = _POOL_STARTING.get(wanted.encoder_name)
    if starting is None:
        return []
    starting.wait(actor_start_timeout_s())
    with _POOL_LOCK:
        setup, actors = _POOL.pop(wanted.encoder_name, (wanted, []))
    if not setup.serves(wanted):
        _kill(actors)
        return []
    _kill(actors[n:])
    return actors[:n]


def _kill(actors: list) -> None:
    import ray

    for actor in actors:
        with contextlib.suppress(Exception):  # an actor that is already gone
            ray.kill(actor)
