"""The C evaluation pipeline's own ceiling: a cold evaluation with a null encoder whose forward costs ~nothing.

Runs ``engine.correspondence.evaluate.evaluate`` (the path of ``correspondence evaluate``: encoder by registry
name, result recorded) on the SPair-sized synthetic set (1,800 images, 12,234 pairs; smaller with flags) with a
registered *null* encoder: its forward gathers precomputed random features of a realistic shape (default 24 x 24
cells of 1,024 channels, a ViT-L/14@336) chosen by the pixels, so what is timed is everything but the model.
Reports images/s end to end (the rate the pipeline could reach if the forward were free) and the busy time of each
phase (summed over the threads it ran on: phases that overlap can add up to more than the wall time): pair parsing,
decode, preprocessing, forward, fp16 copy-out, cache files and DuckDB rows, chunk checkpoints, matching, PCK; and
the process's CPU seconds (all threads: the work, less sensitive than the wall time to other processes' load).

``--root DIR`` imports ``engine`` from another copy (``git archive REV | tar -x -C DIR``) for a before/after;
``--compare DIR --rounds N`` runs this tree and that one alternately, one fresh process and state folder each.
``--warm-pair-index`` reads the pairs once before the timed run (the SPair pair index is then warm, as for a
sweep's second encoder: ``pairs_read`` is the index hit, ``pair_parsing`` 0).
Usage: python bench/bench_pipeline_overhead.py [--categories 18 --images-per-category 100 --pairs 12234]
    [--grid 24 --channels 1024 --input 336] [--batch-size 64] [--device cpu] [--compare /tmp/before --rounds 3]
Quick run: python bench/bench_pipeline_overhead.py --categories 4 --images-per-category 20 --pairs 400 --channels 256
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# (label, module, attribute or "Class.method"); looked up when present, so an older engine is timed the same way
PHASES = (
    ("pair_parsing", "engine.correspondence.datasets.spair", "SPairDataset._parse"),
    ("pairs_read", "engine.correspondence.datasets.spair", "SPairDataset.pairs"),
    ("decode", "engine.correspondence.datasets.spair", "read_rgb"),
    ("preprocessing", "engine.encoders.preprocess", "prepare"),
    ("encode_loop", "engine.correspondence.features", "FeatureProvider._encode_misses"),
    ("encode_step", "engine.correspondence.features", "FeatureProvider._encode_pixels"),
    # CUDA, one batch in flight: queueing a forward and its copy-out, then waiting for a batch's event and copying it
    # out of pinned memory (the host's wait for the GPU)
    ("forward_queue", "engine.correspondence.features", "FeatureProvider._queue_pixels"),
    ("gpu_wait_copy_out", "engine.correspondence.features", "FeatureProvider._take_queued"),
    ("packed_upload", "engine.encoders.preprocess", "upload_images"),
    ("batch_bookkeeping", "engine.correspondence.features", "FeatureProvider._encode_batch"),
    ("feature_keys", "engine.correspondence.cache", "feature_key"),
    ("image_keys", "engine.correspondence.datasets.spair", "SPairDataset.image_key"),
    ("weights_hash", "engine.encoders.common", "state_dict_hash"),
    ("handover_to_matching", "engine.correspondence.streaming", "ChunkMatcher.encoded"),
    ("cache_files", "engine.correspondence.cache", "write_files"),
    ("cache_rows", "engine.correspondence.cache", "insert_rows"),
    ("cache_lookup", "engine.correspondence.cache", "lookup"),
    ("cache_trim", "engine.correspondence.cache", "enforce_limit"),
    ("checkpoints", "engine.correspondence.evaluate", "write_json_atomic"),
    ("checkpoints", "engine.correspondence.streaming", "write_json_atomic"),
    ("checkpoints", "engine.correspondence.evaluate", "write_checkpoint"),
    ("checkpoints", "engine.correspondence.streaming", "write_checkpoint"),
    ("matching_with_loads", "engine.correspondence.evaluate", "predict_pairs"),
    ("matching_records", "engine.correspondence.evaluate", "match_records"),
    # the products and arg-maxes (device work on a GPU) with the keypoint <-> cell mapping (host work, also below)
    ("matching_products", "engine.correspondence.evaluate", "transfer_keypoints"),
    ("matching_products", "engine.correspondence.evaluate", "transfer_keypoints_flat"),
    ("keypoint_maps", "engine.correspondence.matching", "GridMap.to_cell"),
    ("keypoint_maps", "engine.correspondence.matching", "GridMap.from_cell"),
    ("keypoint_maps", "engine.correspondence.matching", "cells_of"),
    ("keypoint_maps", "engine.correspondence.matching", "points_of"),
    # all PCK work (per chunk as it is matched, where the engine does that) and what is left after the last chunk
    ("pck", "engine.correspondence.evaluate", "pck_from_predictions"),
    ("pck", "engine.correspondence.evaluate", "_scored"),
    ("pck", "engine.correspondence.evaluate", "summarise_scores"),
    ("pck_after_last_chunk", "engine.correspondence.evaluate", "pck_from_predictions"),
    ("pck_after_last_chunk", "engine.correspondence.evaluate", "summarise_scores"),
    ("record_result", "engine.correspondence.results", "record_result"),
)


class Timers:
    """Busy seconds and calls per label, summed over threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, label: str, seconds: float) -> None:
        with self.lock:
            self.seconds[label] = self.seconds.get(label, 0.0) + seconds
            self.calls[label] = self.calls.get(label, 0) + 1

    def wrap(self, label: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - t)

        return timed


def instrument(timers: Timers) -> list[str]:
    """Wrap every phase function the imported engine has; returns the labels found."""
    found = []
    for label, module_name, attribute in PHASES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # an older engine without that module
            continue
        owner, _, name = attribute.rpartition(".")
        target = getattr(module, owner, None) if owner else module
        if target is None or not hasattr(target, name):
            continue
        setattr(target, name, timers.wrap(label, getattr(target, name)))
        if label not in found:
            found.append(label)
    return found


def register_null_encoder(grid: int, channels: int, side: int, timers: Timers) -> str:
    """Register family ``bench-null`` and encoder ``null-<grid>x<channels>`` in the imported engine's registry."""
    import torch

    from engine.encoders.base import CLIP_MEAN, CLIP_STD, Preprocessing
    from engine.encoders.common import ModuleEncoder
    from engine.encoders.registry import EncoderSpec, register_encoder, register_family

    patch = side // grid

    class NullModule(torch.nn.Module):
        """Precomputed random feature maps; each image gets the one its pixels pick (deterministic, ~free)."""

        def __init__(self) -> None:
            super().__init__()
            gen = torch.Generator().manual_seed(0)
            self.register_buffer("bank", torch.randn(16, channels, grid, grid, generator=gen))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = time.perf_counter()
            pick = (x[:, :, ::patch, ::patch].sum(dim=(1, 2, 3)) * 1e3).long().remainder(self.bank.shape[0])
            out = self.bank.index_select(0, pick)
            if out.device.type == "cuda":
                torch.cuda.synchronize(out.device)
            timers.add("forward", time.perf_counter() - t)
            return out

    def build(spec, layer):
        return ModuleEncoder(
            name=spec.name, family=spec.family, module=NullModule(), forward=lambda m, x: m(x),
            preprocessing=Preprocessing((side, side), "stretch", CLIP_MEAN, CLIP_STD), patch_size=patch, stride=patch,
            embed_dim=channels, extra_hash=f"bench-null-{grid}-{channels}-{side}",
        )  # fmt: skip

    register_family("bench-null", build, lambda spec: True)
    name = f"null-{grid}x{channels}"
    register_encoder(EncoderSpec(name=name, family="bench-null", description="bench: features without a model",
                                 pretrained=False, source="bench"))  # fmt: skip
    return name


def synthetic_set(args: argparse.Namespace) -> Path:
    """The synthetic SPair folder for these sizes (written once, reused by later runs)."""
    from engine.correspondence.synthetic import write_synthetic_spair

    if args.dataset:
        return Path(args.dataset)
    folder = Path(args.set_dir) / f"spair-{args.categories}-{args.images_per_category}-{args.pairs}"
    if not (folder / "Layout" / "large" / "test.txt").is_file():
        tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=args.set_dir))
        write_synthetic_spair(tmp, args.categories, args.images_per_category, args.pairs)
        os.replace(tmp, folder) if not folder.exists() else None
    return folder


def run_once(args: argparse.Namespace) -> dict:
    """One cold evaluation in this process (fresh state folder); the report."""
    home = Path(tempfile.mkdtemp(prefix="bench-pipeline-home-"))
    os.environ["LAW_EXPLORER_HOME"] = str(home)
    os.environ.pop("LAW_EXPLORER_DB", None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import engine

    if args.root and not engine.__file__.startswith(str(Path(args.root).resolve())):
        raise SystemExit(f"engine came from {engine.__file__}, not {args.root}")
    from engine.correspondence.evaluate import evaluate

    root = synthetic_set(args)
    if args.warm_pair_index:  # what a second encoder of a sweep, or any later run, finds (before any timing)
        from engine.correspondence.datasets import open_dataset

        open_dataset(f"spair:{root}").pairs("test")
    timers = Timers()
    name = register_null_encoder(args.grid, args.channels, args.input, timers)
    found = instrument(timers)
    options = {"batch_size": args.batch_size, "device": args.device}
    if args.workers is not None:
        options["workers"] = args.workers
    t, cpu = time.perf_counter(), time.process_time()
    result = evaluate(f"spair:{root}", name, "default", **options)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    result = result.to_dict() if hasattr(result, "to_dict") else result
    stats = result["stats"]
    import shutil

    shutil.rmtree(home, ignore_errors=True)
    return {
        "engine": str(Path(engine.__file__).parent.parent),
        "device": args.device,
        "grid": args.grid,
        "channels": args.channels,
        "batch_size": args.batch_size,
        "pairs": stats["pairs"],
        "images": stats["images"],
        "wall_s": round(wall, 2),
        "images_per_s": round(stats["images"] / wall, 1),
        "cpu_s": round(cpu, 2),
        "encode_seconds": stats["encode_seconds"],
        "busy_s": {label: round(timers.seconds.get(label, 0.0), 2) for label in ["forward", *found]},
        "calls": {label: timers.calls.get(label, 0) for label in ["forward", *found]},
        "images_encoded": stats["images_encoded"],
        "forwards": stats["forwards"],
        "cache_hits": stats["cache_hits"],
        "pck_per_image_0.1": result["pck"]["per_image"]["0.1"],
        "pck": result["pck"]["per_image"],
        "load": os.getloadavg()[0],
        "warm_pair_index": bool(args.warm_pair_index),
    }


def child_command(args: argparse.Namespace, root: str) -> list[str]:
    flags = ["--root", root, "--categories", str(args.categories), "--images-per-category", str(args.images_per_category),
             "--pairs", str(args.pairs), "--grid", str(args.grid), "--channels", str(args.channels), "--input",
             str(args.input), "--batch-size", str(args.batch_size), "--device", args.device, "--set-dir", args.set_dir]  # fmt: skip
    if args.workers is not None:
        flags += ["--workers", str(args.workers)]
    if args.warm_pair_index:
        flags += ["--warm-pair-index"]
    if args.dataset:
        flags += ["--dataset", args.dataset]
    return [sys.executable, str(Path(__file__).resolve()), *flags, "--json"]


def compare(args: argparse.Namespace) -> int:
    """This tree and ``--compare`` alternately, ``--rounds`` times, one process each; prints every run and medians."""
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    trees = {"before": str(Path(args.compare).resolve()), "after": str(REPO)}
    for k in range(args.rounds):
        for label in ("before", "after") if k % 2 == 0 else ("after", "before"):
            done = subprocess.run(child_command(args, trees[label]), capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{label} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                return 1
            report = json.loads(done.stdout.strip().splitlines()[-1])
            runs[label].append(report)
            print(f"round {k + 1} {label}: {report['wall_s']} s, {report['images_per_s']} images/s, CPU {report['cpu_s']} s, load "
                  f"{report['load']:.1f}; busy {report['busy_s']}", flush=True)  # fmt: skip
    pcks = {json.dumps(r["pck"], sort_keys=True) for rs in runs.values() for r in rs}
    counts = {(r["images_encoded"], r["forwards"]) for rs in runs.values() for r in rs}
    summary = {label: {"wall_s": [r["wall_s"] for r in rs], "images_per_s": [r["images_per_s"] for r in rs],
                       "median_images_per_s": sorted(r["images_per_s"] for r in rs)[len(rs) // 2],
                       "cpu_s": [r["cpu_s"] for r in rs],
                       "cache_hits": sorted({r["cache_hits"] for r in rs})}
               for label, rs in runs.items()}  # fmt: skip
    summary["same_pck_images_encoded_forwards"] = len(pcks) == 1 and len(counts) == 1
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
    return 0 if summary["same_pck_images_encoded_forwards"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", type=int, default=18)
    parser.add_argument("--images-per-category", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=12_234)
    parser.add_argument("--grid", type=int, default=24, help="feature cells per side")
    parser.add_argument("--channels", type=int, default=1024)
    parser.add_argument("--input", type=int, default=336, help="model input side in pixels")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="decode threads (default: the engine's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--root", default=None, help="folder holding the engine/ to time (default: this repository)")
    parser.add_argument("--compare", default=None, help="an older tree to run alternately with this one")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set-dir", default=os.path.join(tempfile.gettempdir(), "bench-pipeline-sets"))
    parser.add_argument("--dataset", default=None, help="an SPair-layout folder to use instead of the synthetic set")
    parser.add_argument("--json", action="store_true", help="print only the report as one JSON line")
    parser.add_argument("--warm-pair-index", action="store_true",
                        help="read the pairs once before timing, in the fresh state folder (the pair index is then "
                             "warm, as for a sweep's second encoder; an engine without the index just parses twice)")
    parser.add_argument("--out", default=None, help="also write the report (or comparison) to this file")
    args = parser.parse_args()
    Path(args.set_dir).mkdir(parents=True, exist_ok=True)
    if args.compare:
        return compare(args)
    sys.path.insert(0, str(Path(args.root).resolve()) if args.root else str(REPO))
    report = run_once(args)
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
