"""Benchmark groups of a study (its own, registry defaults otherwise) and valid score ranges."""

from __future__ import annotations

from collections.abc import Iterable

from engine.benchmarks import benchmark_info
from engine.study.model import Study


def benchmark_groups(study: Study) -> dict[str, list[str]]:
    """Group name -> the study's benchmarks in it (the study's groups: ``engine.study.Study.groups``)."""
    return dict(study.groups)


def valid_range(benchmark: str, scores: Iterable[float] | None = None) -> tuple[float, float]:
    """Scores a benchmark can take: [0, max score] for a known one; for an unknown one the scale read from its
    scores (``engine.benchmarks.benchmark_info``): [0, 1] for fractions, [0, 100] for percent, else (points, or
    no scores given) unbounded."""
    values = [v for v in (scores if scores is not None else []) if v == v]
    info = benchmark_info(benchmark, values)
    if info.known or (values and info.max_score in (1.0, 100.0)):
        return 0.0, float(info.max_score)
    return float("-inf"), float("inf")
