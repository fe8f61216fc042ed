"""Evaluations computed off the caller's thread and memoised per (study content, model, level) in this process."""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from engine.law.evaluate import Evaluation, evaluate_study
from engine.law.predict import fitted_study_model

MAX_ENTRIES = 32
_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="law-evaluate")
_FUTURES: OrderedDict[tuple[str, str, float], Future] = OrderedDict()
_LOCK = threading.Lock()
_FIT_FUTURES: OrderedDict[tuple[str, str], Future] = OrderedDict()
_FIT_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="law-fit")  # not queued behind evaluations


# The app evaluates in the background only what finishes in seconds: a leave-one-setting-out evaluation refits
# the model about n²/2 times and the multi-task hat matrices grow as (n·B)²; larger studies go to the CLI.
MAX_APP_SETTINGS = {"paper": 200, "linear": 200, "ridge": 120, "multitask": 40, "auto": 40}
MAX_APP_BENCHMARKS = 30


def too_large_for_app(study: Any, model: str) -> str | None:
    """Why the app will not evaluate this study with this model in the background (None: it will)."""
    n, b = len(study.setting_names), len(study.benchmarks)
    limit = MAX_APP_SETTINGS.get(model, 40)
    if n > limit or (model in ("multitask", "auto") and b > MAX_APP_BENCHMARKS):
        return (f"{n} settings x {b} benchmarks is more than the app evaluates with the '{model}' law "
                f"(up to {limit} settings{f', {MAX_APP_BENCHMARKS} benchmarks' if model in ('multitask', 'auto') else ''}); "
                f"run `python -m engine law evaluate --study {study.name} --model {model}`")
    return None


def evaluation_future(study: Any, model: str, level: float) -> Future:
    """The (possibly running) ``evaluate_study`` of this study content, model and level; started on first call.

    A failed evaluation is forgotten once its error has been read, so a later call retries.
    """
    key = (study.content_hash(), str(model), round(float(level), 6))
    with _LOCK:
        future = _FUTURES.get(key)
        if future is not None and future.done() and future.exception() is not None:
            _FUTURES.pop(key)
            return future
        if future is None:
            future = _EXECUTOR.submit(evaluate_study, study, model, level)
            _FUTURES[key] = future
            while len(_FUTURES) > MAX_ENTRIES:
                _FUTURES.popitem(last=False)
        else:
            _FUTURES.move_to_end(key)
        return future


def evaluation_if_ready(study: Any, model: str, level: float) -> Evaluation | None:
    """The evaluation when finished (its error raised), else None while it runs in the background."""
    future = evaluation_future(study, model, level)
    return future.result() if future.done() else None


def fit_ready(study: Any, model: str, wait_s: float = 0.5) -> bool:
    """Whether the study's ``model`` fit (with its leave-one-out refits) is ready for ``predict_setting``; starts it
    in the background when not and waits at most ``wait_s`` (fast models are ready at once). Errors are raised."""
    key = (study.content_hash(), str(model))
    with _LOCK:
        future = _FIT_FUTURES.get(key)
        if future is None or (future.done() and future.exception() is not None):
            future = _FIT_EXECUTOR.submit(fitted_study_model, study, model)
            _FIT_FUTURES[key] = future
            while len(_FIT_FUTURES) > MAX_ENTRIES:
                _FIT_FUTURES.popitem(last=False)
    try:
        future.result(timeout=wait_s)
    except TimeoutError:
        return False
    return True
