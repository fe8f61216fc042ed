"""Overhead of the ray backend over local for the builtin C evaluation, cold and cached, as a user runs it.

Each run is one ``python -m engine correspondence evaluate`` process (so a cold Ray run includes starting the local
Ray instance and the actors that load the encoder); cold runs start from an empty state folder, cached runs reuse
the folder of the cold run before them. Local and Ray runs alternate, ``--rounds`` times.
Usage: OMP_NUM_THREADS=1 python bench/bench_ray.py [--encoder efficientnet-lite0] [--limit 60] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def one_run(backend: str, home: Path, encoder: str, limit: int | None) -> dict:
    argv = [sys.executable, "-m", "engine", "correspondence", "evaluate", "--dataset", "builtin", "--encoder", encoder,
            "--backend", backend, "--format", "json"]  # fmt: skip
    if limit:
        argv += ["--limit", str(limit)]
    env = dict(os.environ, LAW_EXPLORER_HOME=str(home), HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    t = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{backend} run failed: {done.stderr.strip()[-400:]}")
    data = json.loads(done.stdout)
    return {"wall_s": round(wall, 2), "evaluate_s": data["stats"]["seconds"], "images_encoded": data["stats"]["images_encoded"],
            "pck_per_image_0.1": data["pck"]["per_image"]["0.1"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="efficientnet-lite0")
    parser.add_argument("--limit", type=int, default=60, help="pairs of the builtin set (0: all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "ray-overhead.json"))
    args = parser.parse_args()
    load_start = os.getloadavg()
    runs: dict[str, list[dict]] = {k: [] for k in ("local_cold", "local_cached", "ray_cold", "ray_cached")}
    for _ in range(args.rounds):
        for backend in ("local", "ray"):
            home = Path(tempfile.mkdtemp(prefix=f"bench-ray-{backend}-"))
            runs[f"{backend}_cold"].append(one_run(backend, home, args.encoder, args.limit or None))
            runs[f"{backend}_cached"].append(one_run(backend, home, args.encoder, args.limit or None))
            print(backend, runs[f"{backend}_cold"][-1], runs[f"{backend}_cached"][-1], flush=True)
    pcks = {r["pck_per_image_0.1"] for rs in runs.values() for r in rs}
    median = {k: statistics.median(r["wall_s"] for r in rs) for k, rs in runs.items()}
    report = {
        "encoder": args.encoder, "limit": args.limit, "cpus": os.cpu_count(), "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
        "runs": runs, "median_wall_s": median,
        "ray_extra_cold_s": round(median["ray_cold"] - median["local_cold"], 2),
        "ray_cached_ratio": round(median["ray_cached"] / median["local_cached"], 2),
        "same_pck_everywhere": len(pcks) == 1,
    }  # fmt: skip
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
