"""``python -m engine study ...``: list, show, import, copy, export, delete studies and add lmms-eval results."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from engine.atomic import write_text_atomic
from engine.benchmarks import parse_group_assignments
from engine.cli.common import Output, Subparsers, leaf
from engine.errors import InputError, first_line
from engine.export import csv_safe
from engine.study import (
    FORMATS,
    copy_study,
    delete_study,
    list_studies,
    load_study,
    parse_study_file,
    save_study,
    scores_from_lmms_eval,
    set_groups,
    set_setting_scores,
    study_to_json,
    study_to_tidy,
)
from engine.study.repository import BUNDLED_NAME


def _summary(study) -> dict:
    return {"name": study.name, "n_settings": len(study.setting_names), "benchmarks": study.benchmarks,
            "settings": study.setting_names, "a_kind": study.a_kind, "content_hash": study.content_hash(),
            "groups": study.groups}


def _list(args: argparse.Namespace) -> Output:
    rows = list_studies()
    table = pd.DataFrame([{**r, "benchmarks": len(r["benchmarks"])} for r in rows]).set_index("name")
    return Output(data={"studies": rows}, tables=[("studies", table)])


def _show(args: argparse.Namespace) -> Output:
    study = load_study(args.name)
    data = {**_summary(study), "meta": study.meta, "settings_table": study.settings.to_dict(orient="records"),
            "long": study.long.to_dict(orient="records")}
    wide = study.settings[["setting", "A", "C"]].set_index("setting").join(study.wide_scores())
    return Output(data=data, text=f"study '{study.name}' ({study.a_kind} A)", tables=[("", wide)])


def _import(args: argparse.Namespace) -> Output:
    fmt = args.format if args.format not in ("text", "json") else args.input_format  # `--format released` is the input format
    groups = parse_group_assignments(args.group)
    study = parse_study_file(args.path, name=args.name, fmt=fmt)
    if groups:
        study = study.with_groups(groups)
    save_study(study, overwrite=args.overwrite)
    return Output(data=_summary(study), text=f"imported study '{study.name}': {len(study.setting_names)} settings, "
                  f"{len(study.benchmarks)} benchmarks")


def _export(args: argparse.Namespace) -> Output:
    study = load_study(args.name)
    text = study_to_json(study) if args.to == "json" else csv_safe(study_to_tidy(study)).to_csv(index=False)
    if args.out:
        out = Path(args.out)
        try:  # written whole or not at all
            write_text_atomic(out, text)
        except OSError as exc:
            raise InputError(f"cannot write {args.out}: {exc.strerror or first_line(exc)}") from None
        return Output(data={"name": study.name, "path": args.out}, text=f"wrote {args.out}")
    return Output(data={"name": study.name, "content": text}, text=text.rstrip("\n"))


def _copy(args: argparse.Namespace) -> Output:
    study = copy_study(args.src, args.new_name)
    return Output(data=_summary(study), text=f"copied to '{study.name}'")


def _delete(args: argparse.Namespace) -> Output:
    delete_study(args.name)
    return Output(data={"deleted": args.name}, text=f"deleted study '{args.name}'")


def _groups(args: argparse.Namespace) -> Output:
    study = set_groups(args.name, parse_group_assignments(args.set)) if args.set else load_study(args.name)
    table = pd.DataFrame([{"group": g, "benchmarks": ", ".join(b)} for g, b in study.groups.items()]).set_index("group")
    return Output(data={"name": study.name, "groups": study.groups,
                        "benchmark_groups": {b: study.group_of(b) for b in study.benchmarks}},
                  text=f"groups of study '{study.name}'", tables=[("", table)])


def _add_lmms_eval(args: argparse.Namespace) -> Output:
    if args.study == BUNDLED_NAME:
        set_setting_scores(args.study, args.setting)  # raises the copy-it-first message
    scores = scores_from_lmms_eval(args.results)
    load_study(args.study)  # unknown study -> one clear error before writing
    study = set_setting_scores(args.study, args.setting, scores=scores)
    return Output(data={**_summary(study), "setting": args.setting, "scores": scores},
                  text=f"set {len(scores)} scores of '{args.setting}' in '{study.name}': "
                  + ", ".join(f"{b}={v:g}" for b, v in scores.items()))


def register(sub: Subparsers) -> None:
    group = sub.add_parser("study", help="Manage studies (settings with A, C and scores)").add_subparsers(dest="cmd", required=True)
    leaf(group, "list", _list, "List studies (the bundled paper-v3 and stored ones)")
    p = leaf(group, "show", _show, "Show one study")
    p.add_argument("name")
    # `--format auto|released|tidy|paper|json` names the file format (text output)
    p = leaf(group, "import", _import, "Import a study file (CSV released/tidy/paper, or JSON export)",
             formats=["text", "json", *[f for f in FORMATS if f != "json"]],
             format_help="output format text|json, or the input file format auto|released|tidy|paper")
    p.add_argument("path")
    p.add_argument("--name", required=True)
    p.add_argument("--input-format", dest="input_format", choices=list(FORMATS), default="auto",
                   help="file format (default: auto-detect)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--group", action="append", default=None, metavar="BENCH=GROUP[,BENCH=GROUP...]",
                   help="put benchmarks in groups, e.g. gqa=vision,docvqa_val=ocr (repeatable; default: the "
                        "registry's group, 'other' for unknown benchmarks)")
    p = leaf(group, "export", _export, "Export a study as JSON (re-importable) or tidy CSV")
    p.add_argument("name")
    p.add_argument("--to", choices=["json", "csv"], default="json")
    p.add_argument("--out", default=None)
    p = leaf(group, "copy", _copy, "Copy a study (e.g. the bundled paper-v3) under a new name")
    p.add_argument("src")
    p.add_argument("new_name")
    p = leaf(group, "groups", _groups, "Show a study's benchmark groups, or set them with --set")
    p.add_argument("name")
    p.add_argument("--set", action="append", default=None, metavar="BENCH=GROUP[,BENCH=GROUP...]",
                   help="assign benchmarks of a stored study to groups, e.g. gqa=vision")
    p = leaf(group, "delete", _delete, "Delete a stored study")
    p.add_argument("name")
    p = leaf(group, "add-lmms-eval", _add_lmms_eval, "Set a setting's scores from an lmms-eval results.json")
    p.add_argument("--study", required=True)
    p.add_argument("--setting", required=True)
    p.add_argument("results")
