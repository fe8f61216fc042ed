"""GPU check: a real-size encoder (CLIP ViT-L/14 @336 architecture, random init) end to end through C evaluation.

Runs ``engine.correspondence.evaluate`` on a synthetic SPair-layout set on the chosen device and reports images/s of
the forward alone (fp32, tf32, bf16), of the cold evaluation end to end (decode + preprocess + forward + cache write
+ matching; fp32 and bf16, each with its own cache keys; optionally with no decode threads), and the cached re-run.
Random weights: this times the path, it is not a C score.
Usage: python bench/bench_gpu_correspondence.py [--device cuda] [--images-per-category 100] [--pairs 12234]
CPU smoke run: python bench/bench_gpu_correspondence.py --device cpu --model tiny --categories 2
    --images-per-category 4 --pairs 12 --batch-size 4
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
TINY = {**CLIP_L14_336, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
MODELS = {"clip-l14-336": CLIP_L14_336, "tiny": TINY}


def forward_images_per_s(encoder, pixels, device: str, precision: str, reps: int) -> float:
    import torch

    from engine.correspondence.prefetch import forward_precision

    with forward_precision(precision, device):
        encoder.encode(pixels)  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)  # that device's work (cuda:1 too), not the current device's
        t0 = time.perf_counter()
        for _ in range(reps):
            encoder.encode(pixels)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
    return reps * pixels.shape[0] / (time.perf_counter() - t0)


def summarise(result: dict, wall: float | None = None) -> dict:
    """Timings and PCK of one evaluation's JSON (``CEvaluation.to_dict()``); ``wall``: the caller's own clock."""
    stats = result["stats"]
    return {
        **({} if wall is None else {"wall_s": round(wall, 2)}),
        "pairs": stats["pairs"],
        "images": stats["images"],
        "seconds": round(stats["seconds"], 2),
        "encode_seconds": round(stats["encode_seconds"], 2),
        "match_seconds": round(stats["seconds"] - stats["encode_seconds"], 2),
        "images_encoded": stats["images_encoded"],
        "images_per_s": round(stats["images"] / stats["seconds"], 1),
        "pck_per_image_0.1": round(result["pck"]["per_image"]["0.1"], 6),
    }


def add_set_args(parser: argparse.ArgumentParser) -> None:
    """The options both GPU benches share: device, model, the synthetic set's size, batch size."""
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", choices=sorted(MODELS), default="clip-l14-336")
    parser.add_argument("--categories", type=int, default=18)
    parser.add_argument("--images-per-category", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=12_234)
    parser.add_argument("--batch-size", type=int, default=64)


def register_random_encoder(model: str) -> str:
    """Register ``MODELS[model]`` with random weights (timing only) in the encoder registry; returns its name."""
    from engine.encoders.registry import EncoderSpec, register_encoder

    name = f"{model}-random"
    register_encoder(EncoderSpec(
        name=name, family="hf-transformers", pretrained=False, source=f"random:{model}",
        description=f"{model} architecture, random weights (timing only)",
        params={"config": MODELS[model], "seed": 0},
    ))  # fmt: skip
    return name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_set_args(parser)
    parser.add_argument("--workers", type=int, default=None, help="decode threads (default: engine's choice)")
    parser.add_argument("--reps", type=int, default=5, help="forward-only repetitions")
    parser.add_argument("--sequential", action="store_true", help="also time a cold fp32 run with no decode threads")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "gpu-correspondence.json"))
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    os.environ["LAW_EXPLORER_HOME"] = str(scratch / "home")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from engine.correspondence import cache
    from engine.correspondence.evaluate import evaluate
    from engine.correspondence.prefetch import default_workers
    from engine.correspondence.synthetic import write_synthetic_spair
    from engine.encoders.preprocess import prepare
    from engine.encoders.registry import build_encoder

    name = register_random_encoder(args.model)
    root = write_synthetic_spair(scratch / "SPair-71k", args.categories, args.images_per_category, args.pairs)
    spec = f"spair:{root}"

    encoder = build_encoder(name, device=args.device)
    images = [torch.randint(0, 255, (336, 336, 3), dtype=torch.uint8).numpy() for _ in range(args.batch_size)]
    pixels, _ = prepare(images, encoder.preprocessing)
    grid = encoder.encode(pixels).features.shape[-2:]
    forward = {p: round(forward_images_per_s(encoder, pixels, args.device, p, args.reps), 1) for p in ("fp32", "tf32", "bf16")}

    common = {"record": False, "device": args.device, "batch_size": args.batch_size, "workers": args.workers}
    runs = {}
    if args.sequential:
        runs["cold_fp32_no_decode_threads"] = summarise(evaluate(spec, encoder, **{**common, "workers": 0}).to_dict())
        cache.enforce_limit(limit_bytes=0)
    runs["cold_fp32"] = summarise(evaluate(spec, encoder, **common).to_dict())
    runs["cached_fp32"] = summarise(evaluate(spec, encoder, **common).to_dict())
    runs["cold_bf16"] = summarise(evaluate(spec, encoder, precision="bf16", **common).to_dict())
    cuda = torch.cuda.is_available() and args.device.startswith("cuda")
    report = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(args.device) if cuda else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "decode_workers": default_workers(args.device) if args.workers is None else args.workers,
        "encoder": f"{args.model} (random init), grid " + "x".join(map(str, grid)),
        "batch_size": args.batch_size,
        "forward_only_images_per_s": forward,
        "pairs": runs["cold_fp32"]["pairs"],
        "images": runs["cold_fp32"]["images"],
        "end_to_end": runs,
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated(args.device) / 2**30, 2) if cuda else None,
    }
    print(json.dumps(report, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    import shutil

    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
