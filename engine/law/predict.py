"""Predict a new setting's scores on a study's law: mean, conformal interval, and the flags that qualify them."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.spatial

from engine.benchmarks import label
from engine.errors import InputError
from engine.law.evaluate import clip, fit_study_model
from engine.law.models import check_level

DEFAULT_LEVEL = 0.8
FLAG_TEXT = {
    "method_mismatch": "A or C measured differently from the study's settings: not comparable, an illustration only",
    "extrapolated": "outside the convex hull of the study's settings in the (A, C) plane: extrapolation",
    "clipped": "the prediction or its interval was clipped to the benchmark's valid range",
    "interpolating": "the law has no more settings than parameters here: it interpolates, the interval is unreliable",
}


FLAGS_PREFIX = "law flags: "


def flags_note(flags: list[str]) -> str:
    """The ``notes`` text that records a kept setting's law flags (read back by ``flags_from_notes``)."""
    return FLAGS_PREFIX + ", ".join(flags) if flags else ""


def flags_from_notes(notes: Any) -> list[str]:
    """Law flags recorded in a setting's ``notes`` by ``flags_note`` (empty when none)."""
    for part in str(notes or "").split(";"):
        part = part.strip()
        if part.startswith(FLAGS_PREFIX):
            return [f.strip() for f in part[len(FLAGS_PREFIX):].split(",") if f.strip()]
    return []


def inside_hull(points: np.ndarray, x: np.ndarray) -> bool:
    """Whether x lies in the convex hull of points (2-D, on min-max normalised axes; boundary counts as inside)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    p_n, x_n = (points - lo) / span, (np.asarray(x, dtype=float) - lo) / span
    if ((x_n < -1e-9) | (x_n > 1 + 1e-9)).any():
        return False
    try:
        return bool(scipy.spatial.Delaunay(p_n).find_simplex(x_n[None], tol=1e-9)[0] >= 0)
    except scipy.spatial.QhullError:  # collinear settings: the hull is a segment
        return _on_segment(p_n, x_n)


def _on_segment(points: np.ndarray, x: np.ndarray) -> bool:
    d = points - points[0]
    direction = d[np.argmax(np.linalg.norm(d, axis=1))]
    norm = float(np.linalg.norm(direction))
    if norm == 0:
        return bool(np.allclose(points[0], x))
    rel = x - points[0]
    cross = abs(direction[0] * rel[1] - direction[1] * rel[0]) / norm
    t = (d @ direction) / norm**2
    s = float(rel @ direction) / norm**2
    return cross <= 1e-9 * max(1.0, norm) and t.min() - 1e-9 <= s <= t.max() + 1e-9


def recorded_method(study: Any, column: str) -> str:
    """The A or C method a study records (study metadata, else the most common value over its settings)."""
    value = str(study.meta.get(column) or "").strip()
    if value:
        return value
    values = [str(v).strip() for v in study.settings.get(column, pd.Series(dtype=str)).tolist() if str(v).strip()]
    return max(set(values), key=values.count) if values else ""


def method_mismatch(
    study: Any, a_method: str | None, c_method: str | None, a_definition: str | None = None,
    c_protocol: str | None = None,
) -> list[str]:
    """Why a candidate's A or C is not comparable with the study's (empty: comparable or unknown).

    Compares the free-text methods (``a_method``, ``c_method``) and the registry names of the A definition and
    the correspondence protocol (``a_definition``, ``c_protocol``) with what the study records, where both exist.
    """
    out = []
    for what, given, column in (("A", a_method, "a_method"), ("C", c_method, "c_method"),
                                ("A definition", a_definition, "a_definition"), ("C protocol", c_protocol, "c_protocol")):
        recorded = recorded_method(study, column)
        if given and recorded and str(given).strip().lower() != recorded.lower():
            out.append(f"{what} is '{given}', the study's is '{recorded}'")
    return out


@dataclass(frozen=True)
class Placement:
    """Predicted scores of one new setting on every benchmark of a study, with interval and flags."""

    study: str
    model: str
    level: float
    A: float | dict[str, float]
    C: float
    table: pd.DataFrame
    mismatch: list[str] = field(default_factory=list)
    chosen: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def flags(self) -> list[str]:
        """Flags raised on any benchmark (method_mismatch, extrapolated, clipped, interpolating)."""
        out = ["method_mismatch"] if self.mismatch else []
        return out + [f for f in ("extrapolated", "clipped", "interpolating") if self.table[f].any()]

    @property
    def comparable(self) -> bool:
        """Whether the prediction can be read as a result (same methods, inside the hull, a real fit)."""
        return not self.mismatch and not self.table["extrapolated"].any() and not self.table["interpolating"].any()

    def to_dict(self) -> dict[str, Any]:
        benchmarks = {
            row.benchmark: {"predicted": row.predicted, "lower": row.lower, "upper": row.upper, "clipped": bool(row.clipped),
                            "extrapolated": bool(row.extrapolated), "interpolating": bool(row.interpolating),
                            "valid_range": valid_range_json(row.range_low, row.range_high)}
            for row in self.table.itertuples()
        }
        return {"study": self.study, "model": self.model, "level": self.level, "A": self.A, "C": self.C,
                "benchmarks": benchmarks, "flags": self.flags, "mismatch": self.mismatch, "comparable": self.comparable,
                "chosen": self.chosen, "skipped": self.skipped}


def valid_range_json(low: float, high: float) -> list[float | None]:
    """A valid score range for JSON: ``[low, high]``, ``null`` for an unbounded side (unknown scale: not clipped)."""
    return [float(v) if math.isfinite(v) else None for v in (low, high)]


def range_text(low: float, high: float) -> str:
    """A valid score range as a reader sees it: ``0–100``, or why nothing was clipped."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "none: scale unknown, not clipped"
    return f"{low:g}–{high:g}"


def _finite(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    return number


_FITS: OrderedDict[tuple[str, str], tuple[Any, Any, dict[str, str]]] = OrderedDict()
_FITS_LOCK = threading.Lock()


def fitted_study_model(study: Any, model: str) -> tuple[Any, Any, dict[str, str]]:
    """``fit_study_model`` memoised on the study's content (a page places many A, C on one fit)."""
    key = (study.content_hash(), model)
    with _FITS_LOCK:
        if key in _FITS:
            _FITS.move_to_end(key)
            return _FITS[key]
    result = fit_study_model(study, model)
    with _FITS_LOCK:
        _FITS[key] = result
        while len(_FITS) > 16:
            _FITS.popitem(last=False)
    return result


def _a_per_benchmark(A: float | Mapping[str, float], benchmarks: list[str], study: Any) -> np.ndarray:
    if not isinstance(A, Mapping):
        return np.full(len(benchmarks), _finite(A, "A"))
    unknown = sorted(set(A) - set(study.benchmarks))
    if unknown:
        raise InputError(f"A given for benchmark '{unknown[0]}' that study '{study.name}' does not have")
    missing = [b for b in benchmarks if b not in A]
    if missing:
        raise InputError(f"A is per benchmark but has no value for {', '.join(missing)}")
    return np.array([_finite(A[b], f"A of {b}") for b in benchmarks])


def predict_setting(
    study: Any, A: float | Mapping[str, float], C: float, model: str = "paper", level: float = DEFAULT_LEVEL,
    a_method: str | None = None, c_method: str | None = None, a_definition: str | None = None,
    c_protocol: str | None = None,
) -> Placement:
    """Where a new setting with these A and C falls on each benchmark's law (``model``, ``level`` interval).

    ``A`` is one value, or one per benchmark (a study whose A differs per benchmark, as the paper's v1).
    Predictions and interval bounds are clipped to each benchmark's valid range; a setting outside the study's
    A-C hull is flagged as extrapolated; A/C methods different from the study's are flagged as a mismatch.
    """
    c_value = _finite(C, "C")
    level = check_level(level)
    if not isinstance(A, Mapping):
        _finite(A, "A")
    fitted, m, skipped = fitted_study_model(study, model)
    B = len(m.benchmarks)
    a_values = _a_per_benchmark(A, m.benchmarks, study)
    placed = _place(fitted, m, a_values[None], np.full((1, B), c_value), level)
    if not np.isfinite(placed["predicted"]).all():
        raise InputError(f"A = {A} and C = {c_value:g} are so far outside the settings of study '{study.name}' that the "
                         "law cannot be evaluated there (overflow)")
    rows = [{"benchmark": bench, "label": label(bench), **{k: v[0, j].item() for k, v in placed.items()},
             "n": int(m.scored[:, j].sum())} for j, bench in enumerate(m.benchmarks)]
    table = pd.DataFrame(rows)[["benchmark", "label", "predicted", "lower", "upper", "n", "clipped", "extrapolated",
                                "interpolating", "range_low", "range_high"]]
    a_out = float(a_values[0]) if not isinstance(A, Mapping) else {b: float(v) for b, v in zip(m.benchmarks, a_values, strict=True)}
    return Placement(study.name, model, level, a_out, c_value, table,
                     method_mismatch(study, a_method, c_method, a_definition, c_protocol), fitted.params, skipped)


def _place(fitted: Any, m: Any, a_values: np.ndarray, c_values: np.ndarray, level: float) -> dict[str, np.ndarray]:
    """Mean and interval of the fitted law at (k, B) raw A, C, clipped to each benchmark's valid range (the one
    place predictions are clipped for users), with the flags: clipped, outside the benchmark's A-C hull,
    interpolating fit; ``range_low`` / ``range_high`` are the valid range used (infinite: the scale is unknown, so
    nothing was clipped)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = fitted.predict(a_values, c_values, level=level)
    lo, hi = m.bounds()
    mean, c1 = clip(out.mean, lo, hi)
    lower, c2 = clip(out.lower, lo, hi)
    upper, c3 = clip(out.upper, lo, hi)
    k, B = mean.shape
    outside = np.zeros((k, B), dtype=bool)
    for j in range(B):
        ok = m.scored[:, j]
        points = np.column_stack([m.a[ok, j], m.c[ok, j]])
        outside[:, j] = [not inside_hull(points, np.array([a_values[i, j], c_values[i, j]])) for i in range(k)]
    return {"predicted": mean, "lower": lower, "upper": upper, "clipped": c1 | c2 | c3, "extrapolated": outside,
            "interpolating": np.broadcast_to(np.asarray(fitted.interpolating, dtype=bool), (k, B)),
            "range_low": np.broadcast_to(lo, (k, B)), "range_high": np.broadcast_to(hi, (k, B))}


@dataclass(frozen=True)
class UnscoredPredictions:
    """Out-of-sample predictions for a study's settings that have A and C but no score on a benchmark."""

    study: str
    model: str
    level: float
    table: pd.DataFrame  # setting, benchmark, label, A, C, predicted, lower, upper, clipped, extrapolated, ...
    skipped: dict[str, str] = field(default_factory=dict)


def predict_unscored(study: Any, model: str = "paper", level: float = DEFAULT_LEVEL,
                     benchmark: str | None = None) -> UnscoredPredictions:
    """Every (setting, benchmark) with A and C but no score, predicted by the ``model`` law fitted on the scored
    settings, with its ``level`` jackknife+ interval: the same fit, clipping and flags as ``predict_setting``
    (these settings never entered the fit, so the prediction is out of sample). ``benchmark`` limits the table
    to one benchmark."""
    level = check_level(level)
    fitted, m, skipped = fitted_study_model(study, model)
    todo = np.isfinite(m.a) & np.isfinite(m.c) & ~np.isfinite(m.y)
    columns = ["setting", "benchmark", "label", "A", "C", "predicted", "lower", "upper", "level", "model", "clipped",
               "extrapolated", "interpolating", "range_low", "range_high"]
    rows_of = np.flatnonzero(todo.any(axis=1))
    if benchmark is not None:
        skipped = {b: r for b, r in skipped.items() if b == benchmark}
    records = []
    if len(rows_of):
        a_values = np.where(todo[rows_of], m.a[rows_of], np.nanmean(m.a, axis=0))  # filler where not predicted
        c_values = np.where(todo[rows_of], m.c[rows_of], np.nanmean(m.c, axis=0))
        placed = _place(fitted, m, a_values, c_values, level)
        for r, i in enumerate(rows_of):
            for j, bench in enumerate(m.benchmarks):
                if todo[i, j] and (benchmark is None or bench == benchmark):
                    records.append({"setting": m.settings[i], "benchmark": bench, "label": label(bench),
                                    "A": float(m.a[i, j]), "C": float(m.c[i, j]), "level": level, "model": model,
                                    **{k: v[r, j].item() for k, v in placed.items()}})
    return UnscoredPredictions(study.name, model, level, pd.DataFrame(records, columns=columns), skipped)
