"""Benchmark of C evaluation on a synthetic SPair-sized set (1,800 images, 12,234 pairs): cold vs cached runs.

Checks: forwards cover exactly the unique images; matching all pairs from cached features < 30 s; the cached
re-run >= 10x faster than the cold run. Prints a report and writes it to bench/results/. The default encoder is
efficientnet-lite0 (a small real CNN shipped in a wheel); with the raw-pixel ``pixels-8`` the cold run is mostly JPEG
decoding and resizing, so the cached/cold ratio is lower (measured 9.2x).
Usage: python bench/bench_correspondence.py [--encoder efficientnet-lite0] [--images-per-category 100] [--pairs 12234]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="efficientnet-lite0")
    parser.add_argument("--categories", type=int, default=18)
    parser.add_argument("--images-per-category", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=12_234)
    parser.add_argument("--workers", type=int, default=None, help="decode threads beside the forward (default: 1; 0: none)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-corr-"))
    os.environ["LAW_EXPLORER_HOME"] = str(scratch / "home")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from engine.correspondence.datasets import open_dataset
    from engine.correspondence.evaluate import evaluate, predict_pairs, resolve_encoder
    from engine.correspondence.features import FeatureProvider, protocol_preprocessing
    from engine.correspondence.protocols import get_protocol
    from engine.correspondence.synthetic import write_synthetic_spair

    t0 = time.perf_counter()
    root = write_synthetic_spair(scratch / "SPair-71k", args.categories, args.images_per_category, args.pairs)
    t_write = time.perf_counter() - t0
    spec = f"spair:{root}"

    t0 = time.perf_counter()
    dataset = open_dataset(spec)
    pairs = dataset.pairs("test")
    t_parse = time.perf_counter() - t0
    unique = len({p.src_id for p in pairs} | {p.trg_id for p in pairs})

    cold = evaluate(spec, args.encoder, record=False, workers=args.workers)
    warm = evaluate(spec, args.encoder, record=False, workers=args.workers)

    encoder = resolve_encoder(args.encoder)
    protocol = get_protocol("default")
    provider = FeatureProvider(encoder, dataset, protocol_preprocessing(encoder, protocol))
    t0 = time.perf_counter()
    provider.get([p.src_id for p in pairs] + [p.trg_id for p in pairs])
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict_pairs(pairs, provider, protocol)
    t_match = time.perf_counter() - t0

    checks = {
        "forwards_equal_unique_images": cold.stats.images_encoded == unique,
        "cached_rerun_encodes_nothing": warm.stats.images_encoded == 0,
        "matching_all_pairs_cached_under_30s": warm.stats.seconds < 30.0,
        "cached_rerun_10x_faster": cold.stats.seconds >= 10.0 * warm.stats.seconds,
    }
    report = {
        "encoder": args.encoder,
        "decode_workers": provider.workers if args.workers is None else args.workers,
        "torch_threads": torch.get_num_threads(),
        "pairs": len(pairs),
        "unique_images": unique,
        "write_dataset_s": round(t_write, 2),
        "parse_annotations_s": round(t_parse, 2),
        "cold": cold.to_dict()["stats"],
        "cached": warm.to_dict()["stats"],
        "cached_feature_load_s": round(t_load, 2),
        "matching_only_s": round(t_match, 2),
        "speedup_cached_vs_cold": round(cold.stats.seconds / max(warm.stats.seconds, 1e-9), 1),
        "pck_per_image_0.1": cold.pck["per_image"]["0.1"],
        "checks": checks,
    }
    lines = [
        f"correspondence bench: {len(pairs)} pairs over {unique} images, encoder {args.encoder}, {torch.get_num_threads()} torch threads,"
        f" {report['decode_workers']} decode threads",
        f"  dataset write {t_write:.1f} s, annotation parse {t_parse:.1f} s",
        f"  cold run   {cold.stats.seconds:.1f} s ({cold.stats.images_encoded} images encoded in {cold.stats.forwards} forwards,"
        f" encoding {cold.stats.encode_seconds:.1f} s)",
        f"  cached run {warm.stats.seconds:.1f} s ({warm.stats.cache_hits} cache hits, {warm.stats.images_encoded} encoded)"
        f" -> {report['speedup_cached_vs_cold']}x faster",
        f"  cached features load {t_load:.1f} s; matching all pairs {t_match:.1f} s",
        *[f"  [{'ok' if ok else 'FAIL'}] {name}" for name, ok in checks.items()],
    ]
    text = "\n".join(lines)
    print(text)
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_correspondence.txt").write_text(text + "\n", encoding="utf-8")
    (out_dir / "bench_correspondence.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    import shutil

    shutil.rmtree(scratch, ignore_errors=True)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
