"""The host side of C matching alone: records, PCK and checkpoints of every chunk, with features too small to cost.

On a GPU the matrix products and arg-maxes of matching are device work; what stays on the host (beside the encoding
loop, competing with it for the GIL) is mapping keypoints to cells and back, building each chunk's predictions,
scoring them and writing the chunk's checkpoint, then PCK after the last chunk. This times exactly that, chunk by
chunk as ``evaluate`` does, on the SPair-sized synthetic set's pairs with random unit features of 8 channels on a
24 x 24 grid (the products are then a few percent of the time), one torch thread.

``--root DIR`` times another copy of the engine (``git archive REV | tar -x -C DIR``), old (records as JSON, PCK
at the end) or new (columns, PCK per chunk, .npz checkpoints) alike.
Usage: python bench/bench_host_matching.py [--root /tmp/before] [--protocol default] [--repeats 3] [--json]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="folder holding the engine/ to time (default: this repository)")
    parser.add_argument("--dataset", default=os.path.join(tempfile.gettempdir(), "bench-pipeline-sets", "spair-18-100-12234"))
    parser.add_argument("--protocol", default="default")
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="passes over all chunks; the fastest is reported")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.root).resolve()) if args.root else str(REPO))
    os.environ.setdefault("LAW_EXPLORER_HOME", tempfile.mkdtemp(prefix="bench-host-home-"))
    import torch

    torch.set_num_threads(1)
    from engine.correspondence import evaluate as ev
    from engine.correspondence.datasets import open_dataset
    from engine.correspondence.features import FeatureGeometry
    from engine.correspondence.protocols import get_protocol
    from engine.encoders.base import CLIP_MEAN, CLIP_STD, Preprocessing

    if not Path(args.dataset, "Layout").is_dir():
        from engine.correspondence.synthetic import write_synthetic_spair

        write_synthetic_spair(Path(args.dataset), 18, 100, 12_234)
    pairs = open_dataset(f"spair:{args.dataset}").pairs("test", None)
    ids = list(dict.fromkeys([p.src_id for p in pairs] + [p.trg_id for p in pairs]))
    bank = torch.nn.functional.normalize(torch.randn(16, args.channels, 24, 24, generator=torch.Generator().manual_seed(0)), dim=1)
    unit = {i: bank[k % 16] for k, i in enumerate(ids)}
    geometry = {i: FeatureGeometry((24, 24), 14.0, 14.0) for i in ids}
    pre = Preprocessing((336, 336), "stretch", CLIP_MEAN, CLIP_STD)
    proto = get_protocol(args.protocol)
    chunks = [pairs[i : i + ev.CHUNK_PAIRS] for i in range(0, len(pairs), ev.CHUNK_PAIRS)]
    columns = hasattr(ev, "summarise_scores")
    best: dict[str, float] | None = None
    pck = None
    for _ in range(args.repeats):
        work = Path(tempfile.mkdtemp(prefix="bench-host-"))
        seconds = {"match_and_records": 0.0, "pck_per_chunk": 0.0, "checkpoints": 0.0, "pck_after_last_chunk": 0.0}
        parts = []
        for index, chunk in enumerate(chunks):
            t = time.perf_counter()
            part = ev.match_records(chunk, unit, geometry, pre, proto)
            seconds["match_and_records"] += time.perf_counter() - t
            t = time.perf_counter()
            if columns:
                part = ev._scored(part, proto)
            seconds["pck_per_chunk"] += time.perf_counter() - t
            t = time.perf_counter()
            if columns:
                ev.write_checkpoint(ev.checkpoint_path(work, "bench", index), part)
            else:
                ev.write_json_atomic(work / f"bench-chunk{index:05d}.json", part)
            seconds["checkpoints"] += time.perf_counter() - t
            parts.append(part)
        t = time.perf_counter()
        if columns:
            pck = ev.summarise_scores([p.scores for p in parts], proto.alphas, proto.averaging)
        else:
            pck = ev.pck_from_predictions([r for p in parts for r in p], proto.alphas, proto.normalizer,
                                          proto.comparison, proto.averaging)  # fmt: skip
        seconds["pck_after_last_chunk"] += time.perf_counter() - t
        seconds["total"] = sum(seconds.values())
        if best is None or seconds["total"] < best["total"]:
            best = seconds
    report = {"engine": str(Path(ev.__file__).parents[2]), "pairs": len(pairs), "chunks": len(chunks),
              "protocol": args.protocol, "channels": args.channels, "columns": columns,
              "seconds": {k: round(v, 3) for k, v in best.items()}, "pck": pck["per_image"], "load": os.getloadavg()[0]}  # fmt: skip
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
