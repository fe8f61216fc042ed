"""Latency of the keypoint-match viewer's steps on one builtin pair: predict (cold / cached), click, PCA, figures, export.

Usage: python bench/bench_viewer.py [--encoder pixels-8] [--pair chelsea:scale075] [--clicks 20]
Prints a small report (milliseconds; figure sizes in kB of plotly JSON).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="pixels-8")
    parser.add_argument("--pair", default="chelsea:scale075")
    parser.add_argument("--clicks", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["LAW_EXPLORER_HOME"] = tempfile.mkdtemp(prefix="bench-viewer-")

    import numpy as np

    from engine.correspondence import open_dataset
    from engine.correspondence.viewer import predict_pair
    from engine.correspondence.viewer_query import correct_at, pca_maps, query_similarity
    from engine.encoders.registry import build_encoder
    from engine.export import Provenance, figure_to_bytes
    from engine.plots import matches as mp

    rows: list[tuple[str, float]] = []
    t = time.perf_counter()
    dataset = open_dataset("builtin")
    pair = next(p for p in dataset.pairs("test") if p.pair_id == args.pair)
    rows.append(("open builtin dataset", _ms(t)))
    t = time.perf_counter()
    encoder = build_encoder(args.encoder)
    rows.append((f"build encoder {args.encoder}", _ms(t)))
    t = time.perf_counter()
    result = predict_pair(encoder, dataset, pair.pair_id)
    rows.append(("predict_pair, cold feature cache", _ms(t)))
    t = time.perf_counter()
    result = predict_pair(encoder, dataset, pair.pair_id)
    rows.append(("predict_pair, cached features", _ms(t)))

    t = time.perf_counter()
    scored = correct_at(result, pair.trg_bbox, 0.1)
    fig = mp.pair_matches_figure(result.src_image, result.trg_image, result.src_kps, result.gt_kps,
                                 result.pred_kps, result.visible, scored["correct"],
                                 threshold_px=scored["threshold_px"], alpha=0.1)  # fmt: skip
    rows.append(("matches figure (correct_at + build)", _ms(t)))
    match_kb = len(fig.to_json()) / 1024

    h, w = result.src_image.shape[:2]
    points = mp.click_grid(h, w)[:: max(1, len(mp.click_grid(h, w)) // args.clicks)][: args.clicks]
    t = time.perf_counter()
    for xy in points:
        query = query_similarity(result, xy)
    rows.append((f"click: query_similarity (mean of {len(points)})", _ms(t) / len(points)))
    t = time.perf_counter()
    sim_fig = mp.similarity_figure(result.src_image, result.trg_image, query["similarity"], query["query_xy"],
                                   query["best_xy"], extent=query["extent"])  # fmt: skip
    rows.append(("similarity figure build", _ms(t)))
    t = time.perf_counter()
    maps = pca_maps(result)
    pca = mp.pca_figure(maps["src_rgb"], maps["trg_rgb"], result.src_image, result.trg_image,
                        src_extent=maps["src_extent"], trg_extent=maps["trg_extent"])  # fmt: skip
    rows.append(("PCA maps + figure", _ms(t)))

    prov = Provenance(study="bench-viewer", study_hash="0")
    figure_to_bytes(fig, "png", prov)  # first call starts Chromium
    t = time.perf_counter()
    png = figure_to_bytes(fig, "png", prov)
    rows.append(("PNG export (warm kaleido)", _ms(t)))

    print(f"viewer latency — encoder {args.encoder}, pair {args.pair} ({w}x{h} source, {len(result.src_kps)} kps)")
    for name, value in rows:
        print(f"  {name:<44} {value:9.1f} ms")
    sizes = {"matches": match_kb, "similarity": len(sim_fig.to_json()) / 1024, "pca": len(pca.to_json()) / 1024}
    print("  figure JSON sizes: " + ", ".join(f"{k} {v:.0f} kB" for k, v in sizes.items()) + f"; PNG {len(png) / 1024:.0f} kB")
    print(f"  pair PCK@0.1 = {scored['pck']:.3f}; similarity map {np.asarray(query['similarity']).shape}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
