"""The job machinery end to end: detached workers, progress, cancel, kill -9 + resume, failures, inline runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import jobs
from engine.errors import InputError
from engine.jobs import demo
from engine.jobs.manager import live_status

DEMO = demo.TARGET


@pytest.fixture(autouse=True)
def _stop_workers_left_running(jobs_home):
    """A failing test must not leave workers running on the shared machine."""


def _poll(predicate, timeout: float = 60.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def _steps(job_id: str) -> dict[str, dict]:
    folder = Path(jobs.get_job(job_id).work_dir) / "steps"
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def test_submit_runs_in_background_and_records_summary(isolated_home):
    job_id = jobs.submit(DEMO, {"n": 5, "sleep": 0.01}, title="tiny demo")
    record = jobs.wait(job_id, timeout=60)
    assert record.status == "done", record.log_tail
    assert record.result == {"n": 5, "sum_of_squares": sum(i * i for i in range(5)), "computed": 5, "skipped": 0}
    assert record.progress[:2] == (5, 5)
    assert record.title == "tiny demo" and record.error is None
    assert [p["value"] for p in record.metrics if p["name"] == "value"] == [0, 1, 4, 9, 16]
    assert record.pid != os.getpid() and record.attempts == 1
    table = jobs.summaries()
    row = table[table["id"] == job_id].iloc[0]
    assert row["status"] == "done" and json.loads(row["result"])["sum_of_squares"] == 30


def test_progress_visible_then_cancel_then_resume_keeps_work(isolated_home):
    job_id = jobs.submit(DEMO, {"n": 60, "sleep": 0.05})
    mid = _poll(lambda: (r := jobs.get_job(job_id)).status == "running" and 0 < r.progress[0] < 60 and r)
    assert mid.progress[1] == 60 and mid.fraction < 1
    record = jobs.cancel(job_id, wait_s=20)
    assert record.status == "cancelled"
    kept = _steps(job_id)
    assert 0 < len(kept) < 60
    assert jobs.list_jobs(status="cancelled")[0].id == job_id
    jobs.resume(job_id)
    record = jobs.wait(job_id, timeout=60)
    assert record.status == "done" and record.attempts == 2
    assert record.result["skipped"] == len(kept) and record.result["computed"] == 60 - len(kept)


def test_kill_9_is_interrupted_and_resume_recomputes_nothing(isolated_home):
    job_id = jobs.submit(DEMO, {"n": 40, "sleep": 0.05})
    running = _poll(lambda: (r := jobs.get_job(job_id)).status == "running" and r.progress[0] >= 3 and r)
    os.killpg(running.pid, signal.SIGKILL)
    interrupted = _poll(lambda: (r := jobs.get_job(job_id)).status == "interrupted" and r)
    assert interrupted.error == f"the worker process {running.pid} is gone"
    before = _steps(job_id)
    assert 3 <= len(before) < 40
    jobs.resume(job_id)
    record = jobs.wait(job_id, timeout=60)
    assert record.status == "done"
    assert record.result["skipped"] == len(before) and record.result["computed"] == 40 - len(before)
    after = _steps(job_id)
    assert len(after) == 40
    assert all(after[name] == content for name, content in before.items())  # untouched checkpoints
    assert {after[n]["pid"] for n in after if n not in before} == {record.pid} != {running.pid}
    assert record.result["sum_of_squares"] == sum(i * i for i in range(40))


def test_cancel_before_start_and_cancel_of_an_interrupted_job(isolated_home):
    early = jobs.submit(DEMO, {"n": 50, "sleep": 0.05})
    jobs.cancel(early)
    assert jobs.wait(early, timeout=60).status == "cancelled"
    job_id = jobs.submit(DEMO, {"n": 50, "sleep": 0.05})
    running = _poll(lambda: (r := jobs.get_job(job_id)).status == "running" and r.progress[0] >= 1 and r)
    os.killpg(running.pid, signal.SIGKILL)
    _poll(lambda: jobs.get_job(job_id).status == "interrupted")
    assert jobs.cancel(job_id).status == "cancelled"
    jobs.resume(job_id)
    assert jobs.wait(job_id, timeout=60).result["sum_of_squares"] == sum(i * i for i in range(50))


def test_sigterm_ends_the_job_interrupted_and_it_resumes(isolated_home):
    job_id = jobs.submit(DEMO, {"n": 30, "sleep": 0.05})
    running = _poll(lambda: (r := jobs.get_job(job_id)).status == "running" and r.progress[0] >= 2 and r)
    os.kill(running.pid, signal.SIGTERM)
    record = jobs.wait(job_id, timeout=30)
    assert record.status == "interrupted" and record.error == "the worker was stopped by SIGTERM"
    jobs.resume(job_id)
    record = jobs.wait(job_id, timeout=60)
    assert record.status == "done" and record.result["skipped"] >= 2


def test_liveness_rules(isolated_home):
    created = time.time()
    alive = {"status": "running", "pid": os.getpid(), "heartbeat": time.time()}
    assert live_status(alive, created) == "running"
    assert live_status({**alive, "heartbeat": time.time() - 10_000}, created) == "interrupted"  # stale heartbeat
    assert live_status({**alive, "pid_start": -1}, created) == "interrupted"  # the pid was recycled
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert live_status({**alive, "pid": gone.pid}, created) == "interrupted"
    assert live_status({"status": "queued", "launcher_pid": gone.pid}, created) == "interrupted"
    assert live_status({"status": "queued"}, created) == "queued"
    assert live_status({"status": "queued"}, created - 10_000) == "interrupted"  # never picked up
    assert live_status({"status": "done"}, created) == "done"


def test_forget_deletes_a_finished_job_and_refuses_an_active_one(isolated_home):
    done = jobs.wait(jobs.submit(DEMO, {"n": 2, "sleep": 0}), timeout=60)
    active = jobs.submit(DEMO, {"n": 100, "sleep": 0.05})
    with pytest.raises(InputError, match="cancel it before deleting"):
        jobs.forget(active)
    jobs.forget(done.id)
    assert [r.id for r in jobs.list_jobs()] == [active]
    assert done.id not in set(jobs.summaries()["id"])
    assert not Path(done.work_dir).exists()
    with pytest.raises(InputError, match="unknown job id"):
        jobs.get_job(done.id)


def test_failing_job_reports_one_line_and_keeps_traceback_in_log(isolated_home):
    job_id = jobs.submit(DEMO, {"n": 5, "sleep": 0, "fail_at": 2})
    record = jobs.wait(job_id, timeout=60)
    assert record.status == "failed"
    assert record.error == "ValueError: demo failure at step 2"
    assert "Traceback" in record.log_tail
    assert len(_steps(job_id)) == 2  # finished work is kept


def test_user_error_message_is_kept_as_is(isolated_home):
    record = jobs.wait(jobs.submit(DEMO, {"n": -1}), timeout=60)
    assert record.status == "failed"
    assert record.error == "demo job: n must be an integer between 0 and 100000"


def test_run_inline_matches_background_result(isolated_home):
    seen = []
    inline = jobs.run_inline(DEMO, {"n": 7, "sleep": 0}, progress=lambda d, t, m: seen.append((d, t)))
    background = jobs.wait(jobs.submit(DEMO, {"n": 7, "sleep": 0}), timeout=60).result
    assert inline == background
    assert seen[-1] == (7, 7) and len(seen) == 7


def test_run_inline_with_work_dir_resumes(isolated_home, tmp_path):
    first = jobs.run_inline(DEMO, {"n": 4, "sleep": 0}, work_dir=tmp_path / "w")
    second = jobs.run_inline(DEMO, {"n": 6, "sleep": 0}, work_dir=tmp_path / "w")
    assert first["computed"] == 4 and (second["computed"], second["skipped"]) == (2, 4)


def test_identical_active_job_is_deduplicated(isolated_home):
    first = jobs.submit(DEMO, {"n": 30, "sleep": 0.05})
    assert jobs.submit(DEMO, {"n": 30, "sleep": 0.05}) == first
    other = jobs.submit(DEMO, {"n": 2, "sleep": 0})
    assert other != first and other > first  # ids sort by creation time
    jobs.cancel(first, wait_s=20)
    jobs.wait(other, timeout=60)


@pytest.mark.parametrize("target", ["os:system", "engine.jobs.demo", "engine.jobs.demo:nothing", "engine.nope:run"])
def test_bad_targets_are_refused(isolated_home, target):
    with pytest.raises(InputError):
        jobs.submit(target, {})
    assert jobs.list_jobs() == []


def test_bad_params_and_unknown_ids(isolated_home):
    with pytest.raises(InputError, match="JSON"):
        jobs.submit(DEMO, {"n": object()})
    for call in (jobs.get_job, jobs.cancel, jobs.resume, jobs.wait):
        with pytest.raises(InputError, match="unknown job id"):
            call("20990101-000000-000000-deadbeef")
    with pytest.raises(InputError):
        jobs.get_job("../../etc")


def test_cancel_is_enforced_when_the_worker_does_not_stop(isolated_home, monkeypatch):
    monkeypatch.setenv("LAW_EXPLORER_JOB_CANCEL_GRACE_S", "0.5")
    job_id = jobs.submit(DEMO, {"n": 3, "sleep": 30})
    # inside its first 30 s step (the demo makes work_dir/steps just before it), not merely claimed: a cancel
    # between the claim and the function's start ends the job cleanly, "cancelled before it started"
    _poll(lambda: (Path(jobs.get_job(job_id).work_dir) / "steps").is_dir())
    time.sleep(0.5)
    jobs.cancel(job_id)  # no wait: the worker's own watchdog kills it after the grace period
    record = jobs.wait(job_id, timeout=30)
    assert record.status == "cancelled" and "killed" in record.error


def test_listing_works_while_the_store_is_locked_by_another_process(isolated_home):
    from engine import store  # noqa: F401 - the holder below uses the same store module

    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\nfrom engine import store\nimport engine.jobs.summary\n"
            "with store.connect() as con:\n    con.execute('SELECT 1')\n    print('locked', flush=True)\n"
            "    time.sleep(3)\n"
        )],
        stdout=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        job_id = jobs.submit(DEMO, {"n": 2, "sleep": 0})
        statuses = set()
        while holder.poll() is None:  # the worker's summary write waits for the lock; listing never does
            statuses.update(r.status for r in jobs.list_jobs())
            time.sleep(0.05)
        assert statuses  # listing answered throughout
        record = jobs.wait(job_id, timeout=60)
        assert record.status == "done"
        assert job_id in set(jobs.summaries()["id"])
    finally:
        holder.kill()
        holder.wait()


def test_metrics_are_read_incrementally_and_skip_a_torn_line(tmp_path):
    from engine.jobs.state import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"name": "loss", "step": 0, "value": 1.0}\nnot json\n{"name": "loss", "step": 1, "val')
    assert [p["step"] for p in read_metrics(tmp_path)] == [0]
    with open(path, "a") as fh:
        fh.write('ue": 0.5}\n')
    assert [p["value"] for p in read_metrics(tmp_path)] == [1.0, 0.5]
    path.write_text('{"name": "acc", "step": 0, "value": 0.1}\n')  # rewritten: read from the start
    assert [p["name"] for p in read_metrics(tmp_path)] == ["acc"]


def test_submit_validates_a_target_without_importing_it():
    code = ("import sys\nfrom engine.jobs.runner import check_target\ncheck_target('engine.cli.common:leaf')\n"
            "print('engine.cli.common' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False", out.stderr


def test_a_done_job_starts_its_chained_job_without_any_caller(isolated_home):
    first = jobs.submit(DEMO, {"n": 3, "sleep": 0.2}, title="first")
    assert jobs.chain(first, DEMO, {"n": 4, "sleep": 0.0}, title="second")
    assert jobs.chain(first, DEMO, {"n": 4, "sleep": 0.0}, title="second")  # the same follow-up is kept once
    assert [f["title"] for f in jobs.followups(first)] == ["second"]
    assert jobs.wait(first, timeout=60).status == "done"
    # nobody calls submit for the second job: the first one's worker does
    second = _poll(lambda: jobs.list_jobs(target=DEMO, params={"n": 4, "sleep": 0.0}), timeout=60)[0]
    record = jobs.wait(second.id, timeout=60)
    assert record.status == "done" and record.result["sum_of_squares"] == 0 + 1 + 4 + 9
    assert record.title == "second"
    assert not jobs.chain(first, DEMO, {"n": 5}), "a fired chain takes no more follow-ups"
    assert "started the chained job" in jobs.get_job(first).log_tail


def test_a_failed_job_does_not_start_its_chain(isolated_home):
    first = jobs.submit(DEMO, {"n": 3, "fail_at": 1})
    jobs.chain(first, DEMO, {"n": 2})
    assert jobs.wait(first, timeout=60).status == "failed"
    time.sleep(0.5)
    assert jobs.list_jobs(params={"n": 2}) == []
    with pytest.raises(InputError):
        jobs.chain(first, "os:system", {})
