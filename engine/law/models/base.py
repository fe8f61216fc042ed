"""The law-model interface: fit on training settings, predict a mean and a jackknife+ interval for new (A, C)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from engine.errors import InputError
from engine.law.fit import features, minmax


@dataclass(frozen=True)
class LawPrediction:
    """Predicted scores (raw units) for m new settings on B benchmarks; lower/upper None without a level."""

    mean: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    level: float | None = None


@dataclass(frozen=True)
class Prepared:
    """Training data normalised on its own rows: per-benchmark min-max of A, C and score (NaN rows masked)."""

    a: np.ndarray  # (n, B) normalised A, 0 where masked
    c: np.ndarray
    y: np.ndarray
    mask: np.ndarray  # (n, B) bool: A, C and score finite
    bounds: np.ndarray  # (6, B): a_lo, a_hi, c_lo, c_hi, y_lo, y_hi

    @property
    def counts(self) -> np.ndarray:
        return self.mask.sum(axis=0)

    def normalise_ac(self, a: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = self.bounds
        return minmax(a, b[0], b[1]), minmax(c, b[2], b[3])

    def denormalise(self, y_n: np.ndarray) -> np.ndarray:
        return self.bounds[4] + (self.bounds[5] - self.bounds[4]) * y_n


def prepare(a: np.ndarray, c: np.ndarray, y: np.ndarray) -> Prepared:
    """Mask rows without finite A, C, score per benchmark and min-max normalise on the kept rows."""
    mask = np.isfinite(a) & np.isfinite(c) & np.isfinite(y)
    bounds = []
    for x in (a, c, y):
        lo = np.where(mask, x, np.inf).min(axis=0)
        hi = np.where(mask, x, -np.inf).max(axis=0)
        empty = ~mask.any(axis=0)
        bounds += [np.where(empty, 0.0, lo), np.where(empty, 1.0, hi)]
    b = np.stack(bounds)
    a_n = np.where(mask, minmax(np.where(mask, a, 0.0), b[0], b[1]), 0.0)
    c_n = np.where(mask, minmax(np.where(mask, c, 0.0), b[2], b[3]), 0.0)
    y_n = np.where(mask, minmax(np.where(mask, y, 0.0), b[4], b[5]), 0.0)
    return Prepared(a_n, c_n, y_n, mask, b)


def design(a_n: np.ndarray, c_n: np.ndarray, feature_set: str) -> np.ndarray:
    """(B, n, p) features per benchmark from (n, B) normalised A, C."""
    return np.moveaxis(features(a_n, c_n, feature_set), 1, 0)


@dataclass(frozen=True)
class LinearPredictor:
    """Per-benchmark linear predictor on normalised features: y_n = intercept_b + x_b @ coef_b."""

    prep_bounds: np.ndarray
    feature_set: str
    coef: np.ndarray  # (B, p)
    intercept: np.ndarray  # (B,)

    def predict(self, a: np.ndarray, c: np.ndarray) -> np.ndarray:
        b = self.prep_bounds
        a_n, c_n = minmax(a, b[0], b[1]), minmax(c, b[2], b[3])
        X = features(a_n, c_n, self.feature_set)  # (m, B, p)
        y_n = self.intercept + np.einsum("mbp,bp->mb", X, self.coef)
        return b[4] + (b[5] - b[4]) * y_n


@dataclass(frozen=True)
class Candidate:
    """One model with its hyper-parameters chosen by inner cross-validation on the training settings."""

    name: str
    params: dict[str, Any]
    inner_sse: float  # sum over benchmarks of squared leave-one-setting-out errors (normalised score units)
    predictor: LinearPredictor
    n_params: int  # coefficients per benchmark, intercept included


class Family(Protocol):
    """One model family: choose hyper-parameters by inner leave-one-setting-out CV and fit."""

    name: str

    def select(self, prep: Prepared) -> Candidate: ...

    def nested_sse(self, prep: Prepared) -> float: ...

    def nested_residuals(self, prep: Prepared) -> np.ndarray: ...


def _check(a: Any, c: Any, y: Any | None = None) -> tuple[np.ndarray, ...]:
    arrays = [np.atleast_2d(np.asarray(v, dtype=float)) for v in (a, c) + (() if y is None else (y,))]
    shape = arrays[0].shape
    if any(x.shape != shape for x in arrays) or len(shape) != 2:
        raise InputError(f"A, C and scores must be arrays of the same shape [settings, benchmarks], got {[x.shape for x in arrays]}")
    return tuple(arrays)


def jackknife_plus(loo_at_x: np.ndarray, residuals: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Jackknife+ interval (Barber et al. 2021) from the leave-one-out models' predictions at new points.

    ``loo_at_x`` (n, m, B): model fitted without training setting i, evaluated at the new points;
    ``residuals`` (n, B): |y_i - that model at x_i|, NaN where setting i has no score on the benchmark
    (it then takes no part). Lower = the floor(alpha (n+1))-th smallest of mu_-i(x) - R_i, upper = the
    ceil((1-alpha)(n+1))-th smallest of mu_-i(x) + R_i, alpha = 1 - level; +-inf when n is too small.
    Coverage >= 1 - 2 alpha for any distribution of exchangeable settings (about 1 - alpha in practice).
    """
    alpha = 1.0 - level
    _, m, B = loo_at_x.shape
    lower = np.full((m, B), -np.inf)
    upper = np.full((m, B), np.inf)
    for b in range(B):
        ok = np.isfinite(residuals[:, b])
        k = int(ok.sum())
        if k == 0:
            continue
        lo_vals = np.sort(loo_at_x[ok, :, b] - residuals[ok, b][:, None], axis=0)
        hi_vals = np.sort(loo_at_x[ok, :, b] + residuals[ok, b][:, None], axis=0)
        # rounded before floor/ceil: 0.2 * 5 is 0.9999999999999998 in floating point, and must count as 1
        k_lo = int(np.floor(round(alpha * (k + 1), 9)))
        k_hi = int(np.ceil(round(level * (k + 1), 9)))
        if k_lo >= 1:
            lower[:, b] = lo_vals[k_lo - 1]
        if k_hi <= k:
            upper[:, b] = hi_vals[k_hi - 1]
    return lower, upper


def check_level(level: float | None) -> float | None:
    """``level`` must lie strictly between 0 and 1 (None: no interval)."""
    if level is None:
        return None
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise InputError(f"level must be a number between 0 and 1, got {level!r}") from None
    if not 0.0 < value < 1.0:
        raise InputError(f"level must lie strictly between 0 and 1, got {level!r}")
    return value


@dataclass(frozen=True)
class FittedLaw:
    """A law model fitted on training settings, with its leave-one-setting-out refits for jackknife+ intervals."""

    model: str
    chosen: Candidate
    loo_models: tuple[LinearPredictor | None, ...]
    residuals: np.ndarray  # (n, B) |y_i - mu_-i(x_i)|, NaN where not scored
    counts: np.ndarray = field(repr=False)  # (B,) scored settings per benchmark

    @property
    def params(self) -> dict[str, Any]:
        return {"model": self.chosen.name, **self.chosen.params}

    @property
    def interpolating(self) -> np.ndarray:
        """(B,) bool: no more scored settings than parameters of the chosen family (in-sample R² meaningless)."""
        return self.counts <= self.chosen.n_params

    def predict(self, a: np.ndarray, c: np.ndarray, level: float | None = None) -> LawPrediction:
        """Mean (and, with ``level``, the jackknife+ interval) in raw score units at raw A, C (m, B)."""
        level = check_level(level)
        a, c = _check(a, c)
        mean = self.chosen.predictor.predict(a, c)
        if level is None:
            return LawPrediction(mean=mean)
        loo = np.stack([np.full_like(mean, np.nan) if f is None else f.predict(a, c) for f in self.loo_models])
        lower, upper = jackknife_plus(loo, self.residuals, level)
        return LawPrediction(mean=mean, lower=lower, upper=upper, level=level)


class LawModel:
    """A registered law model: ``fit(a, c, scores)`` -> ``FittedLaw`` (A, C, scores raw, [n, B], NaN = missing)."""

    def __init__(self, name: str, family: Family) -> None:
        self.name = name
        self.family = family

    def select(self, a: np.ndarray, c: np.ndarray, y: np.ndarray) -> Candidate | None:
        """The family's inner-CV choice and fit on these training rows (None when nothing is scored)."""
        prep = prepare(a, c, y)
        if not prep.mask.any():
            return None
        return self.family.select(prep)

    def fit(self, a: np.ndarray, c: np.ndarray, scores: np.ndarray, *, seed: int = 0) -> FittedLaw:
        """Fit on the training settings; every normalisation and choice uses these rows only.

        ``seed`` is accepted for models with random parts; every registered model is deterministic.
        """
        a, c, y = _check(a, c, scores)
        return self.fit_rows(a, c, y, np.arange(y.shape[0]), lambda rows: self.select(a[rows], c[rows], y[rows]))

    def fit_rows(self, a: np.ndarray, c: np.ndarray, y: np.ndarray, rows: np.ndarray,
                 select: Callable[[np.ndarray], Candidate | None]) -> FittedLaw:
        """Fit on ``rows`` of full matrices; ``select(rows)`` runs the model's selection on a subset of rows
        (an evaluation shares one memoised selector among its folds: the fit without {i, k} is the same in
        fold i and fold k)."""
        rows = np.asarray(rows)
        mask = np.isfinite(a[rows]) & np.isfinite(c[rows]) & np.isfinite(y[rows])
        if mask.sum(axis=0).max(initial=0) < 2:
            raise InputError(f"the {self.name} law needs at least 2 scored settings on a benchmark")
        chosen = select(rows)
        n, B = mask.shape
        loo_models: list[LinearPredictor | None] = []
        residuals = np.full((n, B), np.nan)
        for pos, i in enumerate(rows):
            cand = select(np.delete(rows, pos)) if mask[pos].any() else None
            loo_models.append(None if cand is None else cand.predictor)
            if cand is not None:
                pred = cand.predictor.predict(a[i : i + 1], c[i : i + 1])[0]
                residuals[pos] = np.where(mask[pos], np.abs(y[i] - pred), np.nan)
        return FittedLaw(model=self.name, chosen=chosen, loo_models=tuple(loo_models), residuals=residuals,
                         counts=mask.sum(axis=0))
