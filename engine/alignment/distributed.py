"""Accelerate plumbing for projector training: the Accelerator, data sharding, and an N-process launcher with relay.

``launch`` starts ``python -m torch.distributed.run --standalone --nproc_per_node N -m
engine.alignment.rank SPEC`` (the entry point lives in ``rank.py``) (CPU: gloo, CUDA: NCCL through accelerate), or
``python -m engine.alignment.rank SPEC`` for one process (either under ``engine.alignment.guard``, so it ends with
the process that launched it), and forwards the main rank's progress, metrics and logs to
the calling job context; a cancel of that context is passed to the ranks through a ``cancel.request`` file in the run
folder, so every rank stops after the same step.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from engine import config
from engine.errors import LawExplorerError

EVENT_PREFIX = "@@law-train "
CANCEL_FILE = "cancel.request"


def world_size_from_env() -> int:
    """Process count of a running torchrun / ``accelerate launch`` group (1 outside one)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank_from_env() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def wants_cuda(device: str) -> bool:
    return device in ("auto", "cuda") and torch.cuda.is_available()


def accelerate_settings(device: str) -> tuple[bool, str]:
    """``(cuda, mixed_precision)`` of a training on ``device``: bf16 autocast on CUDA when supported, else full precision."""
    cuda = wants_cuda(device)
    return cuda, "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"


def fits_this_process(device: str) -> bool:
    """Whether a training on ``device`` can run in this process.

    accelerate keeps one state per process, fixed by its first ``Accelerator``; a training whose device or precision
    differs from it (e.g. a CUDA run after a CPU run in one worker) runs in a process of its own (``launch``).
    """
    from accelerate.state import AcceleratorState, is_initialized

    if not is_initialized():
        return True
    cuda, precision = accelerate_settings(device)
    state = AcceleratorState()
    return (state.device.type == "cuda") == cuda and state.mixed_precision == precision


def make_accelerator(device: str):
    """An ``accelerate.Accelerator`` for ``device`` (see ``accelerate_settings``; check ``fits_this_process`` first)."""
    from accelerate import Accelerator

    cuda, precision = accelerate_settings(device)
    return Accelerator(cpu=not cuda, mixed_precision=precision)


def shard(batch_idx: Sequence[int], rank: int, world: int) -> list[int]:
    """This process's share of a global batch (strided, so shares differ in size by at most one)."""
    return list(batch_idx[rank::world])


class RankCancelled(Exception):
    """Raised in every rank once the parent asked to cancel (after the checkpoint); the rank then exits 0."""


class RelayContext:
    """Job context inside a launched rank: the main rank prints events for the parent; cancel comes via a file."""

    def __init__(self, work_dir: Path, main: bool) -> None:
        self.job_id = "rank"
        self.work_dir = Path(work_dir)
        self.main = main

    def emit(self, **event) -> None:
        """Print one event line for the parent (main rank only)."""
        if self.main:
            print(EVENT_PREFIX + json.dumps(event), flush=True)

    def progress(self, done: int, total: int, message: str = "") -> None:
        self.emit(kind="progress", done=done, total=total, message=message)

    def log(self, message: str) -> None:
        self.emit(kind="log", message=message)

    def metric(self, name: str, step: int, value: float) -> None:
        self.emit(kind="metric", name=name, step=step, value=float(value))

    def cancelled(self) -> bool:
        return (self.work_dir / CANCEL_FILE).exists()

    def check_cancelled(self) -> None:
        if self.cancelled():
            self.emit(kind="cancelled")
            raise RankCancelled


@dataclass(frozen=True)
class LaunchCommand:
    """How the ranks of one training are started: the command line, its folder and its environment."""

    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]


def launch_command(spec: Path, num_processes: int, environ: Mapping[str, str] | None = None) -> LaunchCommand:
    """The launch of ``num_processes`` ranks for the params in ``spec``, from ``environ`` (default: this process's).

    Several: ``torch.distributed.run --standalone`` (one node, a free rendezvous port) with that many ranks, which
    share the GPUs this process sees (``CUDA_VISIBLE_DEVICES`` passes through: on Ray, the task's GPUs); one: a
    plain child process. Either runs under ``engine.alignment.guard``: it ends when this process dies (a killed job
    worker or Ray task), and the launcher then stops its ranks. The ranks import ``engine`` from this repository
    (``PYTHONPATH``)."""
    from engine.alignment.guard import guarded_argv

    environ = os.environ if environ is None else environ
    ranks = ["--standalone", f"--nproc_per_node={int(num_processes)}", "-m", "engine.alignment.rank", str(spec)]
    if num_processes > 1:
        argv = tuple(guarded_argv("torch.distributed.run", ranks))
    else:
        argv = tuple(guarded_argv("engine.alignment.rank", [str(spec)]))
    path = os.pathsep.join(filter(None, [str(config.REPO_ROOT), environ.get("PYTHONPATH")]))
    return LaunchCommand(argv, str(config.REPO_ROOT), {**environ, "PYTHONPATH": path})


def launch(params: dict, ctx, num_processes: int) -> dict:
    """Run ``train.run_loop`` in ``num_processes`` ranks (one: a plain child process); returns the main rank's loop
    result."""
    work = Path(params["run_dir"])
    work.mkdir(parents=True, exist_ok=True)
    (work / CANCEL_FILE).unlink(missing_ok=True)
    spec = work / "launch.json"
    spec.write_text(json.dumps(params))
    log_file = work / "ranks.log"
    command = launch_command(spec, num_processes)
    result, cancelled = None, False
    with open(log_file, "w") as err:
        proc = subprocess.Popen(list(command.argv), cwd=command.cwd, env=dict(command.env), stdout=subprocess.PIPE,
                                stderr=err, text=True)  # fmt: skip
        try:
            for line in proc.stdout:
                if not line.startswith(EVENT_PREFIX):
                    continue
                event = json.loads(line[len(EVENT_PREFIX):])
                kind = event.pop("kind")
                if kind == "progress":
                    ctx.progress(event["done"], event["total"], event["message"])
                elif kind == "metric":
                    ctx.metric(event["name"], event["step"], event["value"])
                elif kind == "log":
                    ctx.log(event["message"])
                elif kind == "result":
                    result = event["result"]
                elif kind == "cancelled":
                    cancelled = True
                if ctx.cancelled():
                    (work / CANCEL_FILE).touch()
            code = proc.wait()
        finally:
            if proc.poll() is None:  # the parent was interrupted: do not leave ranks behind
                proc.terminate()
                proc.wait(timeout=30)
    (work / CANCEL_FILE).unlink(missing_ok=True)
    if cancelled:
        ctx.check_cancelled()
    if code != 0 or result is None:
        lines = [s for s in log_file.read_text(errors="replace").splitlines() if s.strip()]
        errors = [s for s in lines if "Error" in s or "error:" in s]
        raise LawExplorerError(f"{num_processes}-process training failed (exit {code}): {(errors or lines or ['no output'])[-1][:300]} (log {log_file})")
    return result
