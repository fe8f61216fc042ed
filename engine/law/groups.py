"""Benchmark groups of a study (its own, registry defaults otherwise) and valid score ranges."""

from __future__ import annotations

from collections.abc import Iterable

from engine.benchmarks import benchmark_info
from engine.study.model import Study


def benchmark_groups(study: Study) -> dict[str, list[str]]:
    """Group name -> the study's benchmarks in it (the study's groups: ``engine.study.Study.groups``)."""
    return dict(study.groups)


def valid_range(benchmark: str, scores: Iterable[float] | None = None) -> tuple[float, float]:
    """Scores a benchmark can take: [0, max score] for a known one. An unknown one is bounded only when its scores
    show a bounded scale (``engine.benchmarks.benchmark_info``): [0, 1] when they all lie in [0, 1] (fractions),
    [0, 100] when they all lie in [0, 100] (percent); otherwise (points, signed scores such as deltas, or no
    scores given) it is unbounded, and predictions on it are not clipped."""
    values = [v for v in (scores if scores is not None else []) if v == v]
    info = benchmark_info(benchmark, values)
    if info.known:
        return 0.0, float(info.max_score)
    if values and min(values) >= 0.0 and info.max_score in (1.0, 100.0):  # a signed score may top out at 1
        return 0.0, float(info.max_score)
    return float("-inf"), float("inf")
