"""The law of vision representation: per-benchmark quadratic fit of the score on normalised A and C, law models
chosen without peeking, honest leave-one-setting-out evaluation and conformal prediction intervals."""

from engine.law.background import evaluation_if_ready, fit_ready, too_large_for_app
from engine.law.evaluate import (
    BenchmarkEvaluation,
    Evaluation,
    StudyMatrices,
    evaluate_study,
    fit_study_model,
    study_matrices,
)
from engine.law.fit import (
    FEATURE_SET_LABELS,
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
from engine.law.groups import benchmark_groups, valid_range
from engine.law.models import DESCRIPTIONS as LAW_MODEL_DESCRIPTIONS
from engine.law.models import LAW_MODELS, FittedLaw, LawModel, LawPrediction, get_law_model
from engine.law.ols import ols_batch, ols_fit, r2_score
from engine.law.predict import (
    DEFAULT_LEVEL,
    FLAG_TEXT,
    Placement,
    UnscoredPredictions,
    predict_setting,
    predict_unscored,
)
from engine.law.report import LawReport, fit_study, random_baseline, random_null

# Bump when the fit's definition changes (normalisation, features, solver): part of cache keys and exports.
LAW_VERSION = "quadratic-minmax-v1"

__all__ = [
    "DEFAULT_LEVEL",
    "FEATURE_SETS",
    "FEATURE_SET_LABELS",
    "FLAG_TEXT",
    "LAW_MODELS",
    "LAW_MODEL_DESCRIPTIONS",
    "LAW_VERSION",
    "RAW_TERMS",
    "BenchmarkEvaluation",
    "BenchmarkFit",
    "Evaluation",
    "FittedLaw",
    "LawModel",
    "LawPrediction",
    "LawReport",
    "Placement",
    "StudyMatrices",
    "UnscoredPredictions",
    "benchmark_groups",
    "evaluate_study",
    "evaluation_if_ready",
    "features",
    "fit_arrays",
    "fit_benchmark",
    "fit_ready",
    "fit_study",
    "fit_study_model",
    "get_law_model",
    "loo_predictions",
    "minmax",
    "ols_batch",
    "ols_fit",
    "predict_setting",
    "predict_unscored",
    "r2_score",
    "random_baseline",
    "random_null",
    "response_surface",
    "study_matrices",
    "too_large_for_app",
    "valid_range",
]
