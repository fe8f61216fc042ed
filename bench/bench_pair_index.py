"""Reading an SPair split's pairs: parsing every pair file against the pair index (engine.correspondence.datasets.pair_index).

On the SPair-sized synthetic set (1,800 images, 12,234 pair files; ``--dataset`` for a real folder), in one process
that has imported torch (as an evaluation's has: the garbage collector then costs more), each round times
``SPairDataset(root).pairs("test")`` three ways: the index off (``LAW_EXPLORER_PAIR_INDEX=0``: every file parsed),
a miss (no index file: parsed, then the index written) and a hit (the stamp of the split folder checked and the
index read). Reports the median and min of each, the index file's size, and whether the hit's pairs equal the parsed
ones field by field (dtype and values). The pair files stay in the page cache between rounds (a first read from a
cold disk costs more, for the parse only). ``--root DIR`` imports ``engine`` from another copy
(``git archive REV | tar -x -C DIR``); one without the index is timed parsing only.
Usage: python bench/bench_pair_index.py [--categories 18 --images-per-category 100 --pairs 12234] [--rounds 7]
    [--dataset PATH] [--root DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def synthetic_set(args: argparse.Namespace) -> Path:
    """The synthetic SPair folder for these sizes (shared with bench_pipeline_overhead.py; written once)."""
    from engine.correspondence.synthetic import write_synthetic_spair

    if args.dataset:
        return Path(args.dataset)
    folder = Path(args.set_dir) / f"spair-{args.categories}-{args.images_per_category}-{args.pairs}"
    if not (folder / "Layout" / "large" / "test.txt").is_file():
        Path(args.set_dir).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=args.set_dir))
        write_synthetic_spair(tmp, args.categories, args.images_per_category, args.pairs)
        if not folder.exists():
            os.replace(tmp, folder)
        time.sleep(3)  # files this fresh are parsed but not indexed (pair_index.RACY_NS)
    return folder


def same_pairs(a: list, b: list) -> bool:
    import numpy as np

    if len(a) != len(b):
        return False
    for p, q in zip(a, b, strict=True):
        for field in p.__dataclass_fields__:
            x, y = getattr(p, field), getattr(q, field)
            if type(x) is not type(y):
                return False
            if isinstance(x, np.ndarray):
                if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
                    return False
            elif x != y or (isinstance(x, tuple) and [type(v) for v in x] != [type(v) for v in y]):
                return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", type=int, default=18)
    parser.add_argument("--images-per-category", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=12_234)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--set-dir", default=os.path.join(tempfile.gettempdir(), "bench-pipeline-sets"))
    parser.add_argument("--dataset", default=None, help="an SPair-layout folder to use instead of the synthetic set")
    parser.add_argument("--root", default=None, help="folder holding the engine/ to time (default: this repository)")
    parser.add_argument("--out", default=None, help="also write the report to this file")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.root).resolve()) if args.root else str(REPO))
    os.environ["LAW_EXPLORER_HOME"] = tempfile.mkdtemp(prefix="bench-pair-index-home-")
    import torch  # noqa: F401  (an evaluation's process holds it: more objects for each garbage collection)

    import engine
    from engine.correspondence.datasets import SPairDataset

    try:
        from engine.correspondence.datasets import pair_index
    except ImportError:  # an engine from before the index
        pair_index = None
    root = synthetic_set(args)
    times: dict[str, list[float]] = {"parse (index off)": [], "miss (parse + write)": [], "hit": []}
    parsed = hit = None
    for _ in range(args.rounds):
        os.environ["LAW_EXPLORER_PAIR_INDEX"] = "0"
        t = time.perf_counter()
        parsed = SPairDataset(root).pairs("test")
        times["parse (index off)"].append(time.perf_counter() - t)
        if pair_index is None:
            continue
        os.environ[pair_index.ENV] = "1"
        for old in pair_index.index_folder().iterdir():
            old.unlink()
        t = time.perf_counter()
        SPairDataset(root).pairs("test")
        times["miss (parse + write)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        hit = SPairDataset(root).pairs("test")
        times["hit"].append(time.perf_counter() - t)
    files = list(pair_index.index_folder().iterdir()) if pair_index is not None else []
    times = {k: v for k, v in times.items() if v}
    report = {
        "engine": str(Path(engine.__file__).parent.parent),
        "dataset": str(root),
        "pairs": len(parsed or []),
        "rounds": args.rounds,
        "seconds": {k: {"median": round(statistics.median(v), 3), "min": round(min(v), 3), "all": [round(x, 3) for x in v]}
                    for k, v in times.items()},
        "speedup_median": round(statistics.median(times["parse (index off)"]) / statistics.median(times["hit"]), 1)
        if "hit" in times else None,
        "index_bytes": files[0].stat().st_size if len(files) == 1 else None,
        "hit_equals_parse": same_pairs(hit, parsed or []) if hit is not None else None,
        "load": round(os.getloadavg()[0], 1),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0 if pair_index is None or (report["hit_equals_parse"] and report["index_bytes"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
