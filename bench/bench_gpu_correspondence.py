"""GPU check: a real-size encoder (CLIP ViT-L/14 @336 architecture, random init) end to end through C evaluation.

Runs ``engine.correspondence.evaluate`` on a synthetic SPair-layout set on the chosen device, cold then cached,
and prints images/s of the cold run (decode + preprocess + forward + cache write) and of the forward alone.
Random weights: this times the path, it is not a C score.
Usage: python bench/bench_gpu_correspondence.py [--device cuda] [--images-per-category 100] [--pairs 12234]
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

CLIP_L14_336 = {
    "model_type": "clip_vision_model",
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "patch_size": 14,
    "image_size": 336,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--categories", type=int, default=18)
    parser.add_argument("--images-per-category", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=12_234)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "gpu-correspondence.json"))
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    os.environ["LAW_EXPLORER_HOME"] = str(scratch / "home")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from engine.correspondence.evaluate import evaluate
    from engine.correspondence.synthetic import write_synthetic_spair
    from engine.encoders.preprocess import prepare
    from engine.encoders.registry import EncoderSpec, build_encoder, register_encoder

    register_encoder(EncoderSpec(
        name="clip-l14-336-random", family="hf-transformers", pretrained=False, source="random:clip-l14-336",
        description="CLIP ViT-L/14 @336 architecture, random weights (timing only)",
        params={"config": CLIP_L14_336, "seed": 0},
    ))
    root = write_synthetic_spair(scratch / "SPair-71k", args.categories, args.images_per_category, args.pairs)
    spec = f"spair:{root}"

    encoder = build_encoder("clip-l14-336-random", device=args.device)
    images = [torch.randint(0, 255, (336, 336, 3), dtype=torch.uint8).numpy() for _ in range(args.batch_size)]
    pixels, _ = prepare(images, encoder.preprocessing)
    encoder.encode(pixels)  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    reps = 5
    for _ in range(reps):
        feats = encoder.encode(pixels).features
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    forward_ips = reps * args.batch_size / (time.perf_counter() - t0)

    cold = evaluate(spec, "clip-l14-336-random", record=False, device=args.device, batch_size=args.batch_size)
    warm = evaluate(spec, "clip-l14-336-random", record=False, device=args.device, batch_size=args.batch_size)
    report = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "encoder": "CLIP ViT-L/14 @336 (random init), grid " + "x".join(map(str, feats.shape[-2:])),
        "forward_only_images_per_s": round(forward_ips, 1),
        "pairs": cold["stats"]["pairs"],
        "images_encoded": cold["stats"]["images_encoded"],
        "cold_seconds": round(cold["stats"]["seconds"], 2),
        "cold_images_per_s": round(cold["stats"]["images_encoded"] / cold["stats"]["seconds"], 1),
        "cached_seconds": round(warm["stats"]["seconds"], 2),
        "cached_images_encoded": warm["stats"]["images_encoded"],
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
    }
    print(json.dumps(report, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
