"""``python -m engine law ...``: fit the law on a study."""

from __future__ import annotations

import argparse

from engine.cli.common import Output, leaf
from engine.errors import InputError
from engine.law import FEATURE_SETS, fit_study, response_surface
from engine.study import load_study


def _fit(args: argparse.Namespace) -> Output:
    if args.random_trials < 1:
        raise InputError(f"--random-trials must be at least 1, got {args.random_trials}")
    report = fit_study(load_study(args.study), seed=args.seed, random_trials=args.random_trials)
    if not report.fits:
        raise InputError(f"no benchmark of study '{args.study}' can be fitted: {'; '.join(f'{b}: {r}' for b, r in report.skipped.items())}")
    r2 = report.r2_table().set_index("benchmark").round(4)
    tables = [("R² per benchmark (fractions; loo_rmse in score units)", r2),
              ("Mean R² by group", report.mean_table().set_index("group").round(4))]
    preds = report.predictions_table()
    if len(preds):
        tables.append(("Predicted scores for unscored settings (± LOO RMSE)", preds.round(3)))
    text = f"Law fit on study '{report.study}' ({report.n_settings} settings)"
    if report.skipped:
        text += "\nskipped: " + "; ".join(f"{b} ({r})" for b, r in report.skipped.items())
    return Output(data=report.to_dict(), text=text, tables=tables)


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


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("law", help="Fit the law of vision representation").add_subparsers(dest="cmd", required=True)
    p = leaf(group, "fit", _fit, "Fit the law on every benchmark of a study (R², LOO, random baseline)")
    p.add_argument("--study", required=True, help="paper-v3, a stored study name, or a study file")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-feature baseline")
    p.add_argument("--random-trials", type=int, default=200, help="trials of the random-feature baseline")
    p = leaf(group, "surface", _surface, "Response surface of one benchmark over normalised A, C")
    p.add_argument("--study", required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--feature-set", default="ac_poly", choices=list(FEATURE_SETS))
    p.add_argument("--n", type=int, default=60)
