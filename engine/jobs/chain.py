"""Follow-up jobs: a job that ends ``done`` submits the jobs chained to it, in its own worker (server-side chains).

A chain lives in the job's folder (``then.json``), so it runs whether or not anyone keeps a page open: the
score-an-encoder pipeline chains A-scoring to projector training this way. Writes hold the job's ``.lock``;
once the worker has fired the chain (``followups_fired`` in ``state.json``) nothing more can be added, and
``chain`` says so, so the caller submits the follow-up itself.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from engine.jobs import state as jobstate

FOLLOWUPS_FILE = "then.json"
FIRED_KEY = "followups_fired"


def _followups(folder: Path) -> list[dict[str, Any]]:
    data = jobstate.read_json(folder / FOLLOWUPS_FILE, [])
    return data if isinstance(data, list) else []


def chain(job_id: str, target: str, params: dict[str, Any], title: str | None = None) -> bool:
    """Submit ``target(params)`` when job ``job_id`` ends done; False if that job already fired its chain.

    Adding the same (target, params) twice keeps one entry. Failed, cancelled or interrupted jobs keep their
    chain: a ``resume`` that ends done fires it.
    """
    from engine.jobs.runner import check_params, check_target

    check_target(target)
    params = check_params(params)
    folder = jobstate.job_dir(job_id)
    with jobstate.locked(folder / ".lock"):
        if jobstate.read_state(folder).get(FIRED_KEY):
            return False
        entries = _followups(folder)
        if not any(e.get("target") == target and e.get("params") == params for e in entries):
            entries.append({"target": target, "params": params, "title": title or target})
            jobstate.write_json_atomic(folder / FOLLOWUPS_FILE, entries)
    return True


def followups(job_id: str) -> list[dict[str, Any]]:
    """The jobs chained to ``job_id`` (target, params, title), in the order they were added."""
    return _followups(jobstate.job_dir(job_id))


def fire(folder: Path) -> list[str]:
    """Called by the worker once its job is done: submit every chained job (once); returns their ids.

    A follow-up that cannot be submitted is logged in this job's log and skipped; it never fails this job.
    """
    from engine.jobs.manager import submit
    from engine.jobs.runner import one_line_error

    with jobstate.locked(folder / ".lock"):
        st = jobstate.read_state(folder)
        if st.get(FIRED_KEY):
            return []
        entries = _followups(folder)
        st[FIRED_KEY] = True
        jobstate.write_json_atomic(folder / "state.json", st)
    ids = []
    for entry in entries:
        try:
            ids.append(submit(entry["target"], entry["params"], title=entry.get("title")))
        except Exception as exc:
            with contextlib.suppress(OSError):
                jobstate.append_log(folder, f"could not start the chained job {entry.get('title')}: {one_line_error(exc)}")
            continue
        jobstate.append_log(folder, f"started the chained job {ids[-1]} ({entry.get('title')})")
    return ids
