"""Placing A and C on a study's fitted law (prediction + LOO band), the AC policy, and storing the setting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from engine.errors import InputError
from engine.pipeline.planning import finite, studies_index, user_study_name

MIN_FIT_SETTINGS = 3  # a leave-one-out error needs at least 2 settings left to fit
SETTING_METADATA = ("llm", "projector", "recipe", "a_method", "c_method", "source", "notes")


def _study(study: Any) -> Any:
    from engine.study import load_study

    return load_study(study) if isinstance(study, str) else study


def place_on_law(study: Any, setting: str, A: float, C: float, feature_set: str = "ac_poly") -> pd.DataFrame:
    """Predicted score per benchmark of a setting with these A and C, with the leave-one-out RMSE band.

    Columns: ``setting, benchmark, label, predicted, loo_rmse, loo_rmse_band_low, loo_rmse_band_high, actual,
    extrapolated`` (A or C outside the range of the settings the law was fitted on).
    """
    from engine.benchmarks import label
    from engine.law import fit_benchmark

    study = _study(study)
    a_value, c_value = finite(A, "A"), finite(C, "C")
    rows = []
    for bench in study.benchmarks:
        table = study.table(bench)
        if np.isfinite(table[["A", "C", "score"]].to_numpy(dtype=float)).all(axis=1).sum() < MIN_FIT_SETTINGS:
            continue
        fit = fit_benchmark(study, bench, feature_set=feature_set)
        predicted = float(np.asarray(fit.predict(a_value, c_value), dtype=float).ravel()[0])
        rmse = float(fit.loo_rmse)
        actual = table.loc[table["setting"] == setting, "score"].dropna()
        b = fit.bounds
        outside = not (b["A_min"] <= a_value <= b["A_max"] and b["C_min"] <= c_value <= b["C_max"])
        rows.append({"setting": setting, "benchmark": bench, "label": label(bench), "predicted": predicted,
                     "loo_rmse": rmse, "loo_rmse_band_low": predicted - rmse, "loo_rmse_band_high": predicted + rmse,
                     "actual": float(actual.iloc[0]) if len(actual) else np.nan, "extrapolated": outside})
    if not rows:
        raise InputError(f"study '{study.name}' has no benchmark with enough scored settings to fit the law")
    return pd.DataFrame(rows)


def with_candidate(study: Any, setting: str, A: float, C: float) -> Any:
    """The study (in memory, not stored) with this setting added or updated, without benchmark scores."""
    return _study(study).with_setting(setting, A=finite(A, "A"), C=finite(C, "C"))


def recommend_next(study: Any, benchmark: str, finetuned: dict[str, float], setting: str, A: float, C: float) -> Any:
    """``engine.policy.recommend`` on the study with the candidate setting added in memory (a ``Recommendation``).

    A candidate named like an existing setting is renamed ``<name> (new)`` so the study's own row is untouched.
    """
    from engine.policy import recommend

    study = _study(study)
    name = setting if setting not in study.setting_names else f"{setting} (new)"
    return recommend(with_candidate(study, name, A, C), benchmark, finetuned)


def _metadata(metadata: dict[str, Any] | None, demo_scale: bool) -> dict[str, str]:
    meta = {k: str(v) for k, v in (metadata or {}).items() if v is not None}
    unknown = sorted(set(meta) - set(SETTING_METADATA))
    if unknown:
        raise InputError(f"unknown setting metadata {unknown} (allowed: {', '.join(SETTING_METADATA)})")
    if demo_scale:
        meta["source"] = "demo-scale (not comparable with paper-scale settings)"
    meta.setdefault("source", "law-explorer pipeline")
    return meta


def add_to_study(
    study_name: str, setting: str, A: float, C: float, metadata: dict[str, Any] | None = None,
    *, demo_scale: bool = False, overwrite: bool = False,
) -> str:
    """Store A and C of a setting in a user study; returns the name of the study written to.

    A bundled (read-only) study is first copied to ``<study>-user``; demo-scale scores go into ``<study>-demo``
    (copied from ``study_name`` on first use) so they never sit silently beside paper-scale settings. A setting
    that already has A or C there is only replaced with ``overwrite``.
    """
    from engine import study as studies

    a_value, c_value = finite(A, "A"), finite(C, "C")
    setting = str(setting).strip()
    if not setting:
        raise InputError("the setting name is empty")
    meta = _metadata(metadata, demo_scale)
    target = user_study_name(study_name, demo_scale)
    exists = target in studies_index()
    if not overwrite:
        known = studies.load_study(target if exists else study_name).settings.set_index("setting")
        if setting in known.index and known.loc[setting, ["A", "C"]].notna().any():
            raise InputError(f"setting '{setting}' already has A/C in study '{target}'; choose another name")
    if target != study_name and not exists:
        studies.copy_study(study_name, target)
    studies.set_setting_scores(target, setting, A=a_value, C=c_value, metadata=meta)
    return target
