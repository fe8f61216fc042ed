"""``paper``: the paper's law unchanged: OLS on [A, C, A², AC, C²] of min-max normalised A, C, score, per benchmark."""

from __future__ import annotations

import numpy as np

from engine.law.models.base import Candidate, LinearPredictor, Prepared, design
from engine.law.models.linalg import ridge_path, sse
from engine.law.ols import ols_batch


class OLSFamily:
    """Ordinary least squares (scikit-learn's LinearRegression, minimum-norm) on one feature set; nothing to tune."""

    def __init__(self, name: str, feature_set: str) -> None:
        self.name = name
        self.feature_set = feature_set

    def select(self, prep: Prepared) -> Candidate:
        X = design(prep.a, prep.c, self.feature_set)
        coef, intercept = ols_batch(X, prep.y.T, prep.mask.T.astype(float))
        _, _, loo = ridge_path(prep, self.feature_set, np.zeros(1))
        predictor = LinearPredictor(prep.bounds, self.feature_set, coef, intercept)
        return Candidate(self.name, {}, float(sse(loo[0], axis=(0, 1))), predictor, X.shape[2] + 1)

    def nested_residuals(self, prep: Prepared) -> np.ndarray:
        """Nothing to choose: the plain leave-one-out residuals (n, B)."""
        _, _, loo = ridge_path(prep, self.feature_set, np.zeros(1))
        return loo[0].T

    def nested_sse(self, prep: Prepared) -> float:
        return float(sse(self.nested_residuals(prep), axis=(0, 1)))


PAPER = OLSFamily("paper", "ac_poly")
LINEAR = OLSFamily("linear", "ac_linear")
