"""JobContext: what a job function sees (work dir, progress, log, metrics, cancellation), in a worker or inline."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import LawExplorerError
from engine.jobs import state as jobstate

ProgressCallback = Callable[[int, int, str], None]
_log = logging.getLogger("engine.jobs")
_PROGRESS_WRITE_INTERVAL_S = 0.2


class JobCancelled(LawExplorerError):
    """Raised by ``ctx.check_cancelled()`` once a cancel was requested; the job ends as ``cancelled``."""


class JobContext:
    """Handed to ``run(params, ctx)``. With ``folder`` it reports into the job's files; without, to callbacks.

    ``work_dir`` persists across resumes of the same job: keep checkpoints and partial results there and skip
    finished work on start.
    """

    def __init__(
        self,
        job_id: str,
        work_dir: Path,
        folder: Path | None = None,
        on_progress: ProgressCallback | None = None,
        initial_progress: tuple[int, int, str] = (0, 0, ""),
    ) -> None:
        self.job_id = job_id
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.metrics: list[dict[str, Any]] = []
        self._on_progress = on_progress
        self._progress: tuple[int, int, str] = initial_progress
        self._written_progress: tuple[int, int, str] | None = None
        self._last_write = 0.0
        self._lock = threading.Lock()
        self._cancel_requested = False

    # -- reporting ---------------------------------------------------------------------------------------------
    def progress(self, done: int, total: int, message: str = "") -> None:
        """Report ``done`` of ``total`` units; cheap to call every step (file writes are throttled)."""
        self._progress = (int(done), int(total), str(message))
        if self._on_progress is not None:
            self._on_progress(*self._progress)
        if self.folder is not None:
            now = time.monotonic()
            if now - self._last_write >= _PROGRESS_WRITE_INTERVAL_S or done >= total:
                self.flush()

    def flush(self, **extra: Any) -> None:
        """Write the latest progress and a heartbeat to state.json (also called by the worker's heartbeat)."""
        if self.folder is None:
            return
        with self._lock:
            self._last_write = time.monotonic()
            self._written_progress = self._progress
            jobstate.update_state(self.folder, progress=list(self._progress), heartbeat=time.time(), **extra)

    def log(self, message: str) -> None:
        """One line in the job's log (log.txt in a worker; the ``engine.jobs`` logger inline)."""
        if self.folder is not None:
            jobstate.append_log(self.folder, str(message))
        else:
            _log.info("%s", message)

    def metric(self, name: str, step: int, value: float) -> None:
        """Record one point of a named series (e.g. a loss curve); shown as a chart on the jobs page."""
        value = float(value)
        point = {"name": str(name), "step": int(step), "value": value if math.isfinite(value) else None,
                 "time": time.time()}
        self.metrics.append(point)
        if self.folder is not None:
            with open(self.folder / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(point) + "\n")

    # -- cancellation ------------------------------------------------------------------------------------------
    def request_cancel(self) -> None:
        """Ask an inline run to stop (a background job is cancelled through ``engine.jobs.cancel``)."""
        self._cancel_requested = True

    def cancelled(self) -> bool:
        """True once a cancel was requested; long loops should check it between units of work."""
        if self._cancel_requested:
            return True
        if self.folder is not None and (self.folder / "cancel").exists():
            self._cancel_requested = True
        return self._cancel_requested

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if a cancel was requested."""
        if self.cancelled():
            raise JobCancelled(f"job {self.job_id} was cancelled")
