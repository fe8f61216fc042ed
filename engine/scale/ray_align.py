"""A sweep's A pipeline of one encoder (projector training, then A scoring) as a Ray task; the driver records it.

The task runs the existing job functions (``engine.alignment.train:run_job``, then the A-v3 scorer) in its own
worker process (``max_calls=1``: a fresh process per task, so no accelerate state outlives it; ``gpus_per_run > 1``
goes through the trainer's own launcher, its child processes). It writes only its run folder under the shared
``LAW_EXPLORER_HOME`` and the content-addressed files the trainer keeps there (the projector by its hash, the token
cache); the records the job functions write go to a DuckDB file of the task's own in its run folder and come back
as rows, which the driver, the store's one writer, inserts.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import NotAvailableError
from engine.scale.cluster import ClusterInfo, actor_runtime_env, import_ray

TASK_DB = "a-task.duckdb"
CANCEL_GRACE_S = 3.0  # a cancelled task first gets an interrupt (its launcher stops its ranks), then is killed
KILL_WAIT_S = 5.0  # then this long for Ray to report the killed tasks ended (their worker processes gone)


@dataclass(frozen=True)
class AStep:
    """One job function of the A pipeline: its target, params and run folder."""

    key: str  # "projector" or "a"
    target: str
    params: dict[str, Any]
    work_dir: str


@dataclass(frozen=True)
class ATaskResult:
    """What an A task sends back: A (None on error), where it ran, and the rows its job functions recorded."""

    A: float | None
    run_dir: str
    pid: int
    node: str
    seconds: float
    error: str | None = None
    projectors: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    scores: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def task_resources(device: str, gpus_per_run: int) -> dict[str, float]:
    """The resource request of one A task: ``gpus_per_run`` GPUs on CUDA, else as many CPUs (the trainer starts that
    many data-parallel ranks on either)."""
    return {"num_gpus": float(gpus_per_run)} if device.startswith("cuda") else {"num_cpus": float(gpus_per_run)}


def task_options(device: str, gpus_per_run: int) -> dict[str, Any]:
    """The Ray options of one A task: its resources, a fresh worker process per task (``max_calls=1``: no accelerate
    or CUDA state outlives it), one retry, and the runtime environment that finds ``engine``."""
    options: dict[str, Any] = {**task_resources(device, gpus_per_run), "max_calls": 1, "max_retries": 1}
    env = actor_runtime_env()
    if env is not None:
        options["runtime_env"] = env
    return options


def check_fits(cluster: ClusterInfo, device: str, gpus_per_run: int) -> None:
    """One clear error when no node has the ``gpus_per_run`` GPUs (on CUDA) or CPUs (else) one task asks for (it would
    wait forever: its ranks share a node)."""
    kind = "GPUs" if device.startswith("cuda") else "CPUs"
    most = max((n.gpus if kind == "GPUs" else n.cpus for n in cluster.nodes), default=0.0)
    if most < gpus_per_run:
        raise NotAvailableError(f"A with --gpus-per-run {gpus_per_run} needs one node with {gpus_per_run} {kind}; the "
                                f"largest node of {cluster.describe()} has {most:g}")  # fmt: skip


def task_name(encoder: str) -> str:
    """The Ray task's name, which Ray also gives its worker process (``ray::A of ENCODER``, in ``ps`` and ``ray``)."""
    return f"A of {encoder}"


def cancel_grace_s() -> float:
    """Seconds an interrupted task gets before it is killed: at most a third of the job's own cancel grace, so the
    sweep's driver has stopped every task (interrupt, kill, wait) before its job would be killed for not stopping."""
    from engine.jobs.runner import cancel_grace_s as job_grace_s

    return max(0.5, min(CANCEL_GRACE_S, job_grace_s() / 3))


def run_a_task(steps: Sequence[AStep], run_dir: str) -> ATaskResult:
    """The body of the Ray task (in a worker process): run the steps in order, return A and the recorded rows."""
    import time

    from engine.jobs import run_inline
    from engine.jobs.runner import one_line_error

    started = time.monotonic()
    node = f"{socket.gethostname()} ({_node_ip()})"
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    db = Path(run_dir) / TASK_DB
    db.unlink(missing_ok=True)  # a retried task starts its records afresh
    os.environ["LAW_EXPLORER_DB"] = str(db)  # this process ends with the task (max_calls=1)
    value: float | None = None
    try:
        for step in steps:
            result = run_inline(step.target, dict(step.params), work_dir=Path(step.work_dir))
            if step.key == "a":
                value = None if result.get("A") is None else float(result["A"])
        projectors, scores = _rows(db, "alignment_projectors"), _rows(db, "alignment_scores")
    except Exception as exc:
        return ATaskResult(None, run_dir, os.getpid(), node, time.monotonic() - started,
                           error=f"node {node}: {one_line_error(exc)}")  # fmt: skip
    return ATaskResult(value, run_dir, os.getpid(), node, time.monotonic() - started, None, projectors, scores)


def _rows(db: Path, table: str) -> tuple[dict[str, Any], ...]:
    from engine import store

    with store.connect(read_only=True, path=db) as con:
        cursor = con.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cursor.description]
        return tuple(dict(zip(names, row, strict=True)) for row in cursor.fetchall())


def _node_ip() -> str:
    try:
        return import_ray().util.get_node_ip_address()
    except Exception:
        return "?"


class ATasks:
    """The A tasks of a sweep in flight on the cluster: submit, wait for the next finished one, cancel them all."""

    def __init__(self, device: str, gpus_per_run: int) -> None:
        self.ray = import_ray()
        self._remote = self.ray.remote(**task_options(device, gpus_per_run))(run_a_task)  # max_calls: decorator only
        self.pending: dict[Any, str] = {}  # object ref -> encoder

    def submit(self, name: str, steps: Sequence[AStep], run_dir: str) -> None:
        self.pending[self._remote.options(name=task_name(name)).remote(list(steps), run_dir)] = name

    def next_done(self, cancelled: Callable[[], bool], poll_s: float = 0.5) -> tuple[str, ATaskResult | BaseException]:
        """The next finished task's encoder and result (or the error Ray raised: a worker that died); raises
        ``JobCancelled`` once ``cancelled()`` (the caller records that, then calls :meth:`cancel_all`)."""
        from engine.jobs.context import JobCancelled

        while True:
            if cancelled():
                raise JobCancelled("sweep cancelled")
            ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=poll_s)
            if ready:
                name = self.pending.pop(ready[0])
                try:
                    return name, self.ray.get(ready[0])
                except Exception as exc:  # the task's process died (killed, OOM) past its retry
                    return name, exc

    def cancel_all(self) -> None:
        """Interrupt every task (the trainer's launcher then stops its ranks), kill those still running after
        :func:`cancel_grace_s` (a task blocked in a system call never sees the interrupt), then wait up to
        ``KILL_WAIT_S`` for Ray to report them ended."""
        import time

        refs = list(self.pending)
        self.pending.clear()
        for ref in refs:
            self.ray.cancel(ref)
        refs = self._wait_ended(refs, time.monotonic() + cancel_grace_s())
        for ref in refs:
            self.ray.cancel(ref, force=True)
        self._wait_ended(refs, time.monotonic() + KILL_WAIT_S)

    def _wait_ended(self, refs: list[Any], deadline: float) -> list[Any]:
        """The refs still unfinished at ``deadline`` (or when all ended)."""
        import time

        while refs and time.monotonic() < deadline:
            refs = self.ray.wait(refs, num_returns=len(refs), timeout=0.25)[1]
        return refs
