"""Minimum-norm refits of the law on many subsets of one candidate set, shared across benchmarks."""

from __future__ import annotations

import numpy as np

from engine.law.ols import SKLEARN_TOL


def prefix_codes(orders: np.ndarray) -> np.ndarray | None:
    """Bit codes (T, n) of the finetuned set after each prefix of each order; None when n > 62."""
    n = orders.shape[1]
    if n > 62:
        return None
    bits = np.left_shift(np.int64(1), orders.astype(np.int64))
    return np.bitwise_or.accumulate(bits, axis=1)


def prefix_masks(orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique finetuned sets over all prefixes: boolean masks (U, n) and the inverse index (T*n,)."""
    trials, n = orders.shape
    codes = prefix_codes(orders)
    if codes is not None:
        uniq, inverse = np.unique(codes.reshape(-1), return_inverse=True)
        return codes_to_masks(uniq, n), inverse.reshape(-1)
    member = np.zeros((trials, n, n), dtype=bool)
    member[np.arange(trials)[:, None], np.arange(n)[None, :], orders] = True
    member = np.logical_or.accumulate(member, axis=1).reshape(trials * n, n)
    masks, inverse = np.unique(member, axis=0, return_inverse=True)
    return masks, inverse.reshape(-1)


def codes_to_masks(codes: np.ndarray, n: int) -> np.ndarray:
    return ((codes[:, None] >> np.arange(n, dtype=np.int64)[None, :]) & 1).astype(bool)


class SubsetSolver:
    """OLS with intercept on each masked subset of the rows of X (U masks), minimum-norm when underdetermined.

    Uses the eigendecomposition of each small centred Gram matrix (pinv(XᵀX)Xᵀ = pinv(X)): the same
    solution as ``engine.law.ols.ols_batch`` up to round-off, and the decomposition depends on X and the
    masks only, so benchmarks that share A and C reuse it with their own scores.
    """

    def __init__(self, X: np.ndarray, masks: np.ndarray) -> None:
        self.X = np.asarray(X, dtype=float)
        self.w = masks.astype(float)
        self.count = self.w.sum(axis=1, keepdims=True)
        self.x_off = self.w @ self.X / self.count
        gram = np.einsum("un,np,nq->upq", self.w, self.X, self.X) - self.count[:, :, None] * (
            self.x_off[:, :, None] * self.x_off[:, None, :]
        )
        vals, vecs = np.linalg.eigh(gram)
        cutoff = (SKLEARN_TOL**2) * vals[:, -1:]
        inv = np.where(vals > cutoff, 1.0 / np.where(vals > cutoff, vals, 1.0), 0.0)
        self.pinv = np.einsum("upk,uk,uqk->upq", vecs, inv, vecs)
        self.base = self.X[None, :, :] - self.x_off[:, None, :]

    def predict(self, y: np.ndarray) -> np.ndarray:
        """Predictions (U, n) at every row of X of the fit on each subset's rows of y."""
        y = np.asarray(y, dtype=float)
        y_off = (self.w @ y)[:, None] / self.count
        xty = (self.w * y) @ self.X - self.count * self.x_off * y_off
        coef = np.einsum("upq,uq->up", self.pinv, xty)
        return y_off + np.einsum("unp,up->un", self.base, coef)
