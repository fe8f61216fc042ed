"""``auto``: a stack of the families, weighted by their nested inner leave-one-setting-out residuals."""

from __future__ import annotations

import itertools

import numpy as np

from engine.law.fit import FEATURE_SETS
from engine.law.models.base import Candidate, Family, LinearPredictor, Prepared


def simplex_weights(residuals: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one that minimise ``||residuals @ w||²`` (``residuals`` (N, K), finite).

    With every family predicting the same targets, ``y - sum_k w_k f_k = sum_k w_k (y - f_k)``, so this is the
    convex combination of the families with the smallest pooled squared error (Breiman's stacked regression with
    the sum-to-one constraint). Solved exactly: the optimum is the equality-constrained minimiser on its support,
    so every support is tried (K is small) and the feasible one with the smallest error wins (ties: the support
    listed first, i.e. fewer families, earlier families).
    """
    G = residuals.T @ residuals
    K = G.shape[0]
    best_w, best_err = np.eye(K)[0], np.inf
    for size in range(1, K + 1):
        for support in itertools.combinations(range(K), size):
            idx = list(support)
            kkt = np.zeros((size + 1, size + 1))
            kkt[:size, :size] = G[np.ix_(idx, idx)]
            kkt[:size, size] = kkt[size, :size] = 1.0
            rhs = np.zeros(size + 1)
            rhs[size] = 1.0
            sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:size]
            if (sol < -1e-12).any() or abs(sol.sum() - 1.0) > 1e-9:
                continue
            w = np.zeros(K)
            w[idx] = np.clip(sol, 0.0, None) / np.clip(sol, 0.0, None).sum()
            err = float(w @ G @ w)
            if err < best_err * (1.0 - 1e-10) - 1e-15:
                best_w, best_err = w, err
    return best_w


def on_features(predictor: LinearPredictor, feature_set: str) -> np.ndarray:
    """The predictor's coefficients (B, p) on a larger feature set (zeros for features it does not use)."""
    names = FEATURE_SETS[feature_set]
    coef = np.zeros((predictor.coef.shape[0], len(names)))
    for k, name in enumerate(FEATURE_SETS[predictor.feature_set]):
        coef[:, names.index(name)] = predictor.coef[:, k]
    return coef


class AutoFamily:
    """Stacking: each family is fitted with its own inner CV, and the families are averaged with convex weights
    (one set per study: pooled over its benchmarks) minimising the squared *nested* inner leave-one-setting-out
    error of the mix (each family's penalties re-chosen without the inner held-out setting, so a family with more
    to tune gains no optimism). A family whose inner LOO cannot predict a point (infinite residual) gets weight 0;
    when every family has one, the family with the fewest such points (then the earliest) takes all the weight."""

    name = "auto"

    def __init__(self, families: tuple[Family, ...]) -> None:
        self.families = families

    def weights(self, prep: Prepared) -> tuple[np.ndarray, float]:
        """Stacking weights (K,) and the mix's nested inner squared error (normalised score units)."""
        res = np.stack([np.where(prep.mask, f.nested_residuals(prep), 0.0) for f in self.families], axis=-1)
        flat = res.reshape(-1, len(self.families))
        finite = np.isfinite(flat).all(axis=0)
        w = np.zeros(len(self.families))
        if finite.any():
            w[finite] = simplex_weights(flat[:, finite])
        else:
            w[int(np.argmin((~np.isfinite(flat)).sum(axis=0)))] = 1.0
        used = w > 0
        mix = flat[:, used] @ w[used]
        return w, float(np.sum(mix**2))

    def select(self, prep: Prepared) -> Candidate:
        w, err = self.weights(prep)
        members = [(wk, f.select(prep)) for wk, f in zip(w, self.families, strict=True) if wk > 0]
        coef = sum(wk * on_features(m.predictor, "ac_poly") for wk, m in members)
        intercept = sum(wk * m.predictor.intercept for wk, m in members)
        predictor = LinearPredictor(prep.bounds, "ac_poly", coef, intercept)
        params = {"weights": {f.name: round(float(wk), 4) for wk, f in zip(w, self.families, strict=True)}}
        return Candidate(self.name, params, err, predictor, max(m.n_params for _, m in members))
