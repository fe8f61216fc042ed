"""The law of vision representation: per-benchmark quadratic fit of the score on normalised A and C."""

from engine.law.fit import (
    FEATURE_SETS,
    RAW_TERMS,
    BenchmarkFit,
    features,
    fit_arrays,
    fit_benchmark,
    loo_predictions,
    minmax,
    response_surface,
)
from engine.law.ols import ols_batch, ols_fit, r2_score
from engine.law.report import LawReport, fit_study, random_baseline, random_null

# Bump when the fit's definition changes (normalisation, features, solver): part of cache keys and exports.
LAW_VERSION = "quadratic-minmax-v1"

__all__ = [
    "FEATURE_SETS",
    "LAW_VERSION",
    "RAW_TERMS",
    "BenchmarkFit",
    "LawReport",
    "features",
    "fit_arrays",
    "fit_benchmark",
    "fit_study",
    "loo_predictions",
    "minmax",
    "ols_batch",
    "ols_fit",
    "r2_score",
    "random_baseline",
    "random_null",
    "response_surface",
]
