"""The AC policy: which vision representations deserve a full finetune (simulation, recommender, cost)."""

from engine.policy.compare import (
    METRIC_DEFINITIONS,
    STRATEGY_DEFINITIONS,
    StrategyComparison,
    compare_strategies,
    metric_label,
    strategy_label,
    variant_label,
)
from engine.policy.cost import cost_comparison, projector_params
from engine.policy.recommend import Recommendation, recommend
from engine.policy.sampling import cell_ids, region_sequence
from engine.policy.simulate import (
    DEFAULT_LAW_MODEL,
    METRICS,
    NEEDS_A,
    STRATEGIES,
    VARIANTS,
    BenchmarkPolicy,
    BenchmarkSummary,
    PolicyResult,
    recall_curve,
    simulate,
    strategy_orders,
)

# Bump when region sampling, the refit or the success rule changes: part of cache keys and exports.
POLICY_VERSION = "region-sampling-v1"

__all__ = [
    "DEFAULT_LAW_MODEL",
    "METRICS",
    "METRIC_DEFINITIONS",
    "NEEDS_A",
    "POLICY_VERSION",
    "STRATEGIES",
    "STRATEGY_DEFINITIONS",
    "VARIANTS",
    "BenchmarkPolicy",
    "BenchmarkSummary",
    "PolicyResult",
    "Recommendation",
    "StrategyComparison",
    "cell_ids",
    "compare_strategies",
    "cost_comparison",
    "metric_label",
    "projector_params",
    "recall_curve",
    "recommend",
    "region_sequence",
    "simulate",
    "strategy_label",
    "strategy_orders",
    "variant_label",
]
