"""CLI group ``sweep``: run C over many encoders (local or on Ray), follow it per encoder, status and cancel."""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from engine.cli.common import Output, Subparsers, leaf, positive_int
from engine.errors import InputError, LawExplorerError


def _table(status: dict) -> pd.DataFrame:
    from engine.sweep import progress_text

    rows = [
        {
            "encoder": r["encoder"],
            "status": r["status"] + (" (reused)" if r["reused"] else ""),
            "progress": progress_text(r),
            "C (PCK@0.10 per image x 100)": None if r["C"] is None else round(r["C"], 2),
            "A": None if r["A"] is None else round(r["A"], 4),
            "images encoded": r["images_encoded"],
            "error": r["error"] or "",
        }
        for r in status["encoders"]
    ]
    frame = pd.DataFrame(rows).set_index("encoder")
    if all(r["a_status"] is None for r in status["encoders"]):  # a C-only sweep: no column of None
        frame = frame.drop(columns="A")
    frame["images encoded"] = frame["images encoded"].astype("Int64")  # a count, never 45.0
    return frame


def _text(status: dict) -> str:
    head = f"sweep {status['id']} ({status['backend']}): {status['status']}"
    if status.get("error"):
        head += f": {status['error']}"
    if status.get("study"):
        from engine.sweep import attached_count

        n = attached_count(status)
        head += (f"; C of {n} of {len(status['encoders'])} encoder(s) attached to study {status['study']!r}" if n
                 else f"; nothing attached to study {status['study']!r} yet")
    return head


_BAR = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}"


def _follow(job_id: str, timeout: float | None) -> dict:
    """Progress bars per encoder on a terminal (stderr) until the sweep job ends."""
    from tqdm import tqdm

    from engine import jobs
    from engine.sweep import EncoderStatus, progress_text, sweep_status

    bars: dict[str, tqdm] = {}
    show = sys.stderr.isatty()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            status = sweep_status(job_id)
            if show:
                for pos, row in enumerate(status["encoders"]):
                    bar = bars.get(row["encoder"])
                    if bar is None:
                        # no count or rate of tqdm's own: a running evaluation counts images, then pairs, so the
                        # postfix (the evaluation's message) says which
                        bar = bars[row["encoder"]] = tqdm(desc=row["encoder"], position=pos, file=sys.stderr,
                                                          dynamic_ncols=True, leave=True, bar_format=_BAR)  # fmt: skip
                    if row["total"] and bar.total != row["total"]:
                        bar.total = row["total"]
                    bar.n = row["total"] if row["status"] == EncoderStatus.DONE and row["total"] else row["done"]
                    words = [str(row["status"]) + (" (reused)" if row["reused"] else ""), progress_text(row)]
                    if row["C"] is not None:
                        words.append(f"C={row['C']:.2f}")
                    if row["error"]:
                        words.append(row["error"])
                    bar.set_postfix_str(" · ".join(w for w in words if w), refresh=False)
                    bar.refresh()
            if status["status"] in jobs.FINISHED:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise InputError(f"sweep {job_id} is still {status['status']} after {timeout:g} s "
                                 f"(it goes on: `sweep status {job_id}`)")  # fmt: skip
            time.sleep(0.5)
    finally:
        for bar in bars.values():
            bar.close()


def _run(args: argparse.Namespace) -> Output:
    from engine.scale.backend import resolve_backend
    from engine.sweep import SweepSpec, submit_sweep

    choice = resolve_backend(args.backend, args.ray_address)
    spec = SweepSpec.from_params({
        "encoders": args.encoders, "dataset": args.dataset, "protocol": args.protocol, "split": args.split,
        "limit": args.limit, "study": args.study, "device": args.device, "precision": args.precision,
        "backend": choice.name, "ray_address": choice.address, "with_a": args.with_a, "llm": args.llm,
        "align_data": args.align_data, "align_images": args.align_images, "gpus_per_run": args.gpus_per_run,
    })  # fmt: skip
    job_id = submit_sweep(spec)
    if args.detach:
        return Output(data={"id": job_id, "sweep": spec.key(), "status": "submitted"},
                      text=f"submitted sweep {job_id} (follow it: python -m engine sweep status {job_id})")
    status = _follow(job_id, args.timeout)
    if status["status"] != "done":
        reason = status.get("error")
        if not reason or reason == status["status"]:
            reason = "finished encoders are kept; run the same command again to resume"
        raise LawExplorerError(f"sweep {job_id} {status['status']}: {reason}")
    return Output(data=status, text=_text(status), tables=[("encoders", _table(status))])


def _status(args: argparse.Namespace) -> Output:
    from engine.sweep import list_sweeps, sweep_status

    if args.id is None:
        rows = list_sweeps()
        table = pd.DataFrame(rows, columns=["id", "status", "progress", "title"])
        return Output(data={"sweeps": rows}, text=None if rows else "no sweeps", tables=[("", table)] if rows else [])
    status = sweep_status(args.id)
    return Output(data=status, text=_text(status), tables=[("encoders", _table(status))])


def _cancel(args: argparse.Namespace) -> Output:
    from engine.sweep import cancel_sweep

    status = cancel_sweep(args.id, wait_s=args.wait)
    return Output(data=status, text=_text(status), tables=[("encoders", _table(status))])


def register(sub: Subparsers) -> None:
    group = sub.add_parser("sweep", help="C of many encoders in one resumable job (local or on a Ray cluster)").add_subparsers(
        dest="cmd", required=True
    )
    p = leaf(group, "run", _run, "Evaluate C of every encoder (one job; finished encoders of the same sweep are reused)")
    p.add_argument("--encoders", required=True, help="comma-separated encoder names (see `encoders list`)")
    p.add_argument("--dataset", required=True, help="builtin or spair:/path/to/SPair-71k")
    p.add_argument("--protocol", default="default", help="protocol name (see `correspondence protocols`)")
    p.add_argument("--split", default="test", help="trn, val or test (default: test)")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N pairs")
    p.add_argument("--study", default=None, help="attach each C to this stored study (setting = encoder name)")
    p.add_argument("--device", default="cpu", help="where encoders run: cpu or cuda (on Ray: one actor per GPU)")
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32", help="forward precision")
    p.add_argument("--backend", choices=["local", "ray"], default=None,
                   help="local (default) or ray; default from LAW_EXPLORER_BACKEND or the Jobs page")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster HOST:PORT (default RAY_ADDRESS; none: a local Ray instance)")
    p.add_argument("--with-a", choices=["demo", "paper"], default=None,
                   help="also train a stage-1 projector and score A-v3 per encoder (needs --study; on this machine, or one "
                        "Ray task per encoder with --backend ray): "
                        "demo (offline demo LLM, smoke scale) or paper (--llm, --align-data, --align-images)")
    p.add_argument("--llm", default=None, help="with --with-a paper: the LLM (e.g. lmsys/vicuna-7b-v1.5)")
    p.add_argument("--align-data", default=None, help="with --with-a paper: LLaVA-558K captions JSON")
    p.add_argument("--align-images", default=None, help="with --with-a paper: the images folder")
    p.add_argument("--gpus-per-run", type=positive_int, default=1,
                   help="processes (GPUs) of each projector training run (accelerate; default 1)")
    p.add_argument("--detach", action="store_true", help="submit and return the sweep id at once")
    p.add_argument("--timeout", type=float, default=None, help="stop following after this many seconds")
    p = leaf(group, "status", _status, "One sweep's per-encoder progress (or list sweeps without an id)")
    p.add_argument("id", nargs="?", default=None, help="sweep id (the job id `sweep run` printed)")
    p = leaf(group, "cancel", _cancel, "Cancel a running sweep (finished encoders are kept and reused)")
    p.add_argument("id", help="sweep id")
    p.add_argument("--wait", type=float, default=15.0, help="seconds to wait before killing the driver (default 15)")
