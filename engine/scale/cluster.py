"""Connecting to Ray (lazily imported): a local instance or a cluster address, checked with one clear error."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine import config
from engine.errors import InputError, NotAvailableError

RAY_PIN = "ray[default]==2.60.0"
_STARTED_HERE: set[bool] = set()  # non-empty once this process started its own local Ray instance
_CONNECT_LOCK = threading.Lock()  # one ray.init per process: a second caller waits for the first
_INIT_THREAD: list[threading.Thread] = []  # the thread that called ray.init (Ray's processes are its children)
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class NodeInfo:
    """One live node of the cluster: its address and resources."""

    address: str
    cpus: float
    gpus: float


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster a process is connected to (``address`` None: a local instance started for this process)."""

    address: str | None
    cpus: float
    gpus: float
    nodes: tuple[NodeInfo, ...]

    def describe(self) -> str:
        where = self.address or "a local Ray instance"
        return f"{where} ({len(self.nodes)} node(s), {self.cpus:g} CPUs, {self.gpus:g} GPUs)"


def import_ray() -> Any:
    """The ``ray`` module, or one clear error when it is not installed."""
    try:
        import ray
    except ImportError as exc:
        raise NotAvailableError(f"the ray backend needs Ray on this machine: pip install '{RAY_PIN}'") from exc
    return ray


def require_ray() -> None:
    """Fail early (one line) when Ray is not installed, without importing it (a cached run never needs it)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise NotAvailableError(f"the ray backend needs Ray on this machine: pip install '{RAY_PIN}'")


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; None for ``auto``/``local``."""
    value = address.strip()
    if value in ("auto", "local"):
        return None
    if "://" in value:
        value = value.split("://", 1)[1]
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise InputError(f"malformed Ray address {address!r} (use HOST:PORT, e.g. 10.0.0.5:6379)")
    try:
        number = int(port)
    except ValueError as exc:
        raise InputError(f"malformed Ray address {address!r}: port {port!r} is not a number") from exc
    if not 0 < number < 65536:
        raise InputError(f"malformed Ray address {address!r}: port {number} is out of range")
    return host.strip("[]"), number


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast (one line) when nothing listens at the address; Ray's own connect retries for a long time."""
    target = host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise NotAvailableError(f"cannot reach the Ray cluster at {address}: {reason}") from exc


def worker_env() -> dict[str, str]:
    """Environment of the actors: this repository on the path, the same state folder and offline settings."""
    env = {"PYTHONPATH": str(config.REPO_ROOT), "LAW_EXPLORER_HOME": str(config.home())}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "TORCH_HOME", "LAW_EXPLORER_DB"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def actor_runtime_env() -> dict | None:
    """The actors' runtime environment: none for a local instance this process started (they inherit its
    environment), else the variables of ``worker_env`` (a cluster, or Ray started by someone else)."""
    return None if _STARTED_HERE else {"env_vars": worker_env()}


def actor_start_timeout_s() -> float:
    """How long actors may take to start (load their encoder) before the run fails; ``LAW_EXPLORER_RAY_START_TIMEOUT_S``."""
    return float(os.environ.get("LAW_EXPLORER_RAY_START_TIMEOUT_S", "300"))


def local_cpus() -> int:
    """CPUs of a local Ray instance started for this process: the machine's less one, which the driver keeps (it
    receives the features, writes the cache and matches): on 2 cores one encoding actor, not two fighting it."""
    return max(1, (os.cpu_count() or 1) - 1)


def connect(address: str | None = None) -> ClusterInfo:
    """Join the cluster at ``address`` (or start a local Ray instance for this process) and describe it.

    A process already connected (a test fixture, an earlier evaluation) keeps its connection; threads may call it
    at once (the second waits for the first).
    """
    ray = import_ray()
    with _CONNECT_LOCK:
        if not ray.is_initialized():
            _init(ray, address)
            _INIT_THREAD[:] = [threading.current_thread()]
    nodes = tuple(
        NodeInfo(str(n.get("NodeManagerAddress", "?")), float(n.get("Resources", {}).get("CPU", 0.0)),
                 float(n.get("Resources", {}).get("GPU", 0.0)))
        for n in ray.nodes() if n.get("Alive")
    )  # fmt: skip
    resources = ray.cluster_resources()
    return ClusterInfo(address, float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0)), nodes)


def _init(ray: Any, address: str | None) -> None:
    common = {"logging_level": "ERROR", "log_to_driver": False, "include_dashboard": False}
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, **common)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError ... for a bad cluster
            text = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise NotAvailableError(f"cannot join the Ray cluster at {address}: {text}") from exc
        return
    for name, value in worker_env().items():  # workers of a local instance inherit this environment
        if name == "PYTHONPATH":
            parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            value = os.pathsep.join([value, *[p for p in parts if p != value]])
        os.environ[name] = value
    ray.init(num_cpus=local_cpus(), **common)
    _STARTED_HERE.add(True)


def start_in_background(work: Callable[[], None]) -> None:
    """Run ``work`` (which connects to Ray or starts actors) in a thread; when it started Ray, the thread stays
    alive: Ray's processes die with the thread that started them (they are killed when their parent ends). An error
    in ``work`` is dropped: whoever needs the result connects again and reports it."""

    def run() -> None:
        with contextlib.suppress(Exception):
            work()
        if threading.current_thread() in _INIT_THREAD:
            threading.Event().wait()

    threading.Thread(target=run, name="ray-start", daemon=True).start()
