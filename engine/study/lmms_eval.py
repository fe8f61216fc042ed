"""Fill a setting's benchmark scores from an lmms-eval ``results.json`` (known metric table, else the single metric)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from engine.benchmarks import BENCHMARKS, check_benchmark_name, task_to_benchmark
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


def _numeric_metrics(task_result: dict[str, Any]) -> list[str]:
    """Metric names with a number (``"<metric>,<filter>"`` or bare), standard errors and text left out."""
    names = []
    for key, value in task_result.items():
        base = str(key).partition(",")[0]
        if base == "alias" or base.endswith("_stderr") or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        names.append(base)
    return list(dict.fromkeys(names))


def scores_from_lmms_eval(results: bytes | str | Path | dict) -> dict[str, float]:
    """Benchmark -> score for every task of an lmms-eval results file.

    A known task (registry name or alias) gives its registered metric, in the paper's units (fractions of
    %-benchmarks x 100). Any other task gives its single numeric metric as reported; a task with several
    metrics is an error naming them. Entries without any number (group headers) are skipped.
    """
    payload, label = _load(results)
    block = payload.get("results")
    if not isinstance(block, dict) or not block:
        raise InputError(f"{label}: no \"results\" object (expected lmms-eval results.json)")
    scores: dict[str, float] = {}
    for task, task_result in block.items():
        if not isinstance(task_result, dict):
            continue
        bench = task_to_benchmark(str(task))
        if bench is not None:
            spec = BENCHMARKS[bench]
            metric, value = spec.metric, _metric_value(task_result, spec.metric)
            if value is None:
                raise InputError(f"{label}: task '{task}' has no '{spec.metric}' metric (keys: {', '.join(map(str, task_result))})")
        else:
            found = _numeric_metrics(task_result)
            if not found:
                continue
            if len(found) > 1:
                raise InputError(f"{label}: task '{str(task)[:60]}' is not a known benchmark and reports several metrics "
                                 f"({', '.join(found[:8])}); keep one in the file or use a tidy CSV")
            try:
                bench = check_benchmark_name(str(task))
            except InputError as exc:
                raise InputError(f"{label}: task {exc}") from None
            spec, metric = None, found[0]
            value = _metric_value(task_result, metric)
        if value is None or not math.isfinite(value):
            raise InputError(f"{label}: task '{str(task)[:60]}' metric '{metric}' is not finite")
        if spec is not None and spec.percent and 0.0 <= value <= 1.0:
            value *= 100.0
        if bench in scores and task != bench:
            continue
        scores[bench] = value
    if not scores:
        raise InputError(f"{label}: no task with a numeric metric among {', '.join(map(str, list(block)[:6]))}")
    return scores


def apply_lmms_eval(study: Study, setting: str, results: bytes | str | Path | dict) -> Study:
    """A copy of ``study`` with ``setting``'s scores filled from lmms-eval results (new setting if absent)."""
    scores = scores_from_lmms_eval(results)
    return study.with_setting(setting, scores=scores)
