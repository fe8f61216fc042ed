"""``python -m engine law ...``: fit the law on a study, evaluate a law model out of sample, predict a new setting."""

from __future__ import annotations

import argparse

from engine.cli.common import Output, Subparsers, leaf
from engine.errors import InputError
from engine.law import (
    DEFAULT_LEVEL,
    FEATURE_SETS,
    LAW_MODELS,
    evaluate_study,
    fit_study,
    predict_setting,
    response_surface,
)
from engine.law.models import check_level
from engine.law.predict import range_text
from engine.study import load_study


def _fit(args: argparse.Namespace) -> Output:
    if args.random_trials < 1:
        raise InputError(f"--random-trials must be at least 1, got {args.random_trials}")
    report = fit_study(load_study(args.study), seed=args.seed, random_trials=args.random_trials)
    if not report.fits:
        raise InputError(f"no benchmark of study '{args.study}' can be fitted: {'; '.join(f'{b}: {r}' for b, r in report.skipped.items())}")
    r2 = report.r2_table().set_index("benchmark").round(4)
    interpolating = [b for b, fits in report.fits.items() if fits["ac_poly"].interpolating]
    r2["interpolating"] = [b in interpolating for b in r2.index]
    tables = [("R² per benchmark (fractions; loo_rmse in score units)", r2),
              ("Mean R² by group", report.mean_table().set_index("group").round(4))]
    preds = report.predictions_table()
    if len(preds):
        tables.append(("Predicted scores for unscored settings (out of sample: the paper's OLS quadratic fitted on the "
                       "scored settings; ± its leave-one-out RMSE; score units; for a model's jackknife+ interval use "
                       "`law predict`)", preds.round(3)))
    text = f"Law fit on study '{report.study}' ({report.n_settings} settings)"
    if interpolating:
        text += ("\nINTERPOLATING (no more settings than the 6 parameters of the quadratic; in-sample R² is meaningless, "
                 f"use `law evaluate --model linear` or more settings): {', '.join(interpolating)}")
    if report.skipped:
        text += "\nskipped: " + "; ".join(f"{b} ({r})" for b, r in report.skipped.items())
    return Output(data=report.to_dict(), text=text, tables=tables)


def _model_level(args: argparse.Namespace) -> float:
    if args.model not in LAW_MODELS:
        raise InputError(f"unknown law model '{args.model}' (choose from {', '.join(LAW_MODELS)})")
    return check_level(args.level)


def _evaluate(args: argparse.Namespace) -> Output:
    level = _model_level(args)
    ev = evaluate_study(load_study(args.study), args.model, level)
    table = ev.table().set_index("benchmark")
    table = table[["n", "in_sample_r2", "loo_r2", "spearman", "top1_hit", "top3_hit", "coverage", "interval_width",
                   "interpolating"]].round(4)
    means = ", ".join(f"{g} {v:.3f}" for g, v in ev.mean.items())
    text = (f"Out-of-sample evaluation of the '{ev.model}' law on study '{ev.study}' ({ev.n_settings} settings, "
            f"leave one setting out of every benchmark; {level:.0%} jackknife+ intervals)\n"
            f"mean LOO R²: {means}; coverage over all held-out scores {ev.coverage:.3f}; chosen: "
            + ", ".join(f"{k} x{v}" for k, v in ev.chosen.items()))
    if table["interpolating"].any():
        text += "\nINTERPOLATING on: " + ", ".join(table.index[table["interpolating"]]) + " (in-sample R² meaningless)"
    if ev.skipped:
        text += "\nskipped: " + "; ".join(f"{b} ({r})" for b, r in ev.skipped.items())
    data = ev.to_dict()
    data.pop("heldout")
    return Output(data=data, text=text, tables=[("Per benchmark (R² as fractions; interval width in score units)", table)])


def _parse_a(text: str) -> float | dict[str, float]:
    """``--a X`` or, for a study with one A per benchmark, ``--a mme=0.79,ok_vqa=0.80,...``."""
    if "=" not in text:
        try:
            return float(text)
        except ValueError:
            raise InputError(f"--a must be a number or BENCHMARK=VALUE pairs, got {text!r}") from None
    out: dict[str, float] = {}
    for item in text.split(","):
        bench, sep, value = item.partition("=")
        if not sep or not bench.strip():
            raise InputError(f"--a expects BENCHMARK=VALUE pairs separated by commas, got {item!r}")
        try:
            out[bench.strip()] = float(value)
        except ValueError:
            raise InputError(f"--a value for {bench.strip()} is not a number: {value!r}") from None
    return out


def _predict(args: argparse.Namespace) -> Output:
    level = _model_level(args)
    placed = predict_setting(load_study(args.study), _parse_a(args.a), args.c, args.model, level,
                             a_method=args.a_method, c_method=args.c_method, a_definition=args.a_definition,
                             c_protocol=args.c_protocol)
    table = placed.table.set_index("benchmark")[["predicted", "lower", "upper", "clipped", "extrapolated", "interpolating"]]
    table = table.assign(valid_range=[range_text(lo, hi) for lo, hi in
                                      zip(placed.table["range_low"], placed.table["range_high"], strict=True)])
    a_text = f"{placed.A:g}" if isinstance(placed.A, float) else "per benchmark"
    text = (f"Predicted scores at A = {a_text}, C = {placed.C:g} on study '{placed.study}' ('{placed.model}' law, "
            f"{level:.0%} jackknife+ interval, out of sample; score units, clipped to the valid range)")
    for reason in placed.mismatch:
        text += f"\nNOT COMPARABLE: {reason}"
    if placed.flags:
        text += "\nflags: " + ", ".join(placed.flags)
    return Output(data=placed.to_dict(), text=text, tables=[("", table.round(4))])


def _surface(args: argparse.Namespace) -> Output:
    from engine.law import fit_benchmark

    if not 2 <= args.n <= 1000:
        raise InputError(f"--n (grid points per axis) must be between 2 and 1000, got {args.n}")
    study = load_study(args.study)
    fit = fit_benchmark(study, args.benchmark, args.feature_set)
    a_grid, c_grid, z = response_surface(fit, n=args.n)
    data = {"benchmark": args.benchmark, "feature_set": args.feature_set, "a_grid": a_grid.tolist(),
            "c_grid": c_grid.tolist(), "z": z.tolist()}
    return Output(data=data, text=f"{args.n}x{args.n} surface of {args.benchmark} (z[c][a], raw score units); use --format json")


def register(sub: Subparsers) -> None:
    group = sub.add_parser("law", help="Fit the law of vision representation").add_subparsers(dest="cmd", required=True)
    p = leaf(group, "fit", _fit, "Fit the law on every benchmark of a study (R², LOO, random baseline)")
    p.add_argument("--study", required=True, help="paper-v3, a stored study name, or a study file")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-feature baseline")
    p.add_argument("--random-trials", type=int, default=200, help="trials of the random-feature baseline")
    p = leaf(group, "evaluate", _evaluate, "Leave-one-setting-out evaluation of a law model (nested: nothing peeks)")
    _model_args(p)
    p = leaf(group, "predict", _predict, "Predicted score and interval per benchmark for a new setting's A and C")
    _model_args(p)
    p.add_argument("--a", required=True, help="A of the new setting (the study's A method and scale); for a study "
                   "with one A per benchmark: BENCHMARK=VALUE,...")
    p.add_argument("--c", type=float, required=True, help="C of the new setting (the study's C protocol and scale)")
    p.add_argument("--a-method", help="how A was measured; compared with the study's (a mismatch is flagged)")
    p.add_argument("--c-method", help="how C was measured (dataset, protocol); compared with the study's")
    p.add_argument("--a-definition", help="A definition (v3-loglik, v1-clip-ref); compared with the study's")
    p.add_argument("--c-protocol", help="correspondence protocol (default, paper-compat, ...); compared with the study's")
    p = leaf(group, "surface", _surface, "Response surface of one benchmark over normalised A, C")
    p.add_argument("--study", required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--feature-set", default="ac_poly", choices=list(FEATURE_SETS))
    p.add_argument("--n", type=int, default=60)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", required=True, help="paper-v3, a stored study name, or a study file")
    p.add_argument("--model", default="paper", help=f"law model: {', '.join(LAW_MODELS)} (default: paper)")
    p.add_argument("--level", type=float, default=DEFAULT_LEVEL, help="interval level in (0, 1) (default 0.8)")
