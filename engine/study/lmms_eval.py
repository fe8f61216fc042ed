"""Fill a setting's benchmark scores from an lmms-eval ``results.json`` (primary metric per task)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from engine.benchmarks import BENCHMARKS, task_to_benchmark
from engine.errors import InputError
from engine.study.io import read_text
from engine.study.model import Study


def _load(results: bytes | str | Path | dict) -> tuple[dict[str, Any], str]:
    if isinstance(results, dict):
        return results, "results"
    text, label = read_text(results)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{label}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(payload, dict):
        raise InputError(f"{label}: expected a JSON object with a \"results\" key")
    return payload, label


def _metric_value(task_result: dict[str, Any], metric: str) -> float | None:
    """``"<metric>,<filter>"`` keys (lmms-eval >= 0.2) or a bare ``"<metric>"``; filter ``none`` preferred."""
    candidates = []
    for key, value in task_result.items():
        base, _, filt = str(key).partition(",")
        if base == metric and not isinstance(value, bool) and isinstance(value, int | float):
            candidates.append((filt not in ("", "none"), key, float(value)))
    if not candidates:
        return None
    return sorted(candidates)[0][2]


def scores_from_lmms_eval(results: bytes | str | Path | dict) -> dict[str, float]:
    """Benchmark -> score (in the paper's units) for every known task found in an lmms-eval results file."""
    payload, label = _load(results)
    block = payload.get("results")
    if not isinstance(block, dict) or not block:
        raise InputError(f"{label}: no \"results\" object (expected lmms-eval results.json)")
    scores: dict[str, float] = {}
    for task, task_result in block.items():
        bench = task_to_benchmark(str(task))
        if bench is None or not isinstance(task_result, dict):
            continue
        spec = BENCHMARKS[bench]
        value = _metric_value(task_result, spec.metric)
        if value is None:
            raise InputError(f"{label}: task '{task}' has no '{spec.metric}' metric (keys: {', '.join(map(str, task_result))})")
        if not math.isfinite(value):
            raise InputError(f"{label}: task '{task}' metric '{spec.metric}' is not finite")
        if spec.percent and 0.0 <= value <= 1.0:
            value *= 100.0
        if bench in scores and task != bench:
            continue
        scores[bench] = value
    if not scores:
        known = ", ".join(sorted({n for b in BENCHMARKS.values() for n in (b.name, *b.aliases)}))
        raise InputError(f"{label}: none of the tasks {sorted(block)[:6]} is a known benchmark ({known})")
    return scores


def apply_lmms_eval(study: Study, setting: str, results: bytes | str | Path | dict) -> Study:
    """A copy of ``study`` with ``setting``'s scores filled from lmms-eval results (new setting if absent)."""
    scores = scores_from_lmms_eval(results)
    return study.with_setting(setting, scores=scores)
