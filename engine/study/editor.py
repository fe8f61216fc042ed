"""The user-facing tables of a study: the wide editor table, the tidy export and the benchmark groups table."""

from __future__ import annotations

import pandas as pd

from engine.benchmarks import check_benchmark_name, group_label, label
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


def study_to_tidy(study: Study) -> pd.DataFrame:
    """``setting, benchmark, A, C, score, group`` + setting metadata: the tidy CSV that re-imports as the study."""
    tidy = study.long.assign(group=study.long["benchmark"].map(study.group_of))
    return tidy.merge(study.settings[["setting", *SETTING_META_COLUMNS]], on="setting", how="left")


def groups_table(study: Study) -> pd.DataFrame:
    """One row per benchmark: ``benchmark, label, group`` (what the Data page edits)."""
    return pd.DataFrame({"benchmark": study.benchmarks, "label": [label(b) for b in study.benchmarks],
                         "group": [study.group_of(b) for b in study.benchmarks]})


def groups_from_table(study: Study, table: pd.DataFrame) -> Study:
    """A copy of ``study`` with the groups of an edited :func:`groups_table` (benchmarks cannot be renamed here)."""
    if table is None or "benchmark" not in table.columns or "group" not in table.columns:
        raise InputError("the groups table needs the columns 'benchmark' and 'group'")
    benches = [check_benchmark_name(str(b)) for b in table["benchmark"]]
    if sorted(benches) != sorted(study.benchmarks):
        raise InputError("benchmarks cannot be added, removed or renamed in the groups table (edit the study instead)")
    groups = {b: ("" if g is None or (isinstance(g, float) and g != g) else str(g)).strip()
              for b, g in zip(benches, table["group"], strict=True)}
    empty = [b for b, g in groups.items() if not g]
    if empty:
        raise InputError(f"benchmark '{empty[0]}' has no group (use e.g. vision, ocr or {group_label('other')})")
    return study.with_groups(groups)
