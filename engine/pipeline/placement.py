"""Placing A and C on a study's law (prediction, conformal interval, flags), the AC policy, and storing the setting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from engine.errors import InputError
from engine.law.predict import flags_note
from engine.pipeline.planning import finite, studies_index, user_study_name

SETTING_METADATA = ("llm", "projector", "recipe", "a_method", "c_method", "source", "notes")


def _study(study: Any) -> Any:
    from engine.study import load_study

    return load_study(study) if isinstance(study, str) else study


def place_on_law(
    study: Any, setting: str, A: float, C: float, model: str = "paper", level: float = 0.8, *, scale: str = "paper",
    a_method: str | None = None, c_method: str | None = None, a_definition: str | None = None,
    c_protocol: str | None = None,
) -> pd.DataFrame:
    """Predicted score per benchmark of a setting with these A and C: the ``model`` law with its ``level``
    jackknife+ interval, clipped to each benchmark's valid range, and the flags that qualify it.

    Columns: ``setting, benchmark, label, predicted, lower, upper, level, model, actual, clipped, extrapolated``
    (outside the A-C convex hull of the study's settings), ``interpolating``, ``method_mismatch`` (A or C measured
    on another scale or with another method than the study's: ``scale`` other than "paper", or recorded methods
    that differ), ``comparable`` (none of extrapolated, interpolating, method_mismatch) and ``range_low``,
    ``range_high``: the valid range clipped to (infinite: an unknown benchmark of unknown scale, not clipped).
    """
    from engine.law import predict_setting

    study = _study(study)
    placed = predict_setting(study, finite(A, "A"), finite(C, "C"), model, level, a_method=a_method, c_method=c_method,
                             a_definition=a_definition, c_protocol=c_protocol)
    table = placed.table.drop(columns=["n"])
    mismatch = bool(placed.mismatch) or scale != "paper"
    scores = study.long[study.long["setting"] == setting].set_index("benchmark")["score"]
    table.insert(0, "setting", setting)
    table["level"] = placed.level
    table["model"] = model
    table["actual"] = [float(scores.get(b, np.nan)) for b in table["benchmark"]]
    table["method_mismatch"] = mismatch
    table.attrs["mismatch"] = placed.mismatch + ([f"A/C measured at {scale} scale"] if scale != "paper" else [])
    table["comparable"] = ~(table["extrapolated"] | table["interpolating"] | table["method_mismatch"])
    return table[["setting", "benchmark", "label", "predicted", "lower", "upper", "level", "model", "actual", "clipped",
                  "extrapolated", "interpolating", "method_mismatch", "comparable", "range_low", "range_high"]]


def placement_flags(table: pd.DataFrame) -> list[str]:
    """The flags raised by a ``place_on_law`` table on any benchmark (stored with a kept setting)."""
    return [f for f in ("method_mismatch", "extrapolated", "clipped", "interpolating") if table[f].any()]


def with_candidate(study: Any, setting: str, A: float, C: float) -> Any:
    """The study (in memory, not stored) with this setting added or updated, without benchmark scores."""
    return _study(study).with_setting(setting, A=finite(A, "A"), C=finite(C, "C"))


def recommend_next(
    study: Any, benchmark: str, finetuned: dict[str, float], setting: str, A: float, C: float,
    flags: list[str] | None = None, feature_set: str = "ac_poly",
) -> Any:
    """``engine.policy.recommend`` on the study with the candidate setting added in memory (a ``Recommendation``).

    A candidate named like an existing setting is renamed ``<name> (new)`` so the study's own row is untouched.
    A candidate with ``flags`` (extrapolated, demo or mismatched A/C, ...) is ranked but never recommended.
    """
    from engine.policy import recommend

    study = _study(study)
    name = setting if setting not in study.setting_names else f"{setting} (new)"
    flagged = {name: list(flags)} if flags else {}
    return recommend(with_candidate(study, name, A, C), benchmark, finetuned, flagged=flagged, feature_set=feature_set)


def _metadata(metadata: dict[str, Any] | None, demo_scale: bool, flags: list[str] | None = None) -> dict[str, str]:
    meta = {k: str(v) for k, v in (metadata or {}).items() if v is not None}
    unknown = sorted(set(meta) - set(SETTING_METADATA))
    if unknown:
        raise InputError(f"unknown setting metadata {unknown} (allowed: {', '.join(SETTING_METADATA)})")
    if demo_scale:
        meta["source"] = "demo-scale (not comparable with paper-scale settings)"
        flags = list(dict.fromkeys([*(flags or []), "method_mismatch"]))
    meta.setdefault("source", "law-explorer pipeline")
    if flags:
        meta["notes"] = "; ".join(x for x in (meta.get("notes", ""), flags_note(flags)) if x)
    return meta


def add_to_study(
    study_name: str, setting: str, A: float, C: float, metadata: dict[str, Any] | None = None,
    *, demo_scale: bool = False, overwrite: bool = False, flags: list[str] | None = None,
) -> str:
    """Store A and C of a setting in a user study; returns the name of the study written to.

    A bundled (read-only) study is first copied to ``<study>-user``; demo-scale scores go into ``<study>-demo``
    (copied from ``study_name`` on first use) so they never sit silently beside paper-scale settings. ``flags``
    (from ``placement_flags``, computed on the paper law when not given; demo scale adds ``method_mismatch``)
    travel with the setting in its ``notes``. A setting that already has A or C there is only replaced with
    ``overwrite``.
    """
    from engine import study as studies

    a_value, c_value = finite(A, "A"), finite(C, "C")
    setting = str(setting).strip()
    if not setting:
        raise InputError("the setting name is empty")
    if flags is None:
        try:
            flags = placement_flags(place_on_law(study_name, setting, a_value, c_value,
                                                 scale="demo" if demo_scale else "paper"))
        except InputError:  # no law to place it on yet: nothing to flag
            flags = []
    meta = _metadata(metadata, demo_scale, flags)
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
