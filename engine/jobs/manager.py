"""Submitting, inspecting, cancelling, resuming and waiting for background jobs (detached worker processes)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine import config
from engine.errors import InputError, LawExplorerError
from engine.jobs import state as jobstate
from engine.jobs.runner import check_params, check_target
from engine.jobs.state import JobStatus


class JobTimeout(LawExplorerError):
    """``wait`` ran out of time before the job reached an end state."""


def stale_after_s() -> float:
    """A running job whose heartbeat is older than this is reported ``interrupted``."""
    return float(os.environ.get("LAW_EXPLORER_JOB_STALE_S", "120"))


@dataclass(frozen=True)
class JobRecord:
    """One job as seen now: spec, live status (dead workers show as ``interrupted``), progress and outputs."""

    id: str
    target: str
    title: str
    params: dict[str, Any]
    status: JobStatus
    progress: tuple[int, int, str]
    created: float | None
    started: float | None
    finished: float | None
    error: str | None
    result: dict[str, Any] | None
    log_tail: str = ""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    pid: int | None = None
    heartbeat: float | None = None
    work_dir: str = ""

    @property
    def elapsed_s(self) -> float | None:
        """Seconds of the current (or last) attempt: start to finish, to the last heartbeat, or to now."""
        if self.started is None:
            return None
        end = self.finished or (time.time() if self.status == JobStatus.RUNNING else self.heartbeat) or time.time()
        return max(0.0, end - self.started)

    @property
    def fraction(self) -> float:
        done, total, _ = self.progress
        return min(1.0, done / total) if total else (1.0 if self.status == JobStatus.DONE else 0.0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["progress"] = {"done": self.progress[0], "total": self.progress[1], "message": self.progress[2]}
        data["elapsed_s"] = self.elapsed_s
        return data


def _pid_matches(st: dict[str, Any]) -> bool | None:
    """Whether the worker recorded in ``st`` still runs (a recycled pid does not count); None if unknowable."""
    pid = st.get("pid")
    alive = jobstate.process_alive(pid, st.get("host"))
    if alive and st.get("pid_start") is not None:
        alive = jobstate.process_start_ticks(pid) in (None, st["pid_start"])
    return alive


def _interruption(st: dict[str, Any]) -> str:
    """Why a job whose state says active is reported ``interrupted``."""
    if st.get("status") == JobStatus.QUEUED:
        return "the worker never started"
    if _pid_matches(st) is False:
        return f"the worker process {st.get('pid')} is gone"
    return f"no heartbeat from the worker for {time.time() - float(st.get('heartbeat') or 0):.0f} s"


def live_status(st: dict[str, Any], created: float | None) -> JobStatus:
    """The stored status, corrected to ``interrupted`` when the worker is gone or silent."""
    status = st.get("status", JobStatus.QUEUED)
    if status not in jobstate.STATUSES:  # a state file this version cannot read: the job is not progressing
        return JobStatus.INTERRUPTED
    now = time.time()
    if status == JobStatus.RUNNING:
        alive = _pid_matches(st)
        stale = now - float(st.get("heartbeat") or 0) > stale_after_s()
        if alive is False or stale:
            return JobStatus.INTERRUPTED
    elif status == JobStatus.QUEUED:
        if st.get("launcher_pid"):
            if jobstate.process_alive(st["launcher_pid"]) is False:
                return JobStatus.INTERRUPTED
        elif now - float(st.get("queued_at") or created or now) > stale_after_s():
            return JobStatus.INTERRUPTED
    return JobStatus(status)


def _record(job_id: str, details: bool = True, log_lines: int = 50) -> JobRecord:
    folder = jobstate.job_dir(job_id)
    spec = jobstate.read_json(folder / "spec.json", {}) or {}
    st = jobstate.read_state(folder)
    status = live_status(st, spec.get("created"))
    progress = st.get("progress") or [0, 0, ""]
    result = jobstate.read_json(folder / "result.json") if status == JobStatus.DONE else None
    return JobRecord(
        id=job_id,
        target=spec.get("target", ""),
        title=spec.get("title") or spec.get("target", ""),
        params=spec.get("params") or {},
        status=status,
        progress=(int(progress[0]), int(progress[1]), str(progress[2] if len(progress) > 2 else "")),
        created=spec.get("created"),
        started=st.get("started"),
        finished=st.get("finished"),
        error=_interruption(st) if status == JobStatus.INTERRUPTED and st.get("status") in jobstate.ACTIVE else st.get("error"),
        result=result,
        log_tail=jobstate.tail_log(folder, log_lines) if details else "",
        metrics=jobstate.read_metrics(folder) if details else [],
        attempts=int(st.get("attempts") or 0),
        pid=st.get("pid"),
        heartbeat=st.get("heartbeat"),
        work_dir=str(folder / "work"),
    )


def get_job(job_id: str, log_lines: int = 50) -> JobRecord:
    """The job with its log tail and metrics; an unknown id is an ``InputError``."""
    return _record(job_id, details=True, log_lines=log_lines)


def list_jobs(
    target: str | None = None, status: str | None = None, details: bool = False, params: dict | None = None
) -> list[JobRecord]:
    """All jobs, newest first, optionally only one target, status or exact params.

    ``details`` also loads each log tail and metrics (slower); without it ``log_tail`` is "" and ``metrics`` [].
    """
    if status is not None and status not in jobstate.STATUSES:
        raise InputError(f"unknown job status {status!r}; expected one of {', '.join(jobstate.STATUSES)}")
    records = []
    for job_id in reversed(jobstate.all_job_ids()):
        with contextlib.suppress(InputError):  # a folder deleted while listing
            record = _record(job_id, details=details)
            if (
                (target is None or record.target == target)
                and (status is None or record.status == status)
                and (params is None or record.params == params)
            ):
                records.append(record)
    return records


def _spawn(job_id: str) -> None:
    folder = jobstate.job_dir(job_id)
    env = dict(os.environ, PYTHONUNBUFFERED="1", LAW_EXPLORER_HOME=str(config.home()))
    try:
        with open(folder / "log.txt", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "jobs", "worker", job_id],
                cwd=config.REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=env, close_fds=True,
            )
    except OSError as exc:
        message = f"could not start a worker process: {exc}"
        jobstate.update_state(folder, status=JobStatus.FAILED, error=message, finished=time.time())
        raise LawExplorerError(f"job {job_id}: {message}") from exc
    threading.Thread(target=proc.wait, name=f"reap-{job_id}", daemon=True).start()  # no zombies left behind
    with jobstate.locked(folder / ".lock"):
        st = jobstate.read_state(folder)
        if st.get("status") == JobStatus.QUEUED:
            st["launcher_pid"] = proc.pid
            jobstate.write_json_atomic(folder / "state.json", st)


def submit(target: str, params: dict[str, Any], title: str | None = None) -> str:
    """Start ``target(params, ctx)`` in a detached worker; an identical queued/running job returns its id."""
    check_target(target)
    params = check_params(params)
    with jobstate.locked(jobstate.jobs_root() / ".submit.lock"):
        for record in list_jobs(target=target, params=params):
            if record.status in jobstate.ACTIVE:
                return record.id
        job_id = jobstate.new_job_id(target, params)
        while (jobstate.jobs_root() / job_id).exists():
            time.sleep(1e-5)
            job_id = jobstate.new_job_id(target, params)
        spec = {"target": target, "params": params, "title": title or target, "created": time.time()}
        jobstate.create_job_folder(job_id, spec)
    _spawn(job_id)
    return job_id


def _kill_group(st: dict[str, Any]) -> None:
    """SIGTERM then SIGKILL the worker's process group, if the recorded pid is still that worker."""
    pid = st.get("pid")
    if not pid or not _pid_matches(st):
        return
    try:
        own_group = os.getpgid(pid) == pid  # a worker started by submit leads its own session
    except ProcessLookupError:
        return
    for sig, pause in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 0.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if own_group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline and _pid_matches(st):
            time.sleep(0.05)
        if not _pid_matches(st):
            return


def cancel(job_id: str, wait_s: float = 0.0) -> JobRecord:
    """Ask the job to stop (its work_dir is kept, it can be resumed).

    With ``wait_s`` > 0, wait that long for the worker to stop and then kill its process group; otherwise the
    worker itself enforces a grace period of ``LAW_EXPLORER_JOB_CANCEL_GRACE_S`` seconds.
    """
    folder = jobstate.job_dir(job_id)
    record = _record(job_id, details=False)
    if record.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED):
        return record
    (folder / "cancel").touch()
    if record.status == JobStatus.INTERRUPTED:
        jobstate.update_state(folder, status=JobStatus.CANCELLED, error=None, finished=time.time())
        jobstate.append_log(folder, "cancelled while interrupted")
        return _record(job_id, details=False)
    if wait_s > 0:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _record(job_id, details=False).status in jobstate.ACTIVE:
            time.sleep(0.1)
        st = jobstate.read_state(folder)
        if live_status(st, record.created) in jobstate.ACTIVE:
            _kill_group(st)
            jobstate.update_state(folder, status=JobStatus.CANCELLED, error="killed after not stopping", finished=time.time())
    return _record(job_id, details=False)


def resume(job_id: str) -> JobRecord:
    """Restart an interrupted, failed or cancelled job with the same id, params and work_dir."""
    folder = jobstate.job_dir(job_id)
    record = _record(job_id, details=False)
    if record.status in jobstate.ACTIVE:
        raise InputError(f"job {job_id} is {record.status}; nothing to resume")
    if record.status == JobStatus.DONE:
        raise InputError(f"job {job_id} is already done")
    check_target(record.target)
    _kill_group(jobstate.read_state(folder))  # a silent worker whose heartbeat went stale
    with contextlib.suppress(FileNotFoundError):
        (folder / "cancel").unlink()
    jobstate.update_state(folder, status=JobStatus.QUEUED, error=None, finished=None, launcher_pid=None,
                          queued_at=time.time())
    jobstate.append_log(folder, "resume requested")
    _spawn(job_id)
    return _record(job_id, details=False)


def wait(job_id: str, timeout: float | None = None, poll_s: float = 0.1) -> JobRecord:
    """Block until the job is done, failed, cancelled or interrupted; ``JobTimeout`` after ``timeout`` s."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        record = _record(job_id, details=False)
        if record.status in jobstate.FINISHED:
            return get_job(job_id)
        if deadline is not None and time.monotonic() > deadline:
            raise JobTimeout(f"job {job_id} is still {record.status} after {timeout:g} s")
        time.sleep(poll_s)


def forget(job_id: str) -> None:
    """Delete a finished job: its folder (work_dir included) and its summary row. Active jobs are refused."""
    folder = jobstate.job_dir(job_id)
    record = _record(job_id, details=False)
    if record.status in jobstate.ACTIVE:
        raise InputError(f"job {job_id} is {record.status}; cancel it before deleting it")
    trash = folder.with_name(f".deleted-{job_id}")
    folder.rename(trash)  # atomic: listings never see a half-deleted job
    shutil.rmtree(trash, ignore_errors=True)
    from engine.jobs import summary

    summary.forget(job_id)


def job_folder(job_id: str) -> Path:
    """The job's folder (spec.json, state.json, log.txt, metrics.jsonl, result.json, work/)."""
    return jobstate.job_dir(job_id)
