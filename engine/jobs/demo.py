"""The built-in demo job: counts to n with progress, metrics and one checkpoint file per step (resumable)."""

from __future__ import annotations

import os
import time
from typing import Any

from engine.errors import InputError
from engine.jobs import state as jobstate
from engine.jobs import targets
from engine.jobs.context import JobContext

TARGET = targets.DEMO_COUNT


def _int_param(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise InputError(f"demo job: {name} must be an integer, got {value!r}")
    return int(value)


def count(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Step i sleeps ``sleep`` s and stores i² in ``work_dir/steps/i.json``; finished steps are skipped.

    Params: ``n`` (steps, 0..100000), ``sleep`` (seconds per step, 0..60), optional ``fail_at`` (raise a
    ``ValueError`` on that step, to exercise failure handling). The result says how many steps this run computed
    and how many it found already finished, so a resume can be checked for recomputation.
    """
    n = _int_param(params, "n")
    if n is None or not 0 <= n <= 100_000:
        raise InputError("demo job: n must be an integer between 0 and 100000")
    sleep = params.get("sleep", 0.0)
    if isinstance(sleep, bool) or not isinstance(sleep, (int, float)) or not 0 <= sleep <= 60:
        raise InputError("demo job: sleep must be a number of seconds between 0 and 60")
    fail_at = _int_param(params, "fail_at")
    steps_dir = ctx.work_dir / "steps"
    steps_dir.mkdir(exist_ok=True)

    computed = skipped = 0
    for i in range(n):
        checkpoint = steps_dir / f"{i:06d}.json"
        if checkpoint.exists():
            skipped += 1
        else:
            ctx.check_cancelled()
            if fail_at is not None and i == fail_at:
                raise ValueError(f"demo failure at step {i}")
            time.sleep(float(sleep))
            jobstate.write_json_atomic(checkpoint, {"step": i, "value": i * i, "pid": os.getpid()})
            computed += 1
            ctx.metric("value", i, i * i)
            ctx.metric("loss", i, 1.0 / (i + 1))
        ctx.progress(i + 1, n, f"step {i + 1}/{n}")
    total = sum(jobstate.read_json(steps_dir / f"{i:06d}.json")["value"] for i in range(n))
    ctx.log(f"counted to {n}: computed {computed}, skipped {skipped}")
    return {"n": n, "sum_of_squares": total, "computed": computed, "skipped": skipped}
