"""Run alignment job functions with or without the shared ``engine.jobs`` machinery (a local context otherwise)."""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Callable
from pathlib import Path

from engine.errors import LawExplorerError


class JobCancelledLocal(LawExplorerError):
    """Raised by the local context when a run was asked to stop."""


class LocalContext:
    """The subset of ``engine.jobs.JobContext`` that alignment jobs use, for in-process runs and tests."""

    def __init__(self, work_dir: Path | None = None, progress: Callable[[int, int, str], None] | None = None,
                 cancel_when: Callable[[int], bool] | None = None) -> None:
        self.job_id = "local"
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="align-job-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._progress = progress
        self._cancel_when = cancel_when
        self.done = 0
        self.metrics: list[tuple[str, int, float]] = []
        self.logs: list[str] = []

    def progress(self, done: int, total: int, message: str = "") -> None:
        self.done = done
        if self._progress:
            self._progress(done, total, message)

    def log(self, message: str) -> None:
        self.logs.append(message)

    def metric(self, name: str, step: int, value: float) -> None:
        self.metrics.append((name, step, float(value)))

    def cancelled(self) -> bool:
        return bool(self._cancel_when and self._cancel_when(self.done))

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelledLocal("cancelled")


def jobs_module():
    """The shared jobs package, or None while it is not installed."""
    try:
        return importlib.import_module("engine.jobs")
    except ImportError:
        return None


def run_inline(
    target: str, params: dict, progress: Callable[[int, int, str], None] | None = None, work_dir: Path | None = None
) -> dict:
    """Run a job function in this process: through ``engine.jobs.run_inline`` when present, else locally."""
    jobs = jobs_module()
    if jobs is not None and hasattr(jobs, "run_inline"):
        return jobs.run_inline(target, params, progress=progress, work_dir=work_dir)
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return func(params, LocalContext(work_dir=work_dir, progress=progress))


def submit(target: str, params: dict, title: str | None = None) -> str:
    """Queue a background job (needs ``engine.jobs``)."""
    jobs = jobs_module()
    if jobs is None:
        raise LawExplorerError("background jobs are not available (engine.jobs is not installed); run without --background")
    return jobs.submit(target, params, title=title)
