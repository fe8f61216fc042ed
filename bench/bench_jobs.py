"""Job machinery timings: submit-to-running and submit-to-done latency, progress-call cost, listing many jobs."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["LAW_EXPLORER_HOME"] = tempfile.mkdtemp(prefix="law-explorer-bench-jobs-")

from engine import jobs
from engine.jobs import demo
from engine.jobs import state as jobstate
from engine.jobs.context import JobContext


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def submit_latency(repeats: int = 3) -> tuple[float, float]:
    to_running, to_done = [], []
    for i in range(repeats):
        start = time.perf_counter()
        job_id = jobs.submit(demo.TARGET, {"n": 1, "sleep": 0.3, "bench": i})
        while jobs.get_job(job_id, log_lines=0).status == "queued":
            time.sleep(0.005)
        to_running.append(time.perf_counter() - start)
        jobs.wait(job_id, timeout=120, poll_s=0.01)
        to_done.append(time.perf_counter() - start - 0.3)
    return _median(to_running), _median(to_done)


def progress_cost(calls: int = 20_000) -> tuple[float, float]:
    folder = jobstate.jobs_root() / "bench-progress"
    folder.mkdir(exist_ok=True)
    ctx = JobContext("bench", folder / "work", folder=folder)
    start = time.perf_counter()
    for i in range(calls):
        ctx.progress(i, calls + 1, "step")
    in_job = (time.perf_counter() - start) / calls
    inline = JobContext("bench", folder / "work")
    start = time.perf_counter()
    for i in range(calls):
        inline.progress(i, calls + 1, "step")
    return in_job, (time.perf_counter() - start) / calls


def listing(n_jobs: int = 200) -> tuple[float, float]:
    for i in range(n_jobs):
        job_id = jobstate.new_job_id(demo.TARGET, {"i": i})
        jobstate.create_job_folder(job_id, {"target": demo.TARGET, "params": {"i": i}, "title": "x", "created": 0})
        jobstate.update_state(jobstate.jobs_root() / job_id, status="done", progress=[1, 1, ""])
    start = time.perf_counter()
    records = jobs.list_jobs()
    plain = time.perf_counter() - start
    start = time.perf_counter()
    jobs.list_jobs(details=True)
    detailed = time.perf_counter() - start
    assert len(records) >= n_jobs
    return plain, detailed


def main() -> None:
    running, done = submit_latency()
    per_call, per_call_inline = progress_cost()
    plain, detailed = listing()
    print("jobs benchmark (median of 3 submits; 20k progress calls; 200 jobs listed)")
    print(f"  submit -> running           {running * 1e3:8.0f} ms  (worker process start + import)")
    print(f"  submit -> done (minus work) {done * 1e3:8.0f} ms")
    print(f"  ctx.progress in a worker    {per_call * 1e6:8.1f} us/call (file writes throttled to 5/s)")
    print(f"  ctx.progress inline         {per_call_inline * 1e6:8.1f} us/call")
    print(f"  list_jobs, 200 jobs         {plain * 1e3:8.0f} ms  ({detailed * 1e3:.0f} ms with logs and metrics)")


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(os.environ["LAW_EXPLORER_HOME"], ignore_errors=True)
