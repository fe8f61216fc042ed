"""On-disk job folders: spec.json, state.json (atomic writes under a file lock), logs, metrics and results."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine import atomic, config
from engine.errors import InputError
from engine.hashing import hash_obj


class JobStatus(StrEnum):
    """A job's status: the one vocabulary of jobs, their state files, the CLI and the pages (equal to its string)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


STATUSES = tuple(JobStatus)
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED)
_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-\d{6}-[0-9a-f]{8}$")


def jobs_root() -> Path:
    """The folder that holds one sub-folder per job."""
    return config.subdir("jobs")


def new_job_id(target: str, params: dict[str, Any]) -> str:
    """Sortable, unique id: UTC timestamp to the microsecond plus a short hash of target and params."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{int((now % 1) * 1e6):06d}"
    return f"{stamp}-{hash_obj({'target': target, 'params': params}, length=8)}"


def job_dir(job_id: str) -> Path:
    """The folder of an existing job; an unknown or malformed id is an ``InputError``."""
    if not isinstance(job_id, str) or not _ID_PATTERN.match(job_id):
        raise InputError(f"unknown job id {job_id!r}")
    path = jobs_root() / job_id
    if not (path / "spec.json").is_file():
        raise InputError(f"unknown job id {job_id!r}")
    return path


def all_job_ids() -> list[str]:
    """Ids of every job with a spec, oldest first (ids sort by creation time)."""
    root = jobs_root()
    return sorted(p.name for p in root.iterdir() if _ID_PATTERN.match(p.name) and (p / "spec.json").is_file())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file in the same folder and rename it over ``path`` (readers never see half a file)."""
    atomic.write_json_atomic(path, data, indent=1, default=str)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if missing), across processes."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_state(folder: Path) -> dict[str, Any]:
    return read_json(folder / "state.json", default={}) or {}


def update_state(folder: Path, **changes: Any) -> dict[str, Any]:
    """Read-modify-write state.json under the job's lock; returns the new state."""
    with locked(folder / ".lock"):
        state = read_state(folder)
        state.update(changes)
        write_json_atomic(folder / "state.json", state)
        return state


def create_job_folder(job_id: str, spec: dict[str, Any]) -> Path:
    """Make the folder with spec.json and a queued state.json; the id must be new."""
    folder = jobs_root() / job_id
    folder.mkdir(parents=False, exist_ok=False)
    (folder / "work").mkdir()
    write_json_atomic(folder / "spec.json", spec)
    write_json_atomic(folder / "state.json", {"status": JobStatus.QUEUED, "progress": [0, 0, ""], "attempts": 0})
    return folder


def append_log(folder: Path, message: str) -> None:
    stamp = time.strftime("%H:%M:%S", time.gmtime())
    with open(folder / "log.txt", "a") as fh:
        fh.write(f"[{stamp}] {message}\n")


def tail_log(folder: Path, lines: int = 50, max_bytes: int = 256_000) -> str:
    """The last ``lines`` lines of log.txt (reads at most ``max_bytes`` from the end)."""
    path = folder / "log.txt"
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""


def _json_line(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


_metrics_cache: dict[Path, tuple[int, int, list[dict[str, Any]]]] = {}


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    """All metric points ``{name, step, value, time}`` from metrics.jsonl.

    Reads incrementally (only bytes appended since the last call) so a page refreshing a long training run stays
    cheap; a line still being written is left for the next call.
    """
    path = folder / "metrics.jsonl"
    try:
        stat = path.stat()
    except OSError:
        return []
    inode, offset, points = _metrics_cache.get(path, (stat.st_ino, 0, []))
    if inode != stat.st_ino or stat.st_size < offset:
        offset, points = 0, []
    if stat.st_size > offset:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read(stat.st_size - offset)
        complete = chunk[: chunk.rfind(b"\n") + 1]
        points = points + [point for line in complete.splitlines() if (point := _json_line(line)) is not None]
        offset += len(complete)
    if len(_metrics_cache) > 32:
        _metrics_cache.clear()
    _metrics_cache[path] = (stat.st_ino, offset, points)
    return list(points)


def process_alive(pid: int | None, host: str | None = None) -> bool | None:
    """True/False when ``pid`` on this host is (not) a live, non-zombie process; None when it cannot be told."""
    if not pid:
        return False
    if host and host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return not Path("/proc").is_dir()
    return fields[0] not in ("Z", "X")


def process_start_ticks(pid: int) -> int | None:
    """Kernel start time of ``pid`` (guards against a recycled pid); None off Linux."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
