"""Honest evaluation of a law model: leave-one-setting-out (the setting leaves every benchmark), nested selection."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from engine.errors import InputError
from engine.law.groups import benchmark_groups, valid_range
from engine.law.models import FittedLaw, check_level, get_law_model
from engine.law.ols import r2_score

MIN_EVAL_SETTINGS = 4


@dataclass(frozen=True)
class StudyMatrices:
    """A study as arrays [settings, benchmarks] of raw A, C, score (NaN = not measured)."""

    settings: list[str]
    benchmarks: list[str]
    a: np.ndarray
    c: np.ndarray
    y: np.ndarray

    @property
    def scored(self) -> np.ndarray:
        return np.isfinite(self.a) & np.isfinite(self.c) & np.isfinite(self.y)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(B,) lower and upper valid score per benchmark."""
        lo, hi = zip(*(valid_range(b, self.y[:, j]) for j, b in enumerate(self.benchmarks)), strict=True)
        return np.array(lo), np.array(hi)


def study_matrices(study: Any, benchmarks: list[str] | None = None) -> StudyMatrices:
    """A, C and scores of a study's settings (rows) on its benchmarks (columns)."""
    benchmarks = list(study.benchmarks if benchmarks is None else benchmarks)
    long = study.long
    names = study.setting_names
    def wide(col: str) -> np.ndarray:
        table = long.pivot(index="setting", columns="benchmark", values=col)
        return table.reindex(index=names, columns=benchmarks).to_numpy(dtype=float)
    return StudyMatrices(names, benchmarks, wide("A"), wide("C"), wide("score"))


def usable_benchmarks(study: Any, min_settings: int) -> tuple[list[str], dict[str, str]]:
    """Benchmarks with enough scored settings and a non-constant score; the others with the reason."""
    m = study_matrices(study)
    keep, skipped = [], {}
    for j, bench in enumerate(m.benchmarks):
        ok = m.scored[:, j]
        if ok.sum() < min_settings:
            skipped[bench] = f"only {int(ok.sum())} settings with A, C and a score (need {min_settings})"
        elif np.ptp(m.y[ok, j]) == 0:
            skipped[bench] = f"every scored setting has the same score ({m.y[ok, j][0]:g}): nothing to predict"
        else:
            keep.append(bench)
    return keep, skipped


def clip(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values clipped to each benchmark's valid range and where clipping happened (infinite bounds included)."""
    clipped = np.clip(values, lo, hi)
    return clipped, (clipped != values) & ~np.isnan(values)


@dataclass(frozen=True)
class BenchmarkEvaluation:
    """Out-of-sample quality of a law model on one benchmark (held-out predictions vs truth)."""

    benchmark: str
    n: int
    loo_r2: float
    spearman: float
    top1_hit: bool
    top3_hit: bool
    coverage: float
    interval_width: float
    in_sample_r2: float
    interpolating: bool

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "loo_r2": self.loo_r2, "spearman": self.spearman, "top1_hit": self.top1_hit,
                "top3_hit": self.top3_hit, "coverage": self.coverage, "interval_width": self.interval_width,
                "in_sample_r2": self.in_sample_r2, "interpolating": self.interpolating}


@dataclass(frozen=True)
class Evaluation:
    """``law evaluate``: per-benchmark metrics, group means of LOO R², what the model chose in each fold."""

    study: str
    model: str
    level: float
    n_settings: int
    benchmarks: dict[str, BenchmarkEvaluation]
    mean: dict[str, float]
    folds: list[dict[str, Any]]
    heldout: pd.DataFrame = field(repr=False)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def chosen(self) -> dict[str, int]:
        """How many outer folds chose each model family (``auto``; one family otherwise)."""
        return dict(Counter(f["model"] for f in self.folds))

    @property
    def coverage(self) -> float:
        """Fraction of all held-out scores (every benchmark) inside their interval."""
        return float(self.heldout["inside"].mean()) if len(self.heldout) else float("nan")

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"benchmark": b, **e.to_dict()} for b, e in self.benchmarks.items()])

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "model": self.model, "level": self.level, "n_settings": self.n_settings,
                "benchmarks": {b: e.to_dict() for b, e in self.benchmarks.items()}, "mean": self.mean,
                "coverage": self.coverage, "chosen": self.chosen, "folds": self.folds, "skipped": self.skipped,
                "heldout": self.heldout.to_dict(orient="records")}


def _rank_hits(y: np.ndarray, pred: np.ndarray) -> tuple[bool, bool]:
    best = int(np.argmax(y))
    ahead = int((pred > pred[best]).sum())
    return ahead < 1, ahead < 3


def evaluate_study(study: Any, model: str = "paper", level: float = 0.8, **params: Any) -> Evaluation:
    """Leave-one-setting-out evaluation: each scored setting is held out of every benchmark at once, the model
    (its normalisation, penalties and, for ``auto``, its family) is fitted on the others, and the held-out
    scores are predicted with a ``level`` jackknife+ interval, clipped to each benchmark's valid range."""
    level = check_level(level)
    law = get_law_model(model, **params)
    m, skipped = _usable_matrices(study, MIN_EVAL_SETTINGS, f"study '{study.name}' cannot be evaluated")
    benchmarks = m.benchmarks
    scored = m.scored
    rows = np.flatnonzero(scored.any(axis=1))
    lo, hi = m.bounds()
    pred = np.full(m.y.shape, np.nan)
    lower, upper = pred.copy(), pred.copy()
    folds = []
    memo: dict[tuple[int, ...], Any] = {}

    def select(subset: np.ndarray) -> Any:
        key = tuple(int(i) for i in subset)
        if key not in memo:
            memo[key] = law.select(m.a[subset], m.c[subset], m.y[subset])
        return memo[key]

    every = np.arange(len(m.settings))
    for k in rows:
        fitted = law.fit_rows(m.a, m.c, m.y, every[every != k], select)
        out = fitted.predict(m.a[k : k + 1], m.c[k : k + 1], level=level)
        pred[k] = clip(out.mean[0], lo, hi)[0]
        lower[k] = clip(out.lower[0], lo, hi)[0]
        upper[k] = clip(out.upper[0], lo, hi)[0]
        folds.append({"held_out": m.settings[k], **fitted.params})
    full = law.fit_rows(m.a, m.c, m.y, every, select)
    fitted_all = full.predict(m.a, m.c).mean
    results, records = {}, []
    for j, bench in enumerate(benchmarks):
        ok = scored[:, j]
        y, p = m.y[ok, j], pred[ok, j]
        inside = (lower[ok, j] <= y) & (y <= upper[ok, j])
        top1, top3 = _rank_hits(y, p)
        results[bench] = BenchmarkEvaluation(
            benchmark=bench, n=int(ok.sum()), loo_r2=r2_score(y, p), spearman=float(scipy.stats.spearmanr(y, p)[0]),
            top1_hit=top1, top3_hit=top3, coverage=float(inside.mean()),
            interval_width=float(np.mean(upper[ok, j] - lower[ok, j])), in_sample_r2=r2_score(y, fitted_all[ok, j]),
            interpolating=bool(full.interpolating[j]))
        for i in np.flatnonzero(ok):
            records.append({"setting": m.settings[i], "benchmark": bench, "score": m.y[i, j], "predicted": pred[i, j],
                            "lower": lower[i, j], "upper": upper[i, j],
                            "inside": bool(lower[i, j] <= m.y[i, j] <= upper[i, j])})
    groups = {"vision": [], "ocr": [], **benchmark_groups(study)}  # the paper's groups are always reported
    mean = {g: _mean([results[b].loo_r2 for b in members if b in results]) for g, members in groups.items()}
    mean["all"] = _mean([r.loo_r2 for r in results.values()])
    return Evaluation(study.name, model, level, len(rows), results, mean, folds, pd.DataFrame(records), skipped)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def fit_study_model(study: Any, model: str = "paper", min_settings: int = 3, **params: Any) -> tuple[FittedLaw, StudyMatrices, dict[str, str]]:
    """The law model fitted on every usable benchmark of a study (``min_settings`` scored settings each)."""
    law = get_law_model(model, **params)
    m, skipped = _usable_matrices(study, min_settings, f"no benchmark of study '{study.name}' can be fitted")
    return law.fit(m.a, m.c, m.y), m, skipped


def _usable_matrices(study: Any, min_settings: int, refusal: str) -> tuple[StudyMatrices, dict[str, str]]:
    """The matrices of the benchmarks with ``min_settings`` scored settings, and why the others were skipped."""
    benchmarks, skipped = usable_benchmarks(study, min_settings)
    if not benchmarks:
        why = "; ".join(f"{b}: {r}" for b, r in skipped.items()) or "it has no benchmark"
        raise InputError(f"{refusal} ({why})")
    return study_matrices(study, benchmarks), skipped
