"""Running a job function: target resolution, the detached worker's life cycle, and inline runs."""

from __future__ import annotations

import ast
import contextlib
import importlib
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import InputError, LawExplorerError
from engine.hashing import hash_obj
from engine.jobs import state as jobstate
from engine.jobs.context import JobCancelled, JobContext, ProgressCallback

JobFunction = Callable[[dict, JobContext], dict]
_TARGET = re.compile(r"^engine(\.[A-Za-z_]\w*)+:[A-Za-z_]\w*$")
HEARTBEAT_INTERVAL_S = 1.0


def cancel_grace_s() -> float:
    """Seconds a worker may take to honour a cancel before its process group is killed."""
    return float(os.environ.get("LAW_EXPLORER_JOB_CANCEL_GRACE_S", "10"))


def resolve_target(target: str) -> JobFunction:
    """Import ``engine.pkg.module:function``; anything outside the ``engine`` package is refused."""
    if not isinstance(target, str) or not _TARGET.match(target):
        raise InputError(f"job target {target!r} is not of the form 'engine.module:function'")
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"job target {target!r}: cannot import {module_name} ({exc})") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise InputError(f"job target {target!r}: {module_name} has no function {func_name}")
    return func


def _module_source(module_name: str) -> Path | None:
    """The .py file of ``engine.x.y`` located on disk without importing ``engine.x`` (whose init may load torch)."""
    import engine

    folder = Path(engine.__file__).parent
    *packages, leaf = module_name.split(".")[1:]
    for package in packages:
        folder = folder / package
        if not (folder / "__init__.py").is_file():
            return None
    for candidate in (folder / f"{leaf}.py", folder / leaf / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def check_target(target: str) -> None:
    """Validate a target without importing its module (submitting must stay fast in the app's script thread).

    The module's file is located under the ``engine`` package and its source parsed for a top-level definition or
    import of the function name; the worker does the real import.
    """
    if not isinstance(target, str) or not _TARGET.match(target):
        raise InputError(f"job target {target!r} is not of the form 'engine.module:function'")
    module_name, func_name = target.split(":")
    if module_name in sys.modules:
        resolve_target(target)
        return
    source = _module_source(module_name)
    if source is None:
        raise InputError(f"job target {target!r}: cannot find module {module_name}")
    tree = ast.parse(source.read_text(), filename=str(source))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    if func_name not in names:
        raise InputError(f"job target {target!r}: {module_name} has no function {func_name}")


def check_params(params: Any) -> dict[str, Any]:
    """Params must be a JSON object; returns the JSON round-tripped copy the job will see."""
    if not isinstance(params, dict):
        raise InputError("job params must be a dict")
    try:
        return json.loads(json.dumps(params))
    except (TypeError, ValueError) as exc:
        raise InputError(f"job params are not JSON-serialisable: {exc}") from exc


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def normalise_result(target: str, result: Any) -> dict[str, Any]:
    """The JSON round trip of a job's result (numpy values become lists/numbers); a non-dict is an error."""
    if result is None:
        result = {}
    if not isinstance(result, dict):
        raise LawExplorerError(f"job function {target} returned {type(result).__name__}, not a dict")
    try:
        return json.loads(json.dumps(result, default=_json_default, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise LawExplorerError(f"result of {target} is not JSON-serialisable: {exc}") from exc


def one_line_error(exc: BaseException) -> str:
    """A user-facing message as is; any other exception as ``TypeName: message``; always one line."""
    text = str(exc) if isinstance(exc, LawExplorerError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text[:500] or type(exc).__name__


def run_inline(
    target: str,
    params: dict[str, Any],
    progress: ProgressCallback | None = None,
    work_dir: Path | None = None,
) -> dict[str, Any]:
    """Run a job function in this process with the same JobContext class a worker uses.

    ``work_dir`` defaults to a temporary folder removed afterwards; pass a folder to make re-runs resume.
    """
    func = resolve_target(target)
    params = check_params(params)
    job_id = "inline-" + hash_obj({"target": target, "params": params}, length=8)
    if work_dir is not None:
        ctx = JobContext(job_id, Path(work_dir), folder=None, on_progress=progress)
        return normalise_result(target, func(params, ctx))
    with tempfile.TemporaryDirectory(prefix="law-explorer-inline-") as tmp:
        ctx = JobContext(job_id, Path(tmp), folder=None, on_progress=progress)
        return normalise_result(target, func(params, ctx))


class _Terminated(BaseException):
    """SIGTERM reached the worker: end as ``interrupted`` (or ``cancelled`` if a cancel was asked)."""


def _finish(folder: Path, job_id: str, status: str, error: str | None = None, result: dict | None = None) -> None:
    from engine.jobs import summary  # local: keeps DuckDB out of the import path of job functions

    if result is not None:
        jobstate.write_json_atomic(folder / "result.json", result)
    now = time.time()
    final = {"status": status, "error": error, "finished": now, "heartbeat": now}
    try:  # the summary goes in first, so a job seen as finished is also queryable in the store
        summary.record(job_id, jobstate.read_json(folder / "spec.json", {}), {**jobstate.read_state(folder), **final},
                       result)
    except Exception as exc:
        jobstate.append_log(folder, f"could not record the job summary in the store: {one_line_error(exc)}")
    jobstate.update_state(folder, **final)
    jobstate.append_log(folder, f"job {status}" + (f": {error}" if error else ""))


def _heartbeat(ctx: JobContext, folder: Path, job_id: str, stop: threading.Event) -> None:
    """Keep the heartbeat fresh; once cancelled, give the job ``cancel_grace_s`` and then kill the group."""
    cancel_seen: float | None = None
    while not stop.wait(HEARTBEAT_INTERVAL_S):
        with contextlib.suppress(OSError):
            ctx.flush()
        if cancel_seen is None and ctx.cancelled():
            cancel_seen = time.monotonic()
            jobstate.append_log(folder, "cancel requested")
        if cancel_seen is not None and time.monotonic() - cancel_seen > cancel_grace_s() and not stop.is_set():
            _finish(folder, job_id, "cancelled", error=f"killed after not stopping within {cancel_grace_s():.0f} s")
            if os.getpgid(0) == os.getpid():
                os.killpg(os.getpid(), signal.SIGKILL)
            os._exit(1)


def _claim(folder: Path) -> dict[str, Any] | None:
    """Mark the job running with this pid; None when another live worker owns it or it is already done."""
    with jobstate.locked(folder / ".lock"):
        st = jobstate.read_state(folder)
        other = st.get("pid")
        if st.get("status") == "running" and other != os.getpid() and jobstate.process_alive(other, st.get("host")):
            return None
        if st.get("status") == "done":
            return None
        now = time.time()
        st.update(
            status="running", pid=os.getpid(), pid_start=jobstate.process_start_ticks(os.getpid()),
            host=socket.gethostname(), started=now, first_started=st.get("first_started") or now,
            heartbeat=now, finished=None, error=None, attempts=int(st.get("attempts") or 0) + 1,
        )
        jobstate.write_json_atomic(folder / "state.json", st)
        return st


def run_worker(job_id: str) -> int:
    """Body of ``python -m engine jobs worker ID``: run the job to an end state; returns an exit code."""
    folder = jobstate.job_dir(job_id)
    spec = jobstate.read_json(folder / "spec.json", {})
    claimed = _claim(folder)
    if claimed is None:
        jobstate.append_log(folder, f"worker {os.getpid()} exits: job is done or owned by a live worker")
        return 0
    jobstate.append_log(folder, f"worker {os.getpid()} started attempt {claimed['attempts']} of {spec.get('target')}")
    last = claimed.get("progress") or [0, 0, ""]  # shown until the resumed function reports its own
    ctx = JobContext(job_id, folder / "work", folder=folder, initial_progress=(int(last[0]), int(last[1]), str(last[2])))
    if ctx.cancelled():
        _finish(folder, job_id, "cancelled", error="cancelled before it started")
        return 0

    def on_term(signum: int, frame: Any) -> None:
        raise _Terminated()

    signal.signal(signal.SIGTERM, on_term)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(ctx, folder, job_id, stop), daemon=True)
    beat.start()
    try:
        func = resolve_target(spec.get("target", ""))
        result = normalise_result(spec["target"], func(dict(spec.get("params") or {}), ctx))
        stop.set()
        ctx.flush()
        _finish(folder, job_id, "done", result=result)
        from engine.jobs.chain import fire

        fire(folder)  # chained jobs start here, server-side, whether or not a page is still open
        return 0
    except (JobCancelled, _Terminated, KeyboardInterrupt) as exc:
        stop.set()
        status = "cancelled" if ctx.cancelled() else "interrupted"
        signal_name = "SIGTERM" if isinstance(exc, _Terminated) else "SIGINT"
        _finish(folder, job_id, status, error=None if status == "cancelled" else f"the worker was stopped by {signal_name}")
        return 0 if status == "cancelled" else 1
    except BaseException as exc:
        stop.set()
        jobstate.append_log(folder, "traceback:\n" + traceback.format_exc().rstrip())
        _finish(folder, job_id, "failed", error=one_line_error(exc))
        return 1
    finally:
        stop.set()
