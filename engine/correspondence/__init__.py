"""The correspondence engine (C): datasets, protocols, matching, PCK, a feature cache and resumable evaluation.

``engine.correspondence.evaluate`` is the evaluation *module* (job target ``engine.correspondence.evaluate:run_job``);
call ``from engine.correspondence.evaluate import evaluate``.
"""

from engine.correspondence.datasets import Dataset, Pair, SPairDataset, open_dataset
from engine.correspondence.matching import (
    GridMap,
    MatchRule,
    make_grid_map,
    match_cells,
    similarity_map,
    transfer_keypoints,
)
from engine.correspondence.pck import pck_from_predictions
from engine.correspondence.protocols import Protocol, alpha_key, get_protocol, list_protocols, register_protocol
from engine.correspondence.result_types import CEvaluation, PairPrediction

__all__ = [
    "CEvaluation",
    "Dataset",
    "EvalOptions",
    "GridMap",
    "MatchRule",
    "Pair",
    "PairPrediction",
    "Protocol",
    "SPairDataset",
    "alpha_key",
    "attach_c_to_study",
    "c_score",
    "c_value",
    "correct_at",
    "feature_pca_rgb",
    "get_protocol",
    "get_result",
    "list_protocols",
    "list_results",
    "make_grid_map",
    "match_cells",
    "open_dataset",
    "pca_maps",
    "pck_from_predictions",
    "per_category_table",
    "predict_pair",
    "query_similarity",
    "register_protocol",
    "run_job",
    "similarity_map",
    "submit_evaluation",
    "transfer_keypoints",
]


def __getattr__(name: str):
    """Heavier pieces (evaluation, results, viewer) load on first use."""
    if name in ("run_job", "submit_evaluation", "EvalOptions"):
        import importlib

        module = importlib.import_module("engine.correspondence.evaluate")
    elif name in ("list_results", "get_result", "attach_c_to_study", "per_category_table", "c_score", "c_value"):
        from engine.correspondence import results as module
    elif name in ("predict_pair", "feature_pca_rgb"):
        from engine.correspondence import viewer as module
    elif name in ("query_similarity", "pca_maps", "correct_at"):
        from engine.correspondence import viewer_query as module
    else:
        raise AttributeError(name)
    return getattr(module, name)
