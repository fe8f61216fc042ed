"""``ridge``: the paper's quadratic features with an L2 penalty per benchmark, chosen by inner leave-one-out CV."""

from __future__ import annotations

import numpy as np

from engine.law.models.base import Candidate, LinearPredictor, Prepared
from engine.law.models.linalg import leave_two_out, nested_choice, penalty_grid, ridge_hat, ridge_path, sse

# Penalties on normalised features and score, largest first (ties go to the stronger penalty).
RIDGE_PENALTIES = tuple(float(x) for x in np.logspace(2, -4, 13))


class RidgeFamily:
    """Ridge regression per benchmark; each benchmark's penalty minimises its exact LOO error on the training rows."""

    name = "ridge"

    def __init__(self, penalties: tuple[float, ...] = RIDGE_PENALTIES) -> None:
        self.penalties = penalty_grid(penalties, "ridge penalties")

    def select(self, prep: Prepared) -> Candidate:
        coef, intercept, loo = ridge_path(prep, "ac_poly", self.penalties)
        errors = sse(loo)  # (L, B)
        best = np.argmin(errors, axis=0)
        cols = np.arange(coef.shape[1])
        predictor = LinearPredictor(prep.bounds, "ac_poly", coef[best, cols], intercept[best, cols])
        chosen = [float(self.penalties[i]) for i in best]
        return Candidate(self.name, {"penalty": chosen}, float(errors[best, cols].sum()), predictor, 6)

    def nested_sse(self, prep: Prepared) -> float:
        """Squared LOO errors with each fold's penalties re-chosen without the held-out setting (closed form)."""
        return float(np.nansum(self.nested_residuals(prep) ** 2))

    def nested_residuals(self, prep: Prepared) -> np.ndarray:
        """(n, B) LOO residuals with each fold's penalties re-chosen without the held-out setting (closed form)."""
        H, e = ridge_hat(prep, "ac_poly", self.penalties)
        w = prep.mask.T.astype(float)
        d = 1.0 - np.diagonal(H, axis1=-2, axis2=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            loo = np.where(d > 1e-9, e / d, np.inf)
        loo = np.where(w[None] > 0, loo, np.nan)
        return nested_choice(loo, leave_two_out(H, e, w[None])).T
