"""Fit the law on every benchmark of a study: R² of all feature sets, LOO, random baseline, group means."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.benchmarks import PAPER_GROUPS
from engine.law.fit import FEATURE_SETS, MIN_POINTS, BenchmarkFit, features, fit_arrays
from engine.law.ols import SKLEARN_TOL
from engine.study.model import Study

RANDOM_FEATURES = 5  # p of the quadratic in two random features: A, C, A², AC, C²


def random_baseline(y: np.ndarray, rng: np.random.Generator, trials: int) -> np.ndarray:
    """Mean in-sample R² of the same quadratic on random uniform 'A', 'C' (the authors' random control).

    ``y`` is (n,) or (B, n): benchmarks scored on the same settings share the random draws (the features
    do not depend on y), so one batched SVD serves them all. Returns a float or a (B,) array.
    """
    ys = np.atleast_2d(np.asarray(y, dtype=float))
    n = ys.shape[1]
    rand = rng.random((trials, n, 2))
    X = features(rand[..., 0], rand[..., 1], "ac_poly")
    Xc = X - X.mean(axis=1, keepdims=True)
    u, s, _ = np.linalg.svd(Xc, full_matrices=False)
    u = u * (s > SKLEARN_TOL * s[:, :1])[:, None, :]
    yc = ys - ys.mean(axis=1, keepdims=True)
    proj = np.einsum("tnk,bn->btk", u, yc)
    ss_tot = (yc**2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot[:, None] > 0, (proj**2).sum(axis=2) / ss_tot[:, None], np.nan)
    means = np.nanmean(r2, axis=1)
    return float(means[0]) if np.ndim(y) == 1 else means


def random_null(n: int, p: int = RANDOM_FEATURES) -> float:
    """Expected in-sample R² of p random regressors on n points: p / (n - 1) (capped at 1)."""
    return float(min(1.0, p / (n - 1))) if n > 1 else float("nan")


@dataclass
class LawReport:
    """The law over a study: ``fits[benchmark][feature_set]`` plus baselines, predictions and group means."""

    study: str
    n_settings: int
    fits: dict[str, dict[str, BenchmarkFit]]
    random_r2: dict[str, float]
    random_null: dict[str, float]
    unscored: dict[str, pd.DataFrame]
    mean_r2: dict[str, dict[str, float]]
    skipped: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    random_trials: int = 0
    groups: dict[str, list[str]] = field(default_factory=dict)  # the study's group -> benchmarks

    @property
    def benchmarks(self) -> list[str]:
        return list(self.fits)

    def fit(self, benchmark: str, feature_set: str = "ac_poly") -> BenchmarkFit:
        return self.fits[benchmark][feature_set]

    def r2_table(self) -> pd.DataFrame:
        """R² (fractions) with one row per benchmark and one column per feature set, plus baselines."""
        rows = []
        for bench, fits in self.fits.items():
            row = {"benchmark": bench, "n": fits["ac_poly"].n}
            row.update({fs: fit.r2 for fs, fit in fits.items()})
            row.update(loo_r2=fits["ac_poly"].loo_r2, loo_rmse=fits["ac_poly"].loo_rmse,
                       random_r2=self.random_r2[bench], random_null=self.random_null[bench])
            rows.append(row)
        return pd.DataFrame(rows)

    def mean_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.mean_r2).T.rename_axis("group").reset_index()

    def predictions_table(self) -> pd.DataFrame:
        """Predictions (ac_poly) for settings with A and C but no score, with the LOO RMSE as ± band."""
        frames = [df.assign(benchmark=b) for b, df in self.unscored.items() if len(df)]
        cols = ["benchmark", "setting", "A", "C", "predicted", "plus_minus"]
        return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)

    def to_dict(self) -> dict[str, Any]:
        """The CLI JSON of ``law fit`` (R² as fractions)."""
        benchmarks = {}
        for bench, fits in self.fits.items():
            main = fits["ac_poly"]
            benchmarks[bench] = {
                "n": main.n,
                "interpolating": main.interpolating,
                "r2": {fs: fit.r2 for fs, fit in fits.items()},
                "loo_r2": main.loo_r2,
                "loo_rmse": main.loo_rmse,
                "random_r2": self.random_r2[bench],
                "random_r2_null": self.random_null[bench],
                "coef": main.coef_normalized,
                "coef_raw": main.coef_raw,
                "bounds": main.bounds,
                "fitted": main.predictions.to_dict(orient="records"),
                "predictions": self.unscored[bench].to_dict(orient="records"),
            }
        return {"study": self.study, "n_settings": self.n_settings, "benchmarks": benchmarks,
                "mean_r2": self.mean_r2, "skipped": self.skipped, "seed": self.seed, "random_trials": self.random_trials}


def _group_means(fits: dict[str, dict[str, BenchmarkFit]], groups: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Mean R² per group of the study; the paper's ``vision`` and ``ocr`` are always present (NaN when empty)."""
    out = {}
    for group, members in {**{g: [] for g in PAPER_GROUPS}, **groups}.items():
        present = [b for b in members if b in fits]
        out[group] = {fs: (float(np.mean([fits[b][fs].r2 for b in present])) if present else float("nan"))
                      for fs in FEATURE_SETS}
    return out


def fit_study(study: Study, seed: int = 0, random_trials: int = 200) -> LawReport:
    """Fit every benchmark with at least 3 scored settings; benchmarks with fewer go to ``skipped``."""
    rng = np.random.default_rng(seed)
    fits: dict[str, dict[str, BenchmarkFit]] = {}
    random_r2, null, unscored, skipped = {}, {}, {}, {}
    by_mask: dict[bytes, list[tuple[str, np.ndarray]]] = {}
    long = study.long
    all_values = long[["A", "C", "score"]].to_numpy(dtype=float)
    all_settings = long["setting"].to_numpy()
    bench_col = long["benchmark"].to_numpy()
    for bench in study.benchmarks:
        rows = bench_col == bench
        values = all_values[rows]
        setting_names = all_settings[rows]
        has_ac = np.isfinite(values[:, :2]).all(axis=1)
        scored = has_ac & np.isfinite(values[:, 2])
        if scored.sum() < MIN_POINTS:
            skipped[bench] = f"only {int(scored.sum())} settings with A, C and a score (need {MIN_POINTS})"
            continue
        names = setting_names[scored].tolist()
        A, C, y = values[scored, 0], values[scored, 1], values[scored, 2]
        fits[bench] = {fs: fit_arrays(bench, names, A, C, y, fs) for fs in FEATURE_SETS}
        by_mask.setdefault(scored.tobytes(), []).append((bench, y))
        null[bench] = random_null(len(y))
        main = fits[bench]["ac_poly"]
        todo = has_ac & ~np.isfinite(values[:, 2])
        unscored[bench] = pd.DataFrame({
            "setting": setting_names[todo].tolist(), "A": values[todo, 0], "C": values[todo, 1],
            "predicted": main.predict(values[todo, 0], values[todo, 1]), "plus_minus": main.loo_rmse,
        })
    for group in by_mask.values():
        means = random_baseline(np.stack([y for _, y in group]), rng, random_trials)
        random_r2.update({bench: float(m) for (bench, _), m in zip(group, means, strict=True)})
    return LawReport(study=study.name, n_settings=len(study.setting_names), fits=fits, random_r2=random_r2,
                     random_null=null, unscored=unscored, mean_r2=_group_means(fits, study.groups), skipped=skipped,
                     seed=seed, random_trials=random_trials, groups=study.groups)
