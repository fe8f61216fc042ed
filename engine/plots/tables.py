"""Tables the law pages draw and export, derived from a LawReport and its Study (pure pandas, no streamlit)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.benchmarks import benchmark_info, group_label, label
from engine.law import (
    FEATURE_SET_LABELS,
    FEATURE_SETS,
    BenchmarkFit,
    Evaluation,
    LawReport,
    UnscoredPredictions,
    minmax,
    response_surface,
)
from engine.law.predict import range_text
from engine.policy.recommend import Recommendation
from engine.study import BUNDLED_NAME, Study

# Headline R² (x100, mean over the group's benchmarks) as printed in the paper, per study it reproduces.
PRINTED_HEADLINE: dict[str, dict[str, float]] = {
    BUNDLED_NAME: {"vision": 94.06, "ocr": 83.85},  # arXiv 2408.16357 v3, 15 settings
}
VARIANT_OF_FEATURE_SET = {"ac_poly": "AC", "a_poly": "A", "c_poly": "C", "ac_linear": "AC", "a_linear": "A",
                          "c_linear": "C"}
TERM_LABELS = {"1": "intercept", "A": "A", "C": "C", "A^2": "A²", "AC": "A·C", "C^2": "C²"}


def feature_set_label(name: str) -> str:
    return FEATURE_SET_LABELS.get(name, name)


def score_unit(benchmark: str, scores: Iterable[float] | None = None) -> str:
    """Unit suffix of a benchmark's score: ``%`` for accuracies, ``""`` for point scores (MME) and fractions; an
    unknown benchmark's unit is read from its ``scores``."""
    return benchmark_info(benchmark, scores).unit


@dataclass
class Headline:
    reproduced: dict[str, float]  # group -> mean R² (fraction)
    printed: dict[str, float]  # group -> printed mean R² (x100), when the study reproduces a paper table
    members: dict[str, list[str]]  # group -> benchmark labels


def headline(report: LawReport, study_name: str) -> Headline:
    """Mean R² of the law (ac_poly) per group of the study that has a fitted benchmark, with the paper's printed
    values if any."""
    members = {g: [label(b) for b in names if b in report.fits] for g, names in report.groups.items()}
    members = {g: names for g, names in members.items() if names}
    return Headline(reproduced={g: report.mean_r2[g]["ac_poly"] for g in members},
                    printed=PRINTED_HEADLINE.get(study_name, {}), members=members)


def r2_by_benchmark(report: LawReport) -> pd.DataFrame:
    """Long table ``benchmark, variant, r2`` of the quadratic in A and C, A alone, C alone, and random features."""
    rows = []
    for bench, fits in report.fits.items():
        for fs, variant in (("ac_poly", "AC"), ("a_poly", "A"), ("c_poly", "C")):
            rows.append((label(bench), variant, fits[fs].r2))
        rows.append((label(bench), "random", report.random_r2[bench]))
    return pd.DataFrame(rows, columns=["benchmark", "variant", "r2"])


def r2_comparison(report: LawReport, benchmark: str) -> pd.DataFrame:
    """One benchmark's R² and LOO R² for every feature set (``feature_set, variant, r2, loo_r2, loo_rmse``)."""
    fits = report.fits[benchmark]
    return pd.DataFrame([
        {"feature_set": fs, "variant": VARIANT_OF_FEATURE_SET.get(fs, fs), "r2": fits[fs].r2,
         "loo_r2": fits[fs].loo_r2, "loo_rmse": fits[fs].loo_rmse}
        for fs in FEATURE_SETS if fs in fits
    ])


def fit_quality(report: LawReport, feature_set: str) -> pd.DataFrame:
    """Per benchmark: n, R², LOO R², LOO RMSE of one feature set, with the random baseline and null expectation."""
    return pd.DataFrame([
        {"benchmark": label(b), "n": f[feature_set].n, "r2": f[feature_set].r2, "loo_r2": f[feature_set].loo_r2,
         "loo_rmse": f[feature_set].loo_rmse, "random_r2": report.random_r2[b], "null_r2": report.random_null[b]}
        for b, f in report.fits.items()
    ])


def coefficients(fit: BenchmarkFit) -> pd.DataFrame:
    """The fitted terms: coefficient on normalised A, C, score and in raw units (score per unit of A, C)."""
    rows = []
    for term in ("1", *FEATURE_SETS[fit.feature_set]):
        norm_key = "intercept" if term == "1" else term
        rows.append({"term": TERM_LABELS.get(term, term), "normalised": fit.coef_normalized.get(norm_key, 0.0),
                     "raw units": fit.coef_raw.get(term, 0.0)})
    # A quadratic in normalised A, C expands to every raw term; list the ones the feature set lacks
    for term in ("A", "C", "A^2", "AC", "C^2"):
        if term not in FEATURE_SETS[fit.feature_set] and abs(fit.coef_raw.get(term, 0.0)) > 0:
            rows.append({"term": TERM_LABELS[term], "normalised": 0.0, "raw units": fit.coef_raw[term]})
    return pd.DataFrame(rows)


def unscored_count(study: Study, benchmark: str | None = None) -> int:
    """How many (setting, benchmark) pairs have A and C but no score (on ``benchmark`` only, when given)."""
    long = study.long if benchmark is None else study.long[study.long["benchmark"] == benchmark]
    return int((long["A"].notna() & long["C"].notna() & long["score"].isna()).sum())


def unscored_table(predictions: UnscoredPredictions) -> pd.DataFrame:
    """``predict_unscored`` as a researcher reads it: the prediction of the chosen law model with its
    out-of-sample interval (level and model in the column names), the valid range it was clipped to, and flags."""
    t = predictions.table
    level, model = f"{predictions.level:.0%}", predictions.model
    flags = [
        "; ".join(text for flag, text in (("extrapolated", "outside the A–C hull: extrapolation"),
                                          ("clipped", "clipped to the valid range"),
                                          ("interpolating", "interpolating fit: interval unreliable")) if row[flag])
        for _, row in t.iterrows()
    ]
    return pd.DataFrame({
        "setting": t["setting"], "benchmark": t["label"], "A": t["A"], "C": t["C"],
        f"predicted score ('{model}' law, out of sample)": t["predicted"],
        f"{level} interval: lower (jackknife+)": t["lower"], f"{level} interval: upper (jackknife+)": t["upper"],
        "valid range (score units)": [range_text(lo, hi) for lo, hi in zip(t["range_low"], t["range_high"], strict=True)],
        "flags": flags,
    })


def fitted_predictions(fit: BenchmarkFit) -> pd.DataFrame:
    """A fit's settings with their in-sample prediction, the prediction while held out and the residual, labelled."""
    return fit.predictions.rename(columns={
        "score": "measured score", "predicted": "predicted in-sample (fit on all)",
        "loo_predicted": "predicted while held out (out of sample)", "residual": "residual in-sample",
    })


def evaluation_table(evaluation: Evaluation) -> pd.DataFrame:
    """Out-of-sample figures per benchmark (``Evaluation.table``) under the benchmarks' labels and with each column
    saying what it measures: held-out R², Spearman ρ, top-1/top-3 hits, the intervals' coverage and width."""
    pct = f"{evaluation.level:.0%}"
    table = evaluation.table()
    table["benchmark"] = table["benchmark"].map(label)
    return table.rename(columns={
        "n": "settings", "loo_r2": "R² out of sample (leave one setting out)", "loo_rmse": "RMSE out of sample",
        "in_sample_r2": "R² in-sample (fit on all)", "spearman": "Spearman ρ out of sample",
        "top1_hit": "true best predicted best (held out)", "top3_hit": "true best in predicted top 3 (held out)",
        "coverage": f"coverage of the {pct} intervals", "interval_width": f"mean width of the {pct} intervals (score units)",
        "interpolating": "interpolating (n ≤ parameters)",
    })


def group_means_text(means: dict[str, float]) -> str:
    """``{'vision': 0.70, 'ocr': 0.46}`` as "vision 0.700, OCR-type 0.460" (groups under their labels)."""
    return ", ".join(f"{group_label(g)} {v:.3f}" for g, v in means.items())


def placement_columns(model: str, level: float) -> dict[str, str]:
    """Column names of ``placement_table``: the prediction and its interval say model, level and method."""
    pct = f"{level:.0%}"
    return {"predicted": f"predicted score ('{model}' law)",
            "lower": f"{pct} interval: lower (jackknife+, out of sample)",
            "upper": f"{pct} interval: upper (jackknife+, out of sample)", "actual": "measured score",
            "clipped": "clipped to the valid range", "extrapolated": "outside the study's A-C hull (extrapolated)",
            "interpolating": "interpolating (n ≤ parameters)",
            "method_mismatch": "A or C measured differently (not comparable)"}


def placement_table(placed: pd.DataFrame) -> pd.DataFrame:
    """A candidate's predictions (``pipeline.place_on_law``) as a researcher reads them: benchmark labels, the
    interval named by its level and method, flags in words, the valid range; model and level in the headers."""
    model, level = str(placed["model"].iloc[0]), float(placed["level"].iloc[0])
    out = placed.drop(columns=["benchmark", "model", "level", "comparable", "range_low", "range_high"])
    out = out.rename(columns={"label": "benchmark"} | placement_columns(model, level))
    out["valid range"] = [range_text(lo, hi) for lo, hi in zip(placed["range_low"], placed["range_high"], strict=True)]
    return out


def heldout_table(heldout: pd.DataFrame, model: str, level: float) -> pd.DataFrame:
    """Held-out rows of ``Evaluation.heldout`` labelled with the model, the interval's level and method."""
    pct = f"{level:.0%}"
    return heldout.rename(columns={
        "score": "measured score", "predicted": f"predicted while held out ('{model}' law)",
        "lower": f"{pct} interval: lower (jackknife+)", "upper": f"{pct} interval: upper (jackknife+)",
        "inside": "inside the interval",
    })


RANKING_COLUMNS = {"measured": "measured score", "rank_score": "ranking score (measured if finetuned, else predicted)",
                   "plus_minus": "± RMSE out of sample (leave one finetuned setting out)"}


def recommendation_method(rec: Recommendation, unit: str = "") -> str:
    """One sentence saying how a recommendation's predictions were made: which law, fitted on what, on which
    scale, and what its ± band is."""
    law = "quadratic in A and C (the paper's law)" if rec.feature_set == "ac_poly" else "linear law in A and C"
    n = int(rec.ranking["finetuned"].sum())
    return (f"Predicted: OLS {law} refitted on the {n} finetuned settings — in-sample for them, out of sample for "
            f"the others; ± its leave-one-out RMSE (out of sample). {label(rec.benchmark)} score units"
            f"{unit and f' ({unit})'}.")


def recommendation_table(rec: Recommendation) -> pd.DataFrame:
    """A recommendation's ranking with labels that say which law predicted and what the ± band is."""
    law = "quadratic" if rec.feature_set == "ac_poly" else "linear law"
    return rec.ranking.rename(columns={"predicted": f"predicted score (OLS {law} refitted on the finetuned settings)",
                                       **RANKING_COLUMNS})


def surface(fit: BenchmarkFit, n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """The response surface grid and the fitted settings at their normalised (A, C)."""
    a_grid, c_grid, z = response_surface(fit, n)
    b = fit.bounds
    preds = fit.predictions
    points = pd.DataFrame({"setting": preds["setting"], "A_norm": minmax(preds["A"].to_numpy(), b["A_min"], b["A_max"]),
                           "C_norm": minmax(preds["C"].to_numpy(), b["C_min"], b["C_max"]), "score": preds["score"]})
    return a_grid, c_grid, z, points


def settings_ac(study: Study) -> pd.DataFrame:
    """``setting, A, C`` per setting; a per-benchmark A is averaged over benchmarks."""
    settings = study.settings[["setting", "A", "C"]].copy()
    if settings["A"].isna().any():
        mean_a = study.long.groupby("setting")["A"].mean()
        settings["A"] = settings["A"].fillna(settings["setting"].map(mean_a))
    return settings.dropna(subset=["A", "C"]).reset_index(drop=True)


def cost_table(cost: dict) -> pd.DataFrame:
    """GPU-hours and trainable parameters of finetuning every candidate vs the AC policy (``cost_comparison``)."""
    return pd.DataFrame([
        {"method": f"finetune all {cost['n_candidates']}", "GPU-hours (estimate)": cost["gpu_hours_all_full"],
         "trainable parameters per candidate": cost["full_finetune_params"]},
        {"method": f"AC policy (A for all, finetune {cost['budget']})", "GPU-hours (estimate)": cost["gpu_hours_policy"],
         "trainable parameters per candidate": cost["projector_params"]},
    ])


def study_tidy(study: Study) -> pd.DataFrame:
    """The study as a tidy table (``setting, benchmark, A, C, score, group`` + setting metadata), re-importable."""
    from engine.study import study_to_tidy

    return study_to_tidy(study)


def studies_overview(entries: list[dict]) -> pd.DataFrame:
    """``engine.study.list_studies()`` as a table."""
    return pd.DataFrame([
        {"study": e["name"], "settings": e["n_settings"], "benchmarks": len(e["benchmarks"]),
         "kind": "bundled (read-only)" if e.get("bundled") else "stored", "source": e.get("source", ""),
         "updated": e.get("updated") or ""}
        for e in entries
    ])
