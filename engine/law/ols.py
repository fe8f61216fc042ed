"""Least squares with intercept, numerically identical to scikit-learn's LinearRegression (minimum-norm).

scikit-learn centres X and y, solves ``scipy.linalg.lstsq(Xc, yc, cond=tol)`` (SVD, gelsd, ``tol=1e-6``
relative to the largest singular value) and sets ``intercept = mean(y) - mean(X) @ coef``. With fewer points
than features this is the minimum-norm solution. ``ols_batch`` does the same for a stack of problems with one
batched SVD (for leave-one-out folds, random baselines and policy simulations).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

SKLEARN_TOL = 1e-6


def ols_fit(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """``(coef, intercept)`` of OLS with intercept on X (n, p), y (n,), as ``LinearRegression().fit`` gives."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    x_off = X.mean(axis=0)
    y_off = y.mean()
    coef = scipy.linalg.lstsq(X - x_off, y - y_off, cond=SKLEARN_TOL)[0]
    return coef, float(y_off - x_off @ coef)


def ols_batch(X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Batched OLS with intercept: X (B, n, p), y (B, n) -> coef (B, p), intercept (B,).

    ``weights`` (B, n) of 0/1 selects the rows of each problem (masked rows are dropped from the
    means and the solve), so problems with different numbers of points share one array.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if weights is None:
        weights = np.ones(y.shape)
    w = np.asarray(weights, dtype=float)
    count = np.maximum(w.sum(axis=1), 1.0)
    x_off = np.einsum("bn,bnp->bp", w, X) / count[:, None]
    y_off = (w * y).sum(axis=1) / count
    Xc = (X - x_off[:, None, :]) * w[:, :, None]
    yc = (y - y_off[:, None]) * w
    u, s, vt = np.linalg.svd(Xc, full_matrices=False)
    cutoff = SKLEARN_TOL * s[:, :1]
    inv = np.where(s > cutoff, 1.0 / np.where(s > cutoff, s, 1.0), 0.0)
    uty = np.einsum("bnk,bn->bk", u, yc)
    coef = np.einsum("bkp,bk->bp", vt, inv * uty)
    intercept = y_off - np.einsum("bp,bp->b", x_off, coef)
    return coef, intercept


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination; NaN when y is constant."""
    y = np.asarray(y, dtype=float)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(((y - np.asarray(pred, dtype=float)) ** 2).sum()) / ss_tot


def r2_batch(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Row-wise R² of (B, n) arrays."""
    ss_tot = ((y - y.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
    ss_res = ((y - pred) ** 2).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)
