"""``python -m engine jobs ...``: list, show, cancel, resume, wait for and tail background jobs."""

from __future__ import annotations

import argparse
import math

import pandas as pd

from engine import jobs
from engine.cli.common import Output, Subparsers, leaf
from engine.errors import InputError
from engine.jobs import demo, runner
from engine.jobs import state as jobstate


def _row(record: jobs.JobRecord) -> dict:
    done, total, _ = record.progress
    return {
        "id": record.id,
        "status": record.status,
        "progress": f"{done}/{total}" if total else "",
        "elapsed_s": round(record.elapsed_s, 1) if record.elapsed_s is not None else None,
        "title": record.title,
        "target": record.target,
    }


def _one(record: jobs.JobRecord) -> Output:
    lines = [f"{record.id}  {record.status}  {record.title}", f"target: {record.target}", f"params: {record.params}"]
    done, total, message = record.progress
    if total:
        lines.append(f"progress: {done}/{total} {message}".rstrip())
    if record.error:
        lines.append(f"error: {record.error}")
    if record.result is not None:
        lines.append(f"result: {record.result}")
    return Output(data=record.to_dict(), text="\n".join(lines))


def _list(args: argparse.Namespace) -> Output:
    records = jobs.list_jobs(status=args.status)
    table = pd.DataFrame([_row(r) for r in records], columns=["id", "status", "progress", "elapsed_s", "title", "target"])
    return Output(data=[r.to_dict() for r in records], text=None if records else "no jobs", tables=[("", table)] if records else [])


def _show(args: argparse.Namespace) -> Output:
    return _one(jobs.get_job(args.id))


def _cancel(args: argparse.Namespace) -> Output:
    return _one(jobs.cancel(args.id, wait_s=args.wait))


def _resume(args: argparse.Namespace) -> Output:
    return _one(jobs.resume(args.id))


def _wait(args: argparse.Namespace) -> Output:
    return _one(jobs.wait(args.id, timeout=args.timeout))


def _logs(args: argparse.Namespace) -> Output:
    record = jobs.get_job(args.id, log_lines=args.tail)
    return Output(data={"id": record.id, "status": record.status, "log": record.log_tail}, text=record.log_tail or "(empty log)")


def _forget(args: argparse.Namespace) -> Output:
    jobs.forget(args.id)
    return Output(data={"id": args.id, "deleted": True}, text=f"deleted job {args.id}")


def _worker(args: argparse.Namespace) -> Output:
    code = runner.run_worker(args.id)
    record = jobs.get_job(args.id, log_lines=0)
    if code:
        raise SystemExit(code)
    return Output(data=record.to_dict(), text=f"{record.id} {record.status}")


def _submit_demo(args: argparse.Namespace) -> Output:
    if args.n < 1 or not math.isfinite(args.sleep) or args.sleep < 0:
        raise InputError(f"--n must be at least 1 and --sleep a finite number >= 0, got {args.n} and {args.sleep}")
    params = {"n": args.n, "sleep": args.sleep}
    if args.fail_at is not None:
        params["fail_at"] = args.fail_at
    job_id = jobs.submit(demo.TARGET, params, title=f"demo: count to {args.n}")
    return _one(jobs.get_job(job_id))


def register(sub: Subparsers) -> None:
    group = sub.add_parser("jobs", help="Background jobs: list, inspect, cancel, resume").add_subparsers(
        dest="cmd", required=True
    )
    p = leaf(group, "list", _list, "List all jobs, newest first")
    p.add_argument("--status", choices=jobstate.STATUSES, help="only jobs with this status")
    for name, func, text in (
        ("show", _show, "Show one job: status, progress, params, result, log tail, metrics"),
        ("resume", _resume, "Restart an interrupted, failed or cancelled job with the same id and work dir"),
        ("forget", _forget, "Delete a finished job: its folder, work dir and summary row"),
        ("worker", _worker, "Internal: run a queued job in this process (used by submit)"),
    ):
        leaf(group, name, func, text).add_argument("id", help="job id")
    p = leaf(group, "cancel", _cancel, "Cancel a job (finished work is kept; it can be resumed)")
    p.add_argument("id", help="job id")
    p.add_argument("--wait", type=float, default=15.0, help="seconds to wait before killing the worker (default 15)")
    p = leaf(group, "wait", _wait, "Wait until a job ends (exit 2 on timeout)")
    p.add_argument("id", help="job id")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    p = leaf(group, "logs", _logs, "Print the tail of a job's log")
    p.add_argument("id", help="job id")
    p.add_argument("--tail", type=int, default=50, help="number of lines (default 50)")
    p = leaf(group, "submit-demo", _submit_demo, "Submit the built-in demo job (counts with progress)")
    p.add_argument("--n", type=int, default=20, help="steps (default 20)")
    p.add_argument("--sleep", type=float, default=0.5, help="seconds per step (default 0.5)")
    p.add_argument("--fail-at", type=int, default=None, help="make the demo fail at this step")
