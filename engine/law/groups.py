"""Benchmark groups of a study (its own, registry defaults otherwise) and valid score ranges."""

from __future__ import annotations

from engine.benchmarks import BENCHMARKS
from engine.study.model import Study


def benchmark_groups(study: Study) -> dict[str, list[str]]:
    """Group name -> the study's benchmarks in it (the study's groups: ``engine.study.Study.groups``)."""
    return dict(study.groups)


def valid_range(benchmark: str) -> tuple[float, float]:
    """Scores a benchmark can take: [0, max score] for a known one, unbounded otherwise."""
    bench = BENCHMARKS.get(benchmark)
    return (0.0, float(bench.max_score)) if bench else (float("-inf"), float("inf"))
