"""Benchmark groups of a study (the paper's vision / OCR split until a study records its own) and valid score ranges."""

from __future__ import annotations

from typing import Any

from engine.benchmarks import BENCHMARKS, GROUPS


def benchmark_groups(study: Any) -> dict[str, list[str]]:
    """Group name -> the study's benchmarks in it: the study's own groups when it records them (a ``groups``
    attribute or ``meta["groups"]``, as group -> benchmarks or benchmark -> group), else the paper's vision / OCR."""
    own = getattr(study, "groups", None)
    mapping = own() if callable(own) else own
    if not mapping:
        mapping = getattr(study, "meta", {}).get("groups")
    if isinstance(mapping, dict) and mapping:
        if all(isinstance(v, str) for v in mapping.values()):  # benchmark -> group
            inverted: dict[str, list[str]] = {}
            for bench, group in mapping.items():
                inverted.setdefault(group, []).append(bench)
            mapping = inverted
        return {str(g): [b for b in members if b in study.benchmarks] for g, members in mapping.items()}
    return {g: [b for b in members if b in study.benchmarks] for g, members in GROUPS.items()}


def valid_range(benchmark: str) -> tuple[float, float]:
    """Scores a benchmark can take: [0, max score] for a known one, unbounded otherwise."""
    bench = BENCHMARKS.get(benchmark)
    return (0.0, float(bench.max_score)) if bench else (float("-inf"), float("inf"))
