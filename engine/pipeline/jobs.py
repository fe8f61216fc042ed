"""Launching a plan's missing jobs (in dependency order) and reporting each step's live state."""

from __future__ import annotations

from typing import Any

from engine.pipeline.planning import SATISFIED, Plan, Step, StepStatus, refresh

JOB_END_OK = "done"


def _latest_job(step: Step) -> Any:
    from engine.jobs import list_jobs
    from engine.jobs.runner import check_params

    if step.target is None or step.params is None:
        return None
    found = list_jobs(target=step.target, params=check_params(step.params))
    return found[0] if found else None


def _job_value(step: Step, result: dict[str, Any] | None) -> float | None:
    if not result:
        return None
    if step.key == "c":
        value = result.get("pck", {}).get("per_image", {}).get("0.1")
        return None if value is None else 100.0 * float(value)
    if step.key == "a":
        return None if result.get("A") is None else float(result["A"])
    return None


def status(p: Plan) -> list[StepStatus]:
    """Each step now: stored (value known), its latest job's status and progress, waiting, missing or unavailable."""
    now = refresh(p)
    states: dict[str, StepStatus] = {}
    for step in now.steps:
        if step.state in ("reuse", "not needed", "unavailable"):
            state = {"reuse": "stored"}.get(step.state, step.state)
            states[step.key] = StepStatus(step.key, step.title, state, value=step.value, note=step.note)
            continue
        job = _latest_job(step)
        if job is not None:
            states[step.key] = StepStatus(step.key, step.title, job.status, job.id, job.progress,
                                          _job_value(step, job.result), job.error, step.note)
            continue
        waiting = [n for n in step.needs if states.get(n) and states[n].state not in ("stored", "not needed", "done")]
        state = "waiting" if waiting else "missing"
        note = f"starts when {', '.join(waiting)} is done" if waiting else step.note
        states[step.key] = StepStatus(step.key, step.title, state, note=note)
    return list(states.values())


def launch(p: Plan, resume_failed: bool = True) -> list[str]:
    """Submit the missing jobs whose inputs are ready (idempotent); returns the ids of this plan's active jobs.

    A step that waits for another (A-scoring after projector training) is chained to that step's active job
    (``engine.jobs.chain``): the projector's worker submits it when it ends done, server-side, so leaving the
    page after a launch does not stop the chain. A later ``launch`` submits it directly if the chain has already
    fired. Interrupted, failed or cancelled jobs are resumed (their finished work is kept) unless
    ``resume_failed`` is False (what a polling caller passes, so that a failing job is not retried in a loop).
    """
    from engine import jobs
    from engine.encoders.registry import display_name, get_spec

    now = refresh(p)
    shown = display_name(get_spec(now.encoder))
    satisfied = {s.key for s in now.steps if s.state in SATISFIED}
    active: dict[str, str] = {}  # step key -> id of its queued or running job
    ids: list[str] = []
    for step in now.steps:
        if step.state != "run":
            continue
        job = _latest_job(step)
        if job is not None and job.status == JOB_END_OK:
            satisfied.add(step.key)
            continue
        unmet = [need for need in step.needs if need not in satisfied]
        if unmet:
            if len(unmet) == 1 and unmet[0] in active and (job is None or job.status not in jobs.ACTIVE):
                title = f"{step.title} of {shown}"
                if not jobs.chain(active[unmet[0]], step.target, step.params, title=title):
                    # the chain fired between our look and our write: the need is done, submit directly
                    ids.append(jobs.submit(step.target, step.params, title=title))
            continue
        if job is not None and job.status in jobs.ACTIVE:
            ids.append(job.id)
        elif job is not None and resume_failed:
            ids.append(jobs.resume(job.id).id)
        elif job is not None:
            continue
        else:
            ids.append(jobs.submit(step.target, step.params, title=f"{step.title} of {shown}"))
        active[step.key] = ids[-1]
    return ids


def complete(p: Plan) -> bool:
    """Whether both A and C are known (stored or from finished jobs)."""
    values = {s.key: s.value for s in status(p)}
    return values.get("a") is not None and values.get("c") is not None


def scores(p: Plan) -> tuple[float | None, float | None]:
    """(A, C) as far as known now."""
    values = {s.key: s.value for s in status(p)}
    return values.get("a"), values.get("c")


def measurement_record(p: Plan) -> dict[str, str]:
    """What an export of this plan's placement records: the encoder, its weights hash, how A and C were measured."""
    from engine.correspondence.results import list_results

    split = p.args.get("split", "test")
    limit = p.args.get("limit")
    weights = next((str(row["weights_hash"]) for row in list_results(p.encoder) if row.get("weights_hash")), "")
    a_how = "demo projector + demo LLM" if p.demo else f"LLM {p.args.get('llm') or 'not set'}"
    return {
        "encoder": p.encoder,
        "encoder_weights_hash": weights or "not recorded yet (no stored C result of this encoder)",
        "candidate_a_method": f"{p.a_definition} ({a_how})",
        "candidate_c_protocol": f"{p.c_protocol} on {p.dataset} ({split}{'' if limit is None else f', {limit} pairs'})",
    }
