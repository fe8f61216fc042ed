"""CLI contracts of ``python -m engine jobs ...`` (run as subprocesses, JSON output, one-line errors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", "jobs", *args], cwd=REPO_ROOT, capture_output=True, text=True,
        env=os.environ.copy(), timeout=120,
    )


def _json(*args: str):
    proc = _cli(*args, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_submit_wait_show_logs_list_and_resume_of_done(isolated_home):
    submitted = _json("submit-demo", "--n", "4", "--sleep", "0")
    job_id = submitted["id"]
    assert submitted["target"] == "engine.jobs.demo:count" and submitted["params"] == {"n": 4, "sleep": 0.0}
    done = _json("wait", job_id, "--timeout", "60")
    assert done["status"] == "done" and done["result"]["sum_of_squares"] == 14
    assert done["progress"] == {"done": 4, "total": 4, "message": "step 4/4"}
    shown = _json("show", job_id)
    assert shown["result"] == done["result"] and shown["metrics"]
    logs = _json("logs", job_id, "--tail", "2")
    assert len(logs["log"].splitlines()) == 2
    listed = _json("list")
    assert [r["id"] for r in listed] == [job_id]
    assert _json("list", "--status", "failed") == []
    again = _cli("resume", job_id)
    assert again.returncode == 2 and again.stderr.strip() == f"error: job {job_id} is already done"
    text = _cli("list")
    assert job_id in text.stdout and "done" in text.stdout
    assert _json("forget", job_id) == {"id": job_id, "deleted": True}
    assert _json("list") == []


def test_unknown_id_is_one_line_exit_2(isolated_home):
    for command in ("show", "cancel", "resume", "wait", "logs"):
        proc = _cli(command, "20990101-000000-000000-deadbeef", "--format", "json")
        assert proc.returncode == 2, command
        assert proc.stderr.strip() == "error: unknown job id '20990101-000000-000000-deadbeef'"
        assert proc.stdout == ""


def test_cancel_and_wait_timeout(isolated_home):
    job_id = _json("submit-demo", "--n", "200", "--sleep", "0.05")["id"]
    timed_out = _cli("wait", job_id, "--timeout", "0.2")
    assert timed_out.returncode == 2 and timed_out.stderr.startswith(f"error: job {job_id} is still ")
    cancelled = _json("cancel", job_id, "--wait", "20")
    assert cancelled["status"] == "cancelled"
    resumed = _json("resume", job_id)
    assert resumed["status"] in ("queued", "running")
    assert _json("cancel", job_id)["status"] == "cancelled"


def test_failed_demo_exposes_one_line_error(isolated_home):
    job_id = _json("submit-demo", "--n", "3", "--sleep", "0", "--fail-at", "1")["id"]
    record = _json("wait", job_id, "--timeout", "60")
    assert record["status"] == "failed" and record["error"] == "ValueError: demo failure at step 1"
