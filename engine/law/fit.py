"""The law for one benchmark: min-max normalise A, C, score; quadratic features; sklearn-identical OLS; LOO."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.errors import InputError
from engine.law.ols import ols_batch, ols_fit, r2_score
from engine.study.model import Study

FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "ac_poly": ("A", "C", "A^2", "AC", "C^2"),
    "a_poly": ("A", "A^2"),
    "c_poly": ("C", "C^2"),
    "ac_linear": ("A", "C"),
    "a_linear": ("A",),
    "c_linear": ("C",),
}
RAW_TERMS = ("1", "A", "C", "A^2", "AC", "C^2")
MIN_POINTS = 3


def features(a: np.ndarray, c: np.ndarray, feature_set: str = "ac_poly") -> np.ndarray:
    """Feature matrix (..., p) of normalised A and C for a feature set (no intercept column)."""
    if feature_set not in FEATURE_SETS:
        raise InputError(f"unknown feature set '{feature_set}' (choose from {', '.join(FEATURE_SETS)})")
    a = np.asarray(a, dtype=float)
    c = np.asarray(c, dtype=float)
    columns = {"A": a, "C": c, "A^2": a * a, "AC": a * c, "C^2": c * c}
    return np.stack([columns[name] for name in FEATURE_SETS[feature_set]], axis=-1)


def minmax(x: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray) -> np.ndarray:
    """``(x - lo) / (hi - lo)``; a zero range maps everything to 0."""
    span = np.asarray(hi, dtype=float) - np.asarray(lo, dtype=float)
    safe = np.where(span == 0, 1.0, span)
    return np.where(span == 0, 0.0, (np.asarray(x, dtype=float) - lo) / safe)


@dataclass
class BenchmarkFit:
    """The fitted law of one benchmark (normalisation bounds from the settings that have a score)."""

    benchmark: str
    feature_set: str
    n: int
    r2: float
    coef_normalized: dict[str, float]
    coef_raw: dict[str, float]
    bounds: dict[str, float]
    settings: list[str] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_params(self) -> int:
        """Coefficients of the fit, intercept included."""
        return len(FEATURE_SETS[self.feature_set]) + 1

    @property
    def interpolating(self) -> bool:
        """No more settings than parameters: the fit passes through every point and in-sample R² is meaningless."""
        return self.n <= self.n_params

    @property
    def loo_predicted(self) -> np.ndarray:
        """Leave-one-out predictions (raw units), computed on first use."""
        if "loo_predicted" not in self.arrays:
            arr = self.arrays
            self.arrays["loo_predicted"] = loo_predictions(arr["A"], arr["C"], arr["score"], self.feature_set)
        return self.arrays["loo_predicted"]

    @property
    def loo_r2(self) -> float:
        """R² of the leave-one-out predictions in raw score units."""
        return r2_score(self.arrays["score"], self.loo_predicted)

    @property
    def loo_rmse(self) -> float:
        """RMSE of the leave-one-out predictions in raw score units."""
        return float(np.sqrt(np.mean((self.arrays["score"] - self.loo_predicted) ** 2)))

    @property
    def predictions(self) -> pd.DataFrame:
        """``setting, A, C, score, predicted, loo_predicted, residual`` (raw units) of the fitted settings."""
        arr = self.arrays
        return pd.DataFrame({"setting": self.settings, "A": arr["A"], "C": arr["C"], "score": arr["score"],
                             "predicted": arr["predicted"], "loo_predicted": self.loo_predicted,
                             "residual": arr["score"] - arr["predicted"]})

    def predict_normalized(self, a_norm: np.ndarray, c_norm: np.ndarray) -> np.ndarray:
        """Predicted normalised score at normalised A, C."""
        X = features(a_norm, c_norm, self.feature_set)
        names = FEATURE_SETS[self.feature_set]
        return self.coef_normalized["intercept"] + X @ np.array([self.coef_normalized[k] for k in names])

    def predict(self, A: np.ndarray | float, C: np.ndarray | float) -> np.ndarray:
        """Predicted score in raw units at raw A, C (arrays broadcast)."""
        b = self.bounds
        a_n = minmax(A, b["A_min"], b["A_max"])
        c_n = minmax(C, b["C_min"], b["C_max"])
        y_n = self.predict_normalized(a_n, c_n)
        return b["score_min"] + (b["score_max"] - b["score_min"]) * y_n


def _raw_coefficients(coef: dict[str, float], bounds: dict[str, float]) -> dict[str, float]:
    """Expand the normalised polynomial into raw A, C, score units (a_n = αA + β, c_n = γC + δ)."""
    def affine(lo: float, hi: float) -> tuple[float, float]:
        span = hi - lo
        return (0.0, 0.0) if span == 0 else (1.0 / span, -lo / span)

    al, be = affine(bounds["A_min"], bounds["A_max"])
    ga, de = affine(bounds["C_min"], bounds["C_max"])
    k = {name: coef.get(name, 0.0) for name in ("A", "C", "A^2", "AC", "C^2")}
    raw = {
        "1": coef["intercept"] + k["A"] * be + k["C"] * de + k["A^2"] * be**2 + k["AC"] * be * de + k["C^2"] * de**2,
        "A": k["A"] * al + 2 * k["A^2"] * al * be + k["AC"] * al * de,
        "C": k["C"] * ga + 2 * k["C^2"] * ga * de + k["AC"] * be * ga,
        "A^2": k["A^2"] * al**2,
        "AC": k["AC"] * al * ga,
        "C^2": k["C^2"] * ga**2,
    }
    span = bounds["score_max"] - bounds["score_min"]
    out = {term: float(value * span) for term, value in raw.items()}
    out["1"] += bounds["score_min"]
    return out


def loo_predictions(A: np.ndarray, C: np.ndarray, y: np.ndarray, feature_set: str = "ac_poly") -> np.ndarray:
    """Leave-one-out predictions (raw units): the whole pipeline (normalise, fit) refitted without each point."""
    n = len(y)
    if n < 2:
        return np.full(n, np.nan)
    idx = np.array([[j for j in range(n) if j != i] for i in range(n)])
    A_tr, C_tr, y_tr = A[idx], C[idx], y[idx]
    a_lo, a_hi = A_tr.min(axis=1), A_tr.max(axis=1)
    c_lo, c_hi = C_tr.min(axis=1), C_tr.max(axis=1)
    y_lo, y_hi = y_tr.min(axis=1), y_tr.max(axis=1)
    a_n = minmax(A_tr, a_lo[:, None], a_hi[:, None])
    c_n = minmax(C_tr, c_lo[:, None], c_hi[:, None])
    y_n = minmax(y_tr, y_lo[:, None], y_hi[:, None])
    coef, intercept = ols_batch(features(a_n, c_n, feature_set), y_n)
    x_out = features(minmax(A, a_lo, a_hi), minmax(C, c_lo, c_hi), feature_set)
    pred_n = intercept + np.einsum("bp,bp->b", x_out, coef)
    return y_lo + (y_hi - y_lo) * pred_n


def fit_arrays(
    benchmark: str, settings: list[str], A: np.ndarray, C: np.ndarray, y: np.ndarray, feature_set: str = "ac_poly"
) -> BenchmarkFit:
    """Fit the law on raw arrays (one entry per setting with a score)."""
    if feature_set not in FEATURE_SETS:
        raise InputError(f"unknown feature set '{feature_set}' (choose from {', '.join(FEATURE_SETS)})")
    A, C, y = (np.asarray(v, dtype=float) for v in (A, C, y))
    n = len(y)
    if n < MIN_POINTS:
        raise InputError(f"{benchmark}: only {n} settings have A, C and a score (need at least {MIN_POINTS})")
    bounds = {"A_min": A.min(), "A_max": A.max(), "C_min": C.min(), "C_max": C.max(), "score_min": y.min(), "score_max": y.max()}
    bounds = {k: float(v) for k, v in bounds.items()}
    a_n = minmax(A, bounds["A_min"], bounds["A_max"])
    c_n = minmax(C, bounds["C_min"], bounds["C_max"])
    y_n = minmax(y, bounds["score_min"], bounds["score_max"])
    coef, intercept = ols_fit(features(a_n, c_n, feature_set), y_n)
    coef_norm = {"intercept": intercept, **{name: float(v) for name, v in zip(FEATURE_SETS[feature_set], coef, strict=True)}}
    fitted_n = intercept + features(a_n, c_n, feature_set) @ coef
    predicted = bounds["score_min"] + (bounds["score_max"] - bounds["score_min"]) * fitted_n
    return BenchmarkFit(
        benchmark=benchmark, feature_set=feature_set, n=n, r2=r2_score(y_n, fitted_n), coef_normalized=coef_norm,
        coef_raw=_raw_coefficients(coef_norm, bounds), bounds=bounds,
        settings=list(settings), arrays={"A": A, "C": C, "score": y, "predicted": predicted},
    )


def fit_benchmark(study: Study, benchmark: str, feature_set: str = "ac_poly") -> BenchmarkFit:
    """Fit the law of one benchmark of a study on the settings that have A, C and a score."""
    names, A, C, score = study.arrays(benchmark)
    return fit_arrays(benchmark, names, A, C, score, feature_set)


def response_surface(fit: BenchmarkFit, n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a_grid, c_grid, z)`` over normalised A, C in [0, 1]; ``z[i, j]`` = raw predicted score at (a_grid[j], c_grid[i])."""
    grid = np.linspace(0.0, 1.0, int(n))
    a_mesh, c_mesh = np.meshgrid(grid, grid)
    z_n = fit.predict_normalized(a_mesh, c_mesh)
    b = fit.bounds
    return grid, grid.copy(), b["score_min"] + (b["score_max"] - b["score_min"]) * z_n
