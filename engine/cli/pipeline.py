"""``python -m engine pipeline ...``: plan, launch and follow the scoring of an encoder; place A and C on the law."""

from __future__ import annotations

import argparse
import time

import pandas as pd

from engine import pipeline
from engine.cli.common import Output, leaf
from engine.errors import InputError
from engine.jobs import JobStatus
from engine.pipeline import StepState
from engine.study.repository import BUNDLED_NAME


def _plan_from(args: argparse.Namespace) -> pipeline.Plan:
    return pipeline.plan(
        args.encoder, args.study, a_definition=args.a_definition, c_protocol=args.c_protocol, dataset=args.dataset,
        demo=not args.no_demo, setting=args.setting, limit=args.limit, llm=args.llm, align_data=args.align_data,
        align_images=args.align_images, n_captions=args.n_captions,
    )


def _status_table(states: list[pipeline.StepStatus]) -> pd.DataFrame:
    return pd.DataFrame([{"step": s.title, "state": s.state, "value": s.value, "job": s.job_id or "",
                          "progress": f"{s.progress[0]}/{s.progress[1]}" if s.progress[1] else "",
                          "error": s.error or ""} for s in states])


def _plan(args: argparse.Namespace) -> Output:
    p = _plan_from(args)
    text = "\n".join([f"{p.encoder} -> setting '{p.setting}' ({p.scale}-scale), stored in '{p.target_study}'",
                      *(f"! {w}" for w in p.warnings)])
    return Output(data=p.to_dict(), text=text, tables=[("", p.table())])


def _launch(args: argparse.Namespace) -> Output:
    p = _plan_from(args)
    ids = pipeline.launch(p)
    deadline = time.monotonic() + args.wait
    while args.wait and time.monotonic() < deadline:
        states = pipeline.status(p)
        if all(s.state in (StepState.STORED, JobStatus.DONE, StepState.NOT_NEEDED, StepState.UNAVAILABLE) for s in states) or any(
            s.state in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED) for s in states
        ):
            break
        ids = sorted(set(ids) | set(pipeline.launch(p, resume_failed=False)))  # submits A scoring once its projector is done
        time.sleep(2.0)
    states = pipeline.status(p)
    data = {"jobs": ids, "steps": [s.__dict__ for s in states], "scale": p.scale}
    return Output(data=data, text=f"active jobs: {', '.join(ids) or 'none'}", tables=[("", _status_table(states))])


def _status(args: argparse.Namespace) -> Output:
    states = pipeline.status(_plan_from(args))
    return Output(data=[s.__dict__ for s in states], tables=[("", _status_table(states))])


def _place(args: argparse.Namespace) -> Output:
    table = pipeline.place_on_law(args.study, args.setting or "candidate", args.A, args.C, args.model, args.level,
                                  scale="demo" if args.demo_scale else "paper")
    flags = pipeline.placement_flags(table)
    text = f"flags: {', '.join(flags)}" if flags else None
    return Output(data=table.to_dict(orient="records"), text=text,
                  tables=[(f"Predicted score per benchmark ('{args.model}' law, {args.level:.0%} interval)", table)])


def _add(args: argparse.Namespace) -> Output:
    meta = dict(item.split("=", 1) for item in args.meta or [] if "=" in item)
    if len(meta) != len(args.meta or []):
        raise InputError("--meta expects KEY=VALUE")
    written = pipeline.add_to_study(args.study, args.setting, args.A, args.C, meta, demo_scale=args.demo_scale)
    return Output(data={"study": written, "setting": args.setting}, text=f"stored '{args.setting}' in study '{written}'")


def _plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoder", required=True, help="registry name (see `encoders list`), upload:<hash> included")
    p.add_argument("--study", default=BUNDLED_NAME)
    p.add_argument("--a-definition", choices=list(pipeline.A_DEFINITIONS), default="v3-loglik")
    p.add_argument("--c-protocol", default="default")
    p.add_argument("--dataset", default="builtin", help="builtin or spair:/path/to/SPair-71k")
    p.add_argument("--limit", type=int, default=None, help="first N pairs only (demo-scale C)")
    p.add_argument("--no-demo", action="store_true", help="real A-v3: needs --llm, --align-data, --align-images")
    p.add_argument("--llm")
    p.add_argument("--align-data", help="LLaVA-Pretrain JSON")
    p.add_argument("--align-images", help="its image folder")
    p.add_argument("--n-captions", type=int, default=100)
    p.add_argument("--setting", default=None, help="setting name (default: the encoder name)")


def _setting_ac_args(p: argparse.ArgumentParser, setting_required: bool, demo_help: str) -> None:
    """The study, setting, measured A and C of ``place`` and ``add``."""
    p.add_argument("--study", default=BUNDLED_NAME)
    p.add_argument("--setting", required=setting_required, default=None)
    p.add_argument("--A", type=float, required=True)
    p.add_argument("--C", type=float, required=True)
    p.add_argument("--demo-scale", action="store_true", help=demo_help)


def register(sub) -> None:
    group = sub.add_parser("pipeline", help="Score an encoder end to end (C, A, the law)").add_subparsers(
        dest="cmd", required=True)
    _plan_args(leaf(group, "plan", _plan, "Which of C and A are stored and which jobs are missing"))
    p = leaf(group, "launch", _launch, "Submit the missing jobs as background jobs (idempotent)")
    _plan_args(p)
    p.add_argument("--wait", type=float, default=0.0, help="follow the jobs up to this many seconds")
    _plan_args(leaf(group, "status", _status, "Each step's state, job and progress"))
    p = leaf(group, "place", _place, "Predicted score per benchmark of given A and C on a study's law")
    _setting_ac_args(p, setting_required=False, demo_help="A/C measured at demo scale: flagged as not comparable")
    p.add_argument("--model", default="paper", help="law model (see `law evaluate`; default paper)")
    p.add_argument("--level", type=float, default=0.8, help="interval level in (0, 1) (default 0.8)")
    p = leaf(group, "add", _add, "Store A and C of a setting in a user study (bundled studies are copied first)")
    _setting_ac_args(p, setting_required=True, demo_help="goes into <study>-demo")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE", help="llm, projector, recipe, a_method, ...")
