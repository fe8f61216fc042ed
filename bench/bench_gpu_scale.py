"""GPU check for issue 8: where the time of a cold C evaluation goes, local vs Ray, against the forward alone.

SPair-sized synthetic set (1,800 images, 12,234 pairs), CLIP ViT-L/14@336 architecture with random weights (this
times the path; the PCK is meaningless), bf16, one GPU. Reports forward-only images/s, the cold and cached end to
end images/s of the local backend (and of the Ray backend when ``ray`` imports), the time of each stage measured
alone (pair parsing, decode with N threads, resize on the GPU, cache writes), the busy time of each phase inside
the cold and cached runs (``bench_pipeline_overhead.PHASES``, summed over threads), the pipeline's own ceiling (the
same cold run with a null encoder of the same feature shape: ``bench_pipeline_overhead.py``) and, with
``--old PATH``, the same cold run with an older copy of ``engine`` (a folder holding it) for a before/after on the
same machine.
Usage: python bench/bench_gpu_scale.py [--device cuda] [--old .old] [--no-ray] [--no-stages] [--out DIR]
One short GPU check of the local path (a few minutes; the CUDA tests first, see docs/scale.md): mkdir -p /tmp/before &&
    git archive 606c8c7 | tar -x -C /tmp/before; python -m pytest -q -p no:cacheprovider tests/test_corr_speed.py
    tests/test_corr_stream.py tests/test_corr_inflight.py -k cuda; python bench/bench_gpu_scale.py --device cuda
    --no-ray --no-stages --old /tmp/before
CPU smoke run: python bench/bench_gpu_scale.py --device cpu --model tiny --categories 2 --images-per-category 4
    --pairs 12 --batch-size 4
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_gpu_correspondence import (  # noqa: E402
    add_set_args,
    forward_images_per_s,
    register_random_encoder,
    summarise,
)
from bench_pipeline_overhead import Timers, instrument  # noqa: E402


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)  # that device's work (cuda:1 too), not the current device's


def stage_times(spec: str, encoder, device: str, batch_size: int, workers: int) -> dict:
    """Each stage of the cold path alone, over every image of the set (seconds)."""
    import numpy as np

    from engine.correspondence.datasets import SPairDataset, open_dataset
    from engine.correspondence.prefetch import decode_one
    from engine.encoders.preprocess import prepare

    t = time.perf_counter()
    fresh = SPairDataset(Path(spec[len("spair:"):]))
    pairs = fresh.pairs("test")
    parse = time.perf_counter() - t
    ds = open_dataset(spec)
    ids = list(dict.fromkeys([p.src_id for p in pairs] + [p.trg_id for p in pairs]))
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        images = list(pool.map(lambda i: decode_one(ds.load_image, i), ids))
    decode = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(0, len(images), batch_size):
        prepare(images[s : s + batch_size], encoder.preprocessing, device)
    _sync(device)
    resize = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(0, min(len(images), 4 * batch_size), batch_size):
        prepare(images[s : s + batch_size], encoder.preprocessing)
    resize_cpu_per_image = (time.perf_counter() - t) / min(len(images), 4 * batch_size)
    grid = encoder.encode(prepare(images[:1], encoder.preprocessing, device)[0]).features.shape[1:]
    arr = np.random.default_rng(0).standard_normal(tuple(grid)).astype(np.float16)
    folder = Path(tempfile.mkdtemp(prefix="bench-save-"))
    t = time.perf_counter()
    for k in range(len(ids)):
        np.save(folder / f"{k}.npy", arr)
    save = time.perf_counter() - t
    return {
        "images": len(ids),
        "parse_pairs_s": round(parse, 2),
        f"decode_{workers}_threads_s": round(decode, 2),
        "resize_normalise_on_device_s": round(resize, 2),
        "resize_normalise_cpu_1_thread_ms_per_image": round(1e3 * resize_cpu_per_image, 2),
        "np_save_fp16_s": round(save, 2),
        "feature_mb_per_image": round(arr.nbytes / 2**20, 2),
    }


OLD_RUN = """
import json, sys, time
sys.path.insert(0, {old!r})
sys.path.insert(0, {bench!r})
from bench_gpu_correspondence import register_random_encoder
sys.path.insert(0, {old!r})  # that module put this repository first: the old engine must win
import engine
assert engine.__file__.startswith({old!r}), engine.__file__
from engine.correspondence.evaluate import evaluate
from engine.encoders.registry import build_encoder
register_random_encoder({model!r})  # into the old engine's registry (imported on call)
enc = build_encoder({name!r}, device={device!r})
t = time.perf_counter()
r = evaluate({spec!r}, enc, record=False, device={device!r}, batch_size={batch}, precision="bf16")
r = r.to_dict() if hasattr(r, "to_dict") else r  # an engine from before typed results returns the dict
print(json.dumps({{"wall": time.perf_counter() - t, "result": r}}))
"""


RAY_RUN = """
import json, sys, time
sys.path.insert(0, {repo!r})
sys.path.insert(0, {repo!r} + "/bench")
from bench_gpu_correspondence import register_random_encoder
from engine.correspondence.evaluate import evaluate
register_random_encoder({model!r})
out = {{}}
for label in ("ray_cold_bf16", "ray_cached_bf16"):
    t = time.perf_counter()
    r = evaluate({spec!r}, {name!r}, record=False, device={device!r}, batch_size={batch}, precision="bf16", backend="ray")
    out[label] = {{"wall": time.perf_counter() - t, "result": r.to_dict()}}
    print(label, round(time.perf_counter() - t, 2), file=sys.stderr, flush=True)
print(json.dumps(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_set_args(parser)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--old", default=None, help="folder holding an older engine/ to time the same cold run with")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-stages", action="store_true", help="skip timing each stage alone")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the null-encoder run (the pipeline's ceiling)")
    parser.add_argument("--ray-timeout", type=int, default=150, help="seconds the Ray runs may take together")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-gpu-scale-"))
    os.environ["LAW_EXPLORER_HOME"] = str(scratch / "home")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from engine.correspondence import cache
    from engine.correspondence.evaluate import evaluate
    from engine.correspondence.prefetch import default_workers
    from engine.correspondence.synthetic import write_synthetic_spair
    from engine.encoders.preprocess import prepare
    from engine.encoders.registry import build_encoder

    report: dict = {"device": args.device, "torch": torch.__version__, "cpus": os.cpu_count()}
    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    report["gpu"] = torch.cuda.get_device_name(args.device) if cuda else None
    name = register_random_encoder(args.model)
    t = time.perf_counter()
    root = write_synthetic_spair(scratch / "SPair-71k", args.categories, args.images_per_category, args.pairs)
    report["write_set_s"] = round(time.perf_counter() - t, 1)
    spec = f"spair:{root}"
    encoder = build_encoder(name, device=args.device)
    images = [torch.randint(0, 255, (336, 336, 3), dtype=torch.uint8).numpy() for _ in range(args.batch_size)]
    pixels, _ = prepare(images, encoder.preprocessing, args.device)
    report["forward_only_images_per_s"] = {
        p: round(forward_images_per_s(encoder, pixels, args.device, p, args.reps), 1) for p in ("fp32", "bf16")
    }
    workers = default_workers(args.device)
    report["decode_workers"] = workers
    if not args.no_stages:
        report["stages"] = stage_times(spec, encoder, args.device, args.batch_size, workers)
    print(json.dumps(report, indent=1), flush=True)

    common = {"record": False, "device": args.device, "batch_size": args.batch_size, "precision": "bf16"}
    runs = {}
    timers = Timers()
    instrument(timers)
    for label in ("local_cold_bf16", "local_cached_bf16"):
        timers.seconds.clear()
        t = time.perf_counter()
        runs[label] = summarise(evaluate(spec, encoder, **common).to_dict(), time.perf_counter() - t)
        runs[label]["busy_s"] = {k: round(v, 2) for k, v in timers.seconds.items()}
        print(json.dumps({label: runs[label]}, indent=1), flush=True)
    if not args.no_ceiling:  # the same cold run with a null encoder of this one's feature shape, in a child process
        feats = encoder.encode(pixels[:1]).features
        code = [sys.executable, str(REPO / "bench" / "bench_pipeline_overhead.py"), "--dataset", str(root), "--device",
                args.device, "--grid", str(feats.shape[-1]), "--channels", str(feats.shape[1]), "--input",
                str(encoder.preprocessing.input_size[0]), "--batch-size", str(args.batch_size), "--json"]  # fmt: skip
        done = subprocess.run(code, capture_output=True, text=True, env=dict(os.environ, LAW_EXPLORER_HOME=str(scratch / "home-null")))
        if done.returncode == 0:
            runs["null_encoder_cold"] = json.loads(done.stdout.strip().splitlines()[-1])
        else:
            runs["null_encoder_cold"] = "failed: " + done.stderr.strip()[-400:]
        print(json.dumps({"null_encoder_cold": runs["null_encoder_cold"]}), flush=True)
    if not args.no_ray:  # in a child process group with a deadline: a cluster that hangs cannot eat the run
        cache.enforce_limit(limit_bytes=0)
        code = RAY_RUN.format(repo=str(REPO), name=name, model=args.model, device=args.device, spec=spec,
                              batch=args.batch_size)
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"), start_new_session=True)
        try:
            out, err = child.communicate(timeout=args.ray_timeout)
            if child.returncode == 0:
                data = json.loads(out.strip().splitlines()[-1])
                for key, value in data.items():
                    runs[key] = summarise(value["result"], value["wall"])
            else:
                runs["ray"] = "failed: " + err.strip()[-600:]
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            out, err = child.communicate()
            runs["ray"] = f"timed out after {args.ray_timeout} s; its last output: " + (out + err).strip()[-600:]
        print(json.dumps({k: v for k, v in runs.items() if k.startswith("ray")}, indent=1), flush=True)
    if args.old:
        del encoder
        torch.cuda.empty_cache() if cuda else None
        code = OLD_RUN.format(old=str(Path(args.old).resolve()), bench=str(REPO / "bench"), name=name, model=args.model,
                              device=args.device, spec=spec, batch=args.batch_size)
        env = dict(os.environ, LAW_EXPLORER_HOME=str(scratch / "home-old"))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(scratch))
        if done.returncode == 0:
            data = json.loads(done.stdout.strip().splitlines()[-1])
            runs["old_engine_local_cold_bf16"] = summarise(data["result"], data["wall"])
        else:
            runs["old_engine_local_cold_bf16"] = "failed: " + done.stderr.strip()[-400:]
    report["end_to_end"] = runs
    report["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated(args.device) / 2**30, 2) if cuda else None
    fwd = report["forward_only_images_per_s"]["bf16"]
    cold = runs["local_cold_bf16"]["images_per_s"]
    report["local_cold_fraction_of_forward_only"] = round(cold / fwd, 3)
    print(json.dumps(report, indent=1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-scale.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
