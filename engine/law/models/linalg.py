"""Closed-form penalised least squares per benchmark with exact leave-one-out residuals (hat-matrix identity)."""

from __future__ import annotations

import numpy as np

from engine.errors import InputError
from engine.law.models.base import Prepared, design


def penalty_grid(values: tuple[float, ...], what: str) -> np.ndarray:
    """A non-empty grid of positive finite penalties (user-given grids are checked)."""
    try:
        grid = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise InputError(f"{what} must be numbers, got {values!r}") from None
    if grid.size == 0 or not np.isfinite(grid).all() or (grid <= 0).any():
        raise InputError(f"{what} must be positive finite numbers, got {values!r}")
    return grid


def centred(prep: Prepared, feature_set: str) -> tuple[np.ndarray, ...]:
    """Weighted-centred design and score per benchmark: ``Xc (B,n,p), yc (B,n), x_off (B,p), y_off (B,), w (B,n), cnt (B,)``."""
    X = design(prep.a, prep.c, feature_set)
    w = prep.mask.T.astype(float)
    cnt = np.maximum(w.sum(axis=1), 1.0)
    x_off = np.einsum("bn,bnp->bp", w, X) / cnt[:, None]
    y_off = (w * prep.y.T).sum(axis=1) / cnt
    Xc = (X - x_off[:, None, :]) * w[:, :, None]
    yc = (prep.y.T - y_off[:, None]) * w
    return Xc, yc, x_off, y_off, w, cnt


def ridge_path(prep: Prepared, feature_set: str, lams: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge (unpenalised intercept) for each penalty: ``coef (L,B,p), intercept (L,B), loo residuals (L,B,n)``.

    A zero penalty gives the minimum-norm least-squares solution (pseudo-inverse). LOO residuals are
    e_i / (1 - h_ii) with the hat matrix of the fixed normalisation; NaN where not scored, inf where h_ii = 1.
    """
    Xc, yc, x_off, y_off, w, cnt = centred(prep, feature_set)
    p = Xc.shape[2]
    G = np.einsum("bnp,bnq->bpq", Xc, Xc)
    r = np.einsum("bnp,bn->bp", Xc, yc)
    M = G[None] + np.asarray(lams, dtype=float)[:, None, None, None] * np.eye(p)
    Minv = np.linalg.pinv(M, rcond=1e-12, hermitian=True)
    coef = np.einsum("lbpq,bq->lbp", Minv, r)
    resid = yc[None] - np.einsum("bnp,lbp->lbn", Xc, coef)
    h = (w / cnt[:, None])[None] + np.einsum("bnp,lbpq,bnq->lbn", Xc, Minv, Xc)
    with np.errstate(divide="ignore", invalid="ignore"):
        loo = np.where(1.0 - h > 1e-9, resid / (1.0 - h), np.inf)
    loo = np.where(w[None] > 0, loo, np.nan)
    intercept = y_off[None] - np.einsum("bp,lbp->lb", x_off, coef)
    return coef, intercept, loo


def sse(loo: np.ndarray, axis: int | tuple[int, ...] = -1) -> np.ndarray:
    """Sum of squared LOO residuals over scored entries (inf stays inf)."""
    return np.nansum(loo**2, axis=axis)


def ridge_hat(prep: Prepared, feature_set: str, lams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full hat matrices ``H (L,B,n,n)`` and residuals ``e (L,B,n)`` of ridge per benchmark (normalised units)."""
    Xc, yc, _, _, w, cnt = centred(prep, feature_set)
    p = Xc.shape[2]
    G = np.einsum("bnp,bnq->bpq", Xc, Xc)
    M = G[None] + np.asarray(lams, dtype=float)[:, None, None, None] * np.eye(p)
    Minv = np.linalg.pinv(M, rcond=1e-12, hermitian=True)
    XM = Xc[None] @ Minv  # (L,B,n,p)
    H = XM @ np.swapaxes(Xc, 1, 2)[None] + ((w[:, :, None] * w[:, None, :]) / cnt[:, None, None])[None]
    e = yc[None] - (XM @ (np.swapaxes(Xc, 1, 2) @ yc[..., None])[None])[..., 0]
    return H, e


def leave_two_out(H: np.ndarray, e: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``r[..., i, j]``: residual of point j from the fit without points i and j (2x2 hat-block identity).

    ``H`` (..., n, n), ``e`` (..., n), ``w`` (n,) or broadcastable 0/1 scored mask; NaN on the diagonal and
    where j is not scored; inf where the reduced fit reproduces j exactly.
    """
    d = 1.0 - np.diagonal(H, axis1=-2, axis2=-1)  # (..., n)
    det = d[..., :, None] * d[..., None, :] - H * np.swapaxes(H, -1, -2)
    num = d[..., :, None] * e[..., None, :] + np.swapaxes(H, -1, -2) * e[..., :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(np.abs(det) > 1e-12, num / det, np.inf)
    n = H.shape[-1]
    r = np.where(np.eye(n, dtype=bool), np.nan, r)
    return np.where(w[..., None, :] > 0, r, np.nan)


def nested_choice(loo: np.ndarray, l2o: np.ndarray) -> np.ndarray:
    """Nested LOO residuals: for each held-out point i, the penalty chosen on the other points' errors.

    ``loo`` (L, ..., n) LOO residuals per penalty, ``l2o`` (L, ..., n, n) leave-two-out residuals;
    returns (..., n) residual of i at the penalty minimising sum_j l2o[l, ..., i, j]².
    """
    inner = np.nansum(l2o**2, axis=-1)  # (L, ..., n)
    best = np.argmin(inner, axis=0)
    return np.take_along_axis(loo, best[None], axis=0)[0]
