"""The Study value: settings with A, C, benchmark scores and metadata, in a tidy long table."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from engine.benchmarks import check_benchmark_name, check_group_name, default_group, order_groups
from engine.errors import InputError
from engine.hashing import hash_obj

LONG_COLUMNS = ["setting", "benchmark", "A", "C", "score"]
SETTING_META_COLUMNS = ["llm", "projector", "recipe", "a_method", "c_method", "source", "notes"]
SETTINGS_COLUMNS = ["setting", "A", "C", *SETTING_META_COLUMNS]
STUDY_FORMAT_VERSION = 1
GROUPS_KEY = "groups"  # meta key: {benchmark: group} chosen by the user (others get the registry's default)
MAX_ABS_VALUE = 1e9  # |A|, |C|, |score| above this are typos or overflow bait (squares must stay finite)


@dataclass
class Study:
    """A set of vision-representation settings with A, C and benchmark scores.

    ``long``: one row per setting x benchmark (``setting, benchmark, A, C, score``; score NaN = not
    measured). ``settings``: one row per setting (``A`` is the shared A, NaN for per-benchmark A).
    ``meta``: free metadata (``description``, ``provenance``, ``a_kind`` "shared"|"per_benchmark",
    ``groups`` {benchmark: group}, ...).
    """

    name: str
    long: pd.DataFrame
    settings: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def benchmarks(self) -> list[str]:
        return list(dict.fromkeys(self.long["benchmark"].tolist()))

    @property
    def setting_names(self) -> list[str]:
        return self.settings["setting"].tolist()

    @property
    def a_kind(self) -> str:
        return str(self.meta.get("a_kind", "shared"))

    def group_of(self, benchmark: str) -> str:
        """The benchmark's group: the study's choice, else the registry's (``other`` for unknown benchmarks)."""
        chosen = self.meta.get(GROUPS_KEY)
        if isinstance(chosen, Mapping) and isinstance(chosen.get(benchmark), str):
            return str(chosen[benchmark])
        return default_group(benchmark)

    @property
    def groups(self) -> dict[str, list[str]]:
        """Group -> the study's benchmarks in it (the paper's ``vision``, ``ocr`` first, ``other`` last)."""
        members: dict[str, list[str]] = {}
        for bench in self.benchmarks:
            members.setdefault(self.group_of(bench), []).append(bench)
        return {g: members[g] for g in order_groups(members)}

    def with_groups(self, groups: Mapping[str, str]) -> Study:
        """A copy with benchmarks assigned to groups (``{benchmark: group}``; others keep theirs)."""
        benchmarks = self.benchmarks
        known = set(benchmarks)
        chosen = {b: self.group_of(b) for b in benchmarks if self.group_of(b) != default_group(b)}
        for bench, group in groups.items():
            if bench not in known:
                raise InputError(f"group given for unknown benchmark '{str(bench)[:60]}' (study '{self.name}' has: "
                                 f"{', '.join(benchmarks[:20])})")
            chosen[bench] = check_group_name(group)
        chosen = {b: g for b, g in chosen.items() if g != default_group(b)}
        meta = {k: v for k, v in self.meta.items() if k != GROUPS_KEY}
        if chosen:
            meta[GROUPS_KEY] = {b: chosen[b] for b in benchmarks if b in chosen}
        return replace(self, meta=meta)

    def table(self, benchmark: str) -> pd.DataFrame:
        """``setting, A, C, score`` of one benchmark, in settings order."""
        if benchmark not in self.benchmarks:
            raise InputError(f"unknown benchmark '{benchmark}' in study '{self.name}' (has: {', '.join(self.benchmarks)})")
        rows = self.long[self.long["benchmark"] == benchmark]
        return rows[["setting", "A", "C", "score"]].reset_index(drop=True)

    def wide_scores(self) -> pd.DataFrame:
        """Scores with one row per setting and one column per benchmark."""
        wide = self.long.pivot(index="setting", columns="benchmark", values="score")
        return wide.reindex(index=self.setting_names, columns=self.benchmarks)

    def wide_a(self) -> pd.DataFrame:
        """A with one row per setting and one column per benchmark (equal columns for a shared A)."""
        wide = self.long.pivot(index="setting", columns="benchmark", values="A")
        return wide.reindex(index=self.setting_names, columns=self.benchmarks)

    def content_hash(self) -> str:
        """Hash of the numbers and metadata of the settings (not of the study's name)."""
        long = self.long.sort_values(["setting", "benchmark"])
        settings = self.settings.sort_values("setting")
        content: dict[str, Any] = {
            "long": [[_cell(v) for v in row] for row in long[LONG_COLUMNS].itertuples(index=False)],
            "settings": [[_cell(v) for v in row] for row in settings[SETTINGS_COLUMNS].itertuples(index=False)],
            "a_kind": self.a_kind,
        }
        chosen = {b: self.group_of(b) for b in sorted(self.benchmarks) if self.group_of(b) != default_group(b)}
        if chosen:  # only non-default groups, so studies without group choices keep their hash
            content["groups"] = chosen
        return hash_obj(content)

    def with_setting(
        self,
        setting: str,
        A: float | Mapping[str, float] | None = None,
        C: float | None = None,
        scores: Mapping[str, float] | None = None,
        **metadata: Any,
    ) -> Study:
        """A copy with one setting added or updated (A shared float or per-benchmark dict; scores by benchmark)."""
        setting = str(setting).strip()
        if not setting:
            raise InputError("the setting name is empty")
        unknown_meta = set(metadata) - set(SETTING_META_COLUMNS)
        if unknown_meta:
            raise InputError(f"unknown setting metadata {sorted(unknown_meta)} (allowed: {', '.join(SETTING_META_COLUMNS)})")
        settings = self.settings.copy()
        long = self.long.copy()
        if setting not in settings["setting"].values:
            row = {col: (np.nan if col in ("A", "C") else "") for col in SETTINGS_COLUMNS}
            row["setting"] = setting
            settings = pd.concat([settings, pd.DataFrame([row])], ignore_index=True)
            new_rows = pd.DataFrame({"setting": setting, "benchmark": self.benchmarks, "A": np.nan, "C": np.nan, "score": np.nan})
            long = pd.concat([long, new_rows], ignore_index=True) if len(new_rows) else long
        idx = settings.index[settings["setting"] == setting][0]
        mask = long["setting"] == setting
        for key, value in metadata.items():
            settings.loc[idx, key] = "" if value is None else str(value)
        if C is not None:
            c_value = _number(C, f"C of setting '{setting}'")
            settings.loc[idx, "C"] = c_value
            long.loc[mask, "C"] = c_value
        for bench, value in (scores or {}).items():
            if bench not in long["benchmark"].values:
                check_benchmark_name(bench)
                add = settings[["setting", "A", "C"]].assign(benchmark=bench, score=np.nan)
                long = pd.concat([long, add[LONG_COLUMNS]], ignore_index=True)
                mask = long["setting"] == setting
            long.loc[mask & (long["benchmark"] == bench), "score"] = _number(value, f"score of '{setting}' on {bench}", allow_nan=True)
        meta = dict(self.meta)
        if A is not None:
            if isinstance(A, Mapping):
                for bench, value in A.items():
                    if bench not in long["benchmark"].values:
                        raise InputError(f"A given for unknown benchmark '{bench}' of setting '{setting}'")
                    long.loc[mask & (long["benchmark"] == bench), "A"] = _number(value, f"A of '{setting}' on {bench}")
                settings.loc[idx, "A"] = np.nan
                meta["a_kind"] = "per_benchmark"
            else:
                a_value = _number(A, f"A of setting '{setting}'")
                settings.loc[idx, "A"] = a_value
                long.loc[mask, "A"] = a_value
        long = _order_long(long, settings["setting"].tolist())
        return replace(self, long=long, settings=settings.reset_index(drop=True), meta=meta)

    def fit_ready(self, benchmark: str) -> pd.DataFrame:
        """Rows of one benchmark with finite A, C and score (the points the law is fitted on)."""
        names, A, C, score = self.arrays(benchmark)
        return pd.DataFrame({"setting": names, "A": A, "C": C, "score": score})

    def arrays(self, benchmark: str, require_score: bool = True) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """``(settings, A, C, score)`` of one benchmark as arrays, rows with finite A, C (and score) only."""
        bench_col = self.long["benchmark"].to_numpy(dtype=object)
        rows = bench_col == benchmark
        if not rows.any():
            raise InputError(f"unknown benchmark '{benchmark}' in study '{self.name}' (has: {', '.join(self.benchmarks)})")
        values = self.long[["A", "C", "score"]].to_numpy(dtype=float)[rows]
        ok = np.isfinite(values[:, : 3 if require_score else 2]).all(axis=1)
        names = self.long["setting"].to_numpy(dtype=object)[rows][ok].tolist()
        return names, values[ok, 0], values[ok, 1], values[ok, 2]


def _cell(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(value) else round(float(value), 12)
    return value


def _number(value: Any, what: str, allow_nan: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} is not a number: {value!r}") from None
    if math.isnan(number) and allow_nan:
        return number
    if not math.isfinite(number):
        raise InputError(f"{what} is not a finite number: {value!r}")
    if abs(number) > MAX_ABS_VALUE:
        raise InputError(f"{what} is out of range: {value!r} (|value| <= {MAX_ABS_VALUE:g})")
    return number


def _order_long(long: pd.DataFrame, setting_order: list[str]) -> pd.DataFrame:
    benchmarks = list(dict.fromkeys(long["benchmark"].tolist()))
    key_s = {s: i for i, s in enumerate(setting_order)}
    key_b = {b: i for i, b in enumerate(benchmarks)}
    order = np.lexsort((long["benchmark"].map(key_b).to_numpy(), long["setting"].map(key_s).to_numpy()))
    return long.iloc[order][LONG_COLUMNS].reset_index(drop=True)


def make_study(
    name: str,
    settings: pd.DataFrame,
    scores: pd.DataFrame,
    a_per_benchmark: pd.DataFrame | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Study:
    """Assemble a Study from a settings table, wide scores (index setting) and optional wide per-benchmark A."""
    settings = settings.copy()
    for col in SETTINGS_COLUMNS:
        if col not in settings.columns:
            settings[col] = np.nan if col in ("A", "C") else ""
    for col in SETTING_META_COLUMNS:
        settings[col] = settings[col].fillna("").astype(str)
    settings["A"] = settings["A"].astype(float)
    settings["C"] = settings["C"].astype(float)
    settings = settings[SETTINGS_COLUMNS].reset_index(drop=True)
    names = settings["setting"].tolist()
    benchmarks = list(scores.columns)
    scores = scores.reindex(index=names)
    m = len(benchmarks)  # long rows: settings outer, benchmarks inner (vectorised: linear in the rows)
    if a_per_benchmark is None:
        a_values = np.repeat(settings["A"].to_numpy(dtype=float), m)
    else:
        a_values = a_per_benchmark.reindex(index=names, columns=benchmarks).to_numpy(dtype=float).ravel()
    long = pd.DataFrame({
        "setting": np.repeat(np.asarray(names, dtype=object), m),
        "benchmark": np.tile(np.asarray(benchmarks, dtype=object), len(names)),
        "A": a_values,
        "C": np.repeat(settings["C"].to_numpy(dtype=float), m),
        "score": scores[benchmarks].to_numpy(dtype=float).ravel() if m else np.empty(0),
    }, columns=LONG_COLUMNS)
    full_meta = {"a_kind": "shared" if a_per_benchmark is None else "per_benchmark", "version": STUDY_FORMAT_VERSION}
    full_meta.update(meta or {})
    if a_per_benchmark is not None:
        full_meta["a_kind"] = "per_benchmark"
    return Study(name=name, long=long, settings=settings, meta=full_meta)
