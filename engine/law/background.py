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
