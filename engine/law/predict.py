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
                            "extrapolated": bool(row.extrapolated), "interpolating": bool(row.interpolating)}
            for row in self.table.itertuples()
        }
        return {"study": self.study, "model": self.model, "level": self.level, "A": self.A, "C": self.C,
                "benchmarks": benchmarks, "flags": self.flags, "mismatch": self.mismatch, "comparable": self.comparable,
                "chosen": self.chosen, "skipped": self.skipped}


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
    with np.errstate(over="ignore", invalid="ignore"):
        out = fitted.predict(a_values[None], np.full((1, B), c_value), level=level)
    if not np.isfinite(out.mean).all():
        raise InputError(f"A = {A} and C = {c_value:g} are so far outside the settings of study '{study.name}' that the "
                         "law cannot be evaluated there (overflow)")
    lo, hi = m.bounds()
    mean, c1 = clip(out.mean[0], lo, hi)
    lower, c2 = clip(out.lower[0], lo, hi)
    upper, c3 = clip(out.upper[0], lo, hi)
    rows = []
    for j, bench in enumerate(m.benchmarks):
        ok = m.scored[:, j]
        points = np.column_stack([m.a[ok, j], m.c[ok, j]])
        rows.append({"benchmark": bench, "label": label(bench), "predicted": float(mean[j]), "lower": float(lower[j]),
                     "upper": float(upper[j]), "n": int(ok.sum()),
                     "clipped": bool(c1[j] or c2[j] or c3[j]),
                     "extrapolated": not inside_hull(points, np.array([a_values[j], c_value])),
                     "interpolating": bool(fitted.interpolating[j])})
    a_out = float(a_values[0]) if not isinstance(A, Mapping) else {b: float(v) for b, v in zip(m.benchmarks, a_values, strict=True)}
    return Placement(study.name, model, level, a_out, c_value, pd.DataFrame(rows),
                     method_mismatch(study, a_method, c_method, a_definition, c_protocol), fitted.params, skipped)
