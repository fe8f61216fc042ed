"""Registry of known lmms-eval benchmarks (label, group, primary metric, score scale) and benchmark/group names."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from engine.errors import InputError


@dataclass(frozen=True)
class Benchmark:
    """One benchmark as the law uses it.

    ``metric`` is the key prefix in lmms-eval's ``results.json`` (``"<metric>,<filter>"``);
    ``percent`` benchmarks report accuracy in %, so a fraction in [0, 1] is multiplied by 100;
    ``aliases`` are other lmms-eval task names that report the same score; ``known`` is False for a
    benchmark that is not in the registry (label = its name, scale from its scores, group ``other``).
    """

    name: str
    label: str
    group: str
    metric: str
    percent: bool = True
    max_score: float = 100.0
    aliases: tuple[str, ...] = ()
    known: bool = True

    @property
    def unit(self) -> str:
        """``%`` for accuracies in percent, ``""`` for point scores (MME) and fractions."""
        return "%" if self.percent else ""


DEFAULT_GROUP = "other"
PAPER_GROUPS = ("vision", "ocr")
GROUP_LABELS = {"vision": "vision", "ocr": "OCR-type", DEFAULT_GROUP: "other"}

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        # The paper's eight (arXiv 2408.16357): four "vision" and four "OCR-type" benchmarks.
        Benchmark("mmbench_en", "MMBench (en)", "vision", "gpt_eval_score", aliases=("mmbench_en_dev",)),
        Benchmark("mme", "MME (perception)", "vision", "mme_perception_score", percent=False, max_score=2000.0),
        Benchmark("mmmu_val", "MMMU (val)", "ocr", "mmmu_acc"),
        Benchmark("ok_vqa", "OK-VQA", "vision", "exact_match", aliases=("ok_vqa_val2014",)),
        Benchmark("textvqa_val", "TextVQA (val)", "ocr", "exact_match"),
        Benchmark("vizwiz_vqa_val", "VizWiz-VQA (val)", "ocr", "exact_match"),
        Benchmark("scienceqa_img", "ScienceQA (img)", "ocr", "exact_match"),
        Benchmark("seed_image", "SEED-Bench (image)", "vision", "seed_image"),
        # Other lmms-eval tasks researchers report (primary metric from the task's yaml).
        Benchmark("gqa", "GQA", "vision", "exact_match"),
        Benchmark("pope", "POPE (accuracy)", "vision", "pope_accuracy"),
        Benchmark("mmvet", "MM-Vet", "vision", "gpt_eval_score"),
        Benchmark("realworldqa", "RealWorldQA", "vision", "exact_match"),
        Benchmark("cv_bench", "CV-Bench", "vision", "cv_bench_acc"),
        Benchmark("chartqa", "ChartQA", "ocr", "relaxed_overall"),
        Benchmark("docvqa_val", "DocVQA (val, ANLS)", "ocr", "anls"),
        Benchmark("infovqa_val", "InfographicVQA (val, ANLS)", "ocr", "anls"),
        Benchmark("ai2d", "AI2D", "ocr", "exact_match"),
        Benchmark("ocrbench", "OCRBench", "ocr", "ocrbench_accuracy"),
    )
}

PAPER_BENCHMARKS: list[str] = [
    "mmbench_en", "mme", "mmmu_val", "ok_vqa", "textvqa_val", "vizwiz_vqa_val", "scienceqa_img", "seed_image",
]
GROUPS: dict[str, list[str]] = {g: [b for b in PAPER_BENCHMARKS if BENCHMARKS[b].group == g] for g in PAPER_GROUPS}

_BENCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,79}$")
_GROUP_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,39}$")


def check_benchmark_name(name: object) -> str:
    """A benchmark name: 1-80 letters, digits or ``_ . + -``, starting with a letter or digit, no ``..`` (names
    may become file names and keys)."""
    text = str(name).strip() if isinstance(name, str) else ""
    if not _BENCH_RE.match(text) or ".." in text:
        raise InputError(f"benchmark name {str(name)[:60]!r} is not allowed: use 1-80 letters, digits or _ . + - "
                         "(an lmms-eval task name such as gqa or docvqa_val)")
    return text


def check_group_name(name: object) -> str:
    """A group name: 1-40 letters, digits, ``_`` or ``-``, starting with a letter."""
    text = str(name).strip() if isinstance(name, str) else ""
    if not _GROUP_RE.match(text):
        raise InputError(f"invalid group name {str(name)[:60]!r}: use 1-40 letters, digits, _ or -, starting with a letter")
    return text


def task_to_benchmark(task: str) -> str | None:
    """The registry name of an lmms-eval task (its own name or an alias), or None when unknown."""
    if task in BENCHMARKS:
        return task
    for bench in BENCHMARKS.values():
        if task in bench.aliases:
            return bench.name
    return None


def default_group(name: str) -> str:
    """The registry group of a known benchmark, ``other`` for an unknown one."""
    bench = BENCHMARKS.get(name)
    return bench.group if bench else DEFAULT_GROUP


def benchmark_info(name: str, scores: Iterable[float] | None = None) -> Benchmark:
    """The registry entry of a known benchmark; for an unknown one its name as label, group ``other`` and the
    scale read from its scores: percent when they lie in [0, 100] and exceed 1, a fraction in [0, 1], else
    points up to the largest score."""
    bench = BENCHMARKS.get(name)
    if bench is not None:
        return bench
    values = [float(v) for v in (scores or []) if v is not None and math.isfinite(float(v))]
    if values and min(values) >= 0.0 and max(values) <= 1.0:
        percent, top = False, 1.0
    elif not values or (min(values) >= 0.0 and max(values) <= 100.0):
        percent, top = True, 100.0
    else:
        percent, top = False, max(values)
    return Benchmark(name, name, DEFAULT_GROUP, "", percent=percent, max_score=top, known=False)


def label(name: str) -> str:
    """Human label of a benchmark; unknown names are returned unchanged."""
    bench = BENCHMARKS.get(name)
    return bench.label if bench else name


def group_label(group: str) -> str:
    """Human label of a group (``ocr`` -> ``OCR-type``); other groups are returned unchanged."""
    return GROUP_LABELS.get(group, group)


def parse_group_assignments(entries: str | Iterable[str] | None) -> dict[str, str]:
    """``"gqa=vision,docvqa_val=ocr"`` (or a list of such strings) -> {"gqa": "vision", "docvqa_val": "ocr"}."""
    if entries is None:
        return {}
    items = [entries] if isinstance(entries, str) else list(entries)
    out: dict[str, str] = {}
    for item in items:
        for part in filter(None, (p.strip() for p in str(item).split(","))):
            bench, sep, group = part.partition("=")
            if not sep or not bench.strip() or not group.strip():
                raise InputError(f"--group entry '{part}' is not BENCHMARK=GROUP (e.g. gqa=vision)")
            bench = check_benchmark_name(bench.strip())
            group = check_group_name(group.strip())
            if out.get(bench, group) != group:
                raise InputError(f"--group gives benchmark '{bench}' two groups ('{out[bench]}' and '{group}')")
            out[bench] = group
    return out


def order_groups(groups: Iterable[str]) -> list[str]:
    """The paper's groups first (vision, ocr), then the others in the order given, ``other`` last."""
    seen = list(dict.fromkeys(groups))
    rest = [g for g in seen if g not in PAPER_GROUPS and g != DEFAULT_GROUP]
    return [g for g in PAPER_GROUPS if g in seen] + rest + ([DEFAULT_GROUP] if DEFAULT_GROUP in seen else [])


__all__ = [
    "BENCHMARKS", "DEFAULT_GROUP", "GROUPS", "GROUP_LABELS", "PAPER_BENCHMARKS", "PAPER_GROUPS", "Benchmark",
    "benchmark_info", "check_benchmark_name", "check_group_name", "default_group", "group_label", "label",
    "order_groups", "parse_group_assignments", "task_to_benchmark",
]

