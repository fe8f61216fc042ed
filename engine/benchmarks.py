"""Registry of the paper's benchmarks: lmms-eval task names, groups, primary metrics and score scales."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    """One lmms-eval task as the law uses it.

    ``metric`` is the key prefix in lmms-eval's ``results.json`` (``"<metric>,<filter>"``);
    ``percent`` benchmarks report accuracy in %, so a fraction in [0, 1] is multiplied by 100;
    ``aliases`` are other lmms-eval task names that report the same score.
    """

    name: str
    label: str
    group: str
    metric: str
    percent: bool = True
    max_score: float = 100.0
    aliases: tuple[str, ...] = ()


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("mmbench_en", "MMBench (en)", "vision", "gpt_eval_score", aliases=("mmbench_en_dev",)),
        Benchmark("mme", "MME (perception)", "vision", "mme_perception_score", percent=False, max_score=2000.0),
        Benchmark("mmmu_val", "MMMU (val)", "ocr", "mmmu_acc"),
        Benchmark("ok_vqa", "OK-VQA", "vision", "exact_match", aliases=("ok_vqa_val2014",)),
        Benchmark("textvqa_val", "TextVQA (val)", "ocr", "exact_match"),
        Benchmark("vizwiz_vqa_val", "VizWiz-VQA (val)", "ocr", "exact_match"),
        Benchmark("scienceqa_img", "ScienceQA (img)", "ocr", "exact_match"),
        Benchmark("seed_image", "SEED-Bench (image)", "vision", "seed_image"),
    )
}

PAPER_BENCHMARKS: list[str] = list(BENCHMARKS)
GROUPS: dict[str, list[str]] = {
    "vision": [b.name for b in BENCHMARKS.values() if b.group == "vision"],
    "ocr": [b.name for b in BENCHMARKS.values() if b.group == "ocr"],
}


def task_to_benchmark(task: str) -> str | None:
    """The registry name of an lmms-eval task (its own name or an alias), or None when unknown."""
    if task in BENCHMARKS:
        return task
    for bench in BENCHMARKS.values():
        if task in bench.aliases:
            return bench.name
    return None


def label(name: str) -> str:
    """Human label of a benchmark; unknown names are returned unchanged."""
    bench = BENCHMARKS.get(name)
    return bench.label if bench else name
