"""Build a Study from the app's wide editor table (``setting, A, C, <benchmarks...>``), with validation."""

from __future__ import annotations

import pandas as pd

from engine.errors import InputError
from engine.study.io import _from_wide, check_study_name, validate_study
from engine.study.model import SETTING_META_COLUMNS, Study


def study_to_editor(study: Study) -> pd.DataFrame:
    """The wide editor table of a shared-A study (per-benchmark A studies are not editable this way)."""
    if study.a_kind != "shared":
        raise InputError(f"study '{study.name}' has one A per benchmark; edit it as a tidy CSV instead")
    wide = study.wide_scores().reset_index()
    base = study.settings[["setting", "A", "C", *SETTING_META_COLUMNS]]
    return base.merge(wide, on="setting", how="left")


def study_from_editor(df: pd.DataFrame, name: str, meta: dict | None = None) -> Study:
    """Validate an edited wide table into a Study (blank score = not measured; blank rows are dropped)."""
    name = check_study_name(name)
    if df is None or len(df.columns) == 0:
        raise InputError("the table is empty")
    frame = df.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.dropna(how="all")
    if "setting" in frame.columns:
        frame = frame[frame["setting"].astype(str).str.strip().ne("") & frame["setting"].notna()]
    if frame.empty:
        raise InputError("the table has no rows")
    text = frame.astype(object).where(frame.notna(), "").astype(str)
    study = _from_wide(text.reset_index(drop=True), name, "table")
    study.meta.update(meta or {})
    validate_study(study)
    return study
