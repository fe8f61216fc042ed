"""``python -m engine policy ...``: simulate the AC policy, recommend the next finetune, estimate cost."""

from __future__ import annotations

import argparse
import math

from engine.cli.common import Output, Subparsers, leaf
from engine.errors import InputError
from engine.law import DEFAULT_LEVEL, LAW_MODELS
from engine.policy import (
    DEFAULT_LAW_MODEL,
    METRICS,
    STRATEGIES,
    VARIANTS,
    compare_strategies,
    cost_comparison,
    recall_curve,
    recommend,
    simulate,
)
from engine.study import load_study


def _simulate(args: argparse.Namespace) -> Output:
    result = simulate(load_study(args.study), benchmark=args.benchmark, budget=args.budget, trials=args.trials,
                      seed=args.seed, top=args.top, variant=args.variant, metric=args.metric, strategy=args.strategy,
                      law_model=args.law_model, level=args.level)
    text = (f"AC policy ({args.strategy} order, {args.variant} ranking, {args.metric} recall) on '{args.study}': "
            f"budget {args.budget}, top-{args.top}, {args.trials} trials, seed {args.seed}; "
            f"mean recall {result.mean_recall():.3f}")
    return Output(data=result.to_dict(), text=text, tables=[("", result.table().set_index("benchmark").round(4))])


def _curve(args: argparse.Namespace) -> Output:
    budgets = _budgets(args.budgets)
    curve = recall_curve(load_study(args.study), budgets=budgets, trials=args.trials, seed=args.seed, top=args.top,
                         variant=args.variant, benchmark=args.benchmark, metric=args.metric, strategy=args.strategy,
                         law_model=args.law_model, level=args.level)
    return Output(data={"study": args.study, "trials": args.trials, "seed": args.seed, "top": args.top,
                        "variant": args.variant, "metric": args.metric, "strategy": args.strategy,
                        "curve": curve.to_dict(orient="records")},
                  tables=[(f"recall@{args.top} by budget ({args.strategy} order, {args.variant} ranking, "
                           f"{args.metric} recall)", curve.round(4))])


def _budgets(text: str | None) -> list[int] | None:
    try:
        return [int(b) for b in text.split(",")] if text else None
    except ValueError:
        raise InputError(f"--budgets must be comma-separated integers, got {text!r}") from None


def _compare(args: argparse.Namespace) -> Output:
    budgets = _budgets(args.budgets) or [3, 4]
    comparison = compare_strategies(load_study(args.study), trials=args.trials, seed=args.seed, top=args.top,
                                    variant=args.variant, benchmark=args.benchmark, law_model=args.law_model,
                                    level=args.level, budgets=budgets)
    mean = comparison.mean()
    rows = mean[mean["budget"].isin(budgets)]
    wide = rows.pivot_table(index=["strategy", "metric"], columns="budget", values="recall", sort=False)
    verdicts = {int(k): comparison.verdict(int(k)) for k in budgets}
    data = {"study": args.study, "trials": args.trials, "seed": args.seed, "top": args.top, "variant": args.variant,
            "benchmark": args.benchmark, "law_model": args.law_model, "level": args.level,
            "table": rows.to_dict(orient="records"), "verdict": verdicts}
    text = "\n".join(f"k={k}: {v}" for k, v in verdicts.items())
    return Output(data=data, text=text, tables=[(f"mean Recall@{args.top} by budget", wide.round(3))])


def parse_finetuned(text: str) -> dict[str, float]:
    """``"CLIP336=64.3,DINOv2=58.5"`` -> {"CLIP336": 64.3, "DINOv2": 58.5}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, value = part.rpartition("=")
        if not sep or not name.strip():
            raise InputError(f"--finetuned entry '{part}' is not SETTING=SCORE")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--finetuned score of '{name.strip()}' is not a number: {value!r}") from None
    return out


def _recommend(args: argparse.Namespace) -> Output:
    rec = recommend(load_study(args.study), args.benchmark, parse_finetuned(args.finetuned), top=args.top, seed=args.seed,
                    feature_set="ac_linear" if args.linear else "ac_poly")
    lines = [f"next (region rule): {rec.next_setting} (grid level {rec.level})"]
    if rec.warning:
        lines.append(f"WARNING: {rec.warning}")
    if rec.alternative:
        lines.append(f"alternative (highest prediction): {rec.alternative} ({rec.alternative_predicted:.2f} ± {rec.loo_rmse:.2f})")
    return Output(data=rec.to_dict(), text="\n".join(lines), tables=[("ranking", rec.ranking.round(3))])


def _cost(args: argparse.Namespace) -> Output:
    for option in ("encoder_width", "llm_hidden", "llm_params", "stage1_gpu_hours", "stage2_gpu_hours"):
        value = getattr(args, option)
        if not math.isfinite(value) or value <= 0:
            raise InputError(f"--{option.replace('_', '-')} must be a positive finite number, got {value}")
    data = cost_comparison(encoder_width=args.encoder_width, llm_hidden=args.llm_hidden, llm_params=args.llm_params,
                           n_candidates=args.n_candidates, budget=args.budget, stage1_gpu_hours=args.stage1_gpu_hours,
                           stage2_gpu_hours=args.stage2_gpu_hours)
    text = (f"projector {data['projector_params']:,} vs full finetune {data['full_finetune_params']:,.0f} trainable "
            f"parameters: {100 * data['trainable_savings']:.1f}% fewer\nGPU-hours: all {data['gpu_hours_all_full']:.0f} "
            f"vs policy {data['gpu_hours_policy']:.0f} ({100 * data['gpu_hours_savings']:.1f}% saved)")
    return Output(data=data, text=text)


def _add_trial_args(p: argparse.ArgumentParser) -> None:
    """The options that ``simulate`` and ``curve`` share."""
    p.add_argument("--study", required=True)
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--variant", choices=list(VARIANTS), default="paper")
    p.add_argument("--benchmark", default=None)
    p.add_argument("--metric", default="at-budget", metavar="|".join(METRICS),
                   help="at-budget: the best setting is in the predicted top-T after exactly BUDGET finetunes "
                        "(default); first-hit: it entered the top-T after any budget up to BUDGET (the authors' count)")
    p.add_argument("--strategy", default="region", metavar="|".join(STRATEGIES),
                   help="finetune order: region (the paper's region sampling, default), random, greedy (best "
                        "predicted next), uncertainty (highest upper bound of the law model's interval next)")
    _add_law_model_args(p)


def _add_law_model_args(p: argparse.ArgumentParser) -> None:
    """The law model (and interval level) whose upper bound drives the ``uncertainty`` strategy."""
    p.add_argument("--law-model", dest="law_model", default=DEFAULT_LAW_MODEL, metavar="|".join(LAW_MODELS),
                   help="law model of the uncertainty strategy (default paper)")
    p.add_argument("--level", type=float, default=DEFAULT_LEVEL,
                   help="prediction-interval level of the uncertainty strategy, in (0, 1) (default 0.8)")


def register(sub: Subparsers) -> None:
    group = sub.add_parser("policy", help="The AC policy: simulate, recommend, cost").add_subparsers(dest="cmd", required=True)
    p = leaf(group, "simulate", _simulate, "Recall of the AC policy over seeded region-sampling trials")
    p.add_argument("--budget", type=int, default=3)
    _add_trial_args(p)
    p = leaf(group, "curve", _curve, "Recall of the AC policy for every budget (recall curve)")
    p.add_argument("--budgets", default=None, help="comma-separated budgets (default: 2..number of settings)")
    _add_trial_args(p)
    p = leaf(group, "compare", _compare, "Recall of every finetune-order strategy under both metrics, and a verdict")
    p.add_argument("--study", required=True)
    p.add_argument("--budgets", default="3,4", help="comma-separated budgets to report (default 3,4)")
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--variant", choices=list(VARIANTS), default="paper")
    p.add_argument("--benchmark", default=None)
    _add_law_model_args(p)
    p = leaf(group, "recommend", _recommend, "Which setting to finetune next")
    p.add_argument("--study", required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--finetuned", default="", help='measured scores, e.g. "CLIP336=64.3,DINOv2=58.5"')
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--linear", action="store_true", help="rank with the linear law (A, C) instead of the quadratic")
    p = leaf(group, "cost", _cost, "Trainable parameters and GPU-hours: AC policy vs finetuning everything")
    p.add_argument("--encoder-width", type=int, default=1024)
    p.add_argument("--llm-hidden", type=int, default=4096)
    p.add_argument("--llm-params", type=float, default=6.74e9)
    p.add_argument("--n-candidates", type=int, default=15)
    p.add_argument("--budget", type=int, default=3)
    p.add_argument("--stage1-gpu-hours", type=float, default=16.0)
    p.add_argument("--stage2-gpu-hours", type=float, default=80.0)
