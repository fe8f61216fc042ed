"""Study importers (released v1 CSV, tidy CSV, paper v3 table, JSON export) and validation."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.benchmarks import BENCHMARKS, check_benchmark_name, check_group_name
from engine.errors import InputError, first_line
from engine.study.model import (
    GROUPS_KEY,
    LONG_COLUMNS,
    MAX_ABS_VALUE,
    SETTING_META_COLUMNS,
    SETTINGS_COLUMNS,
    STUDY_FORMAT_VERSION,
    Study,
    make_study,
)

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_ROWS = 20_000  # rows of a study file (settings x benchmarks in the tidy layout); the paper has 120
MAX_CELLS = 500_000
FORMATS = ("auto", "released", "tidy", "paper", "json")
JSON_KIND = "law-explorer-study"
_MISSING = {"", "nan", "na", "n/a", "none", "null"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+\-@()/]{0,79}$")


def check_study_name(name: str) -> str:
    """A study name: 1-80 characters, letters/digits and ``_.+-@()/`` or spaces."""
    name = str(name or "").strip()
    if not _NAME_RE.match(name):
        raise InputError(f"invalid study name {name!r}: use 1-80 letters, digits, spaces or _ . + - @ ( ) /")
    return name


def read_text(data: bytes | str | Path, what: str = "file") -> tuple[str, str]:
    """Decode an uploaded/imported file to text, rejecting missing, empty, huge and binary files."""
    label = what
    if isinstance(data, Path) or (isinstance(data, str) and not any(ch in data for ch in "\n,{")):
        path = Path(data)
        label = str(path)
        if not path.is_file():
            raise InputError(f"{label}: file not found")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"{label}: file is larger than {MAX_FILE_BYTES // 2**20} MiB")
        raw = path.read_bytes()
    elif isinstance(data, bytes):
        raw = data
    else:
        raw = str(data).encode()
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(f"{label}: file is larger than {MAX_FILE_BYTES // 2**20} MiB")
    if not raw.strip():
        raise InputError(f"{label}: file is empty")
    if b"\x00" in raw[:8192]:
        raise InputError(f"{label}: binary file, expected CSV or JSON text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{label}: not UTF-8 text, expected CSV or JSON") from None
    return text, label


def parse_study_file(data: bytes | str | Path, name: str, fmt: str = "auto") -> Study:
    """Parse and validate a study file (``released``, ``tidy``, ``paper`` CSV or ``json`` export); writes nothing."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    name = check_study_name(name)
    text, label = read_text(data)
    if fmt == "json" or (fmt == "auto" and text.lstrip().startswith("{")):
        study = study_from_json(text, label, name)
    else:
        frame = _read_csv(text, label)
        if fmt == "auto":
            fmt = detect_format(frame, label)
        parser = {"released": _from_released, "tidy": _from_tidy, "paper": _from_wide}[fmt]
        study = parser(frame, name, label)
        study.meta.setdefault("imported_format", fmt)
    study.meta.setdefault("source", Path(label).name if label != "file" else "uploaded file")
    validate_study(study)
    return study


def detect_format(frame: pd.DataFrame, label: str = "file") -> str:
    cols = set(frame.columns)
    if {"setting", "benchmark", "score"} <= cols:
        return "tidy"
    if "model" in cols and "corres" in cols:
        return "released"
    if "setting" in cols and ({"A_loglik", "A"} & cols) and ({"C_pck10", "C"} & cols):
        return "paper"
    raise InputError(
        f"{label}: unrecognised columns {sorted(cols)[:8]}: expected tidy (setting, benchmark, A, C, score), "
        "released (model, <bench>, <bench>_average, corres) or paper (setting, A_loglik, C_pck10, <bench>...)"
    )


def _read_csv(text: str, label: str) -> pd.DataFrame:
    try:
        # Leading '#' lines are the provenance header of Law Explorer's own CSV exports; a '#' later in the
        # file is data (a setting may be called '#2 best').
        lines = text.splitlines()
        start = 0
        while start < len(lines) and lines[start].lstrip().startswith("#"):
            start += 1
        rows = sum(1 for line in lines[start + 1:] if line.strip())
        if rows > MAX_ROWS:  # before any parsing: a count of lines is cheap
            check_size(rows, 1, label)
        body = "\n".join(lines[start:])
        frame = pd.read_csv(io.StringIO(body), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError) as exc:
        raise InputError(f"{label}: not a readable CSV ({first_line(exc)})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise InputError(f"{label}: no data rows")
    check_size(len(frame), len(frame.columns), label)
    seen: set[str] = set()
    for col in frame.columns:
        if col in seen:
            raise InputError(f"{label}: duplicate column '{col}'")
        seen.add(col)
    return frame


def check_size(rows: int, columns: int, label: str) -> None:
    """Refuse tables beyond ``MAX_ROWS`` rows or ``MAX_CELLS`` cells before any per-cell work."""
    if rows > MAX_ROWS:
        raise InputError(f"{label}: {rows:,} rows; a study holds at most {MAX_ROWS:,} (settings x benchmarks)")
    if rows * max(columns, 1) > MAX_CELLS:
        raise InputError(f"{label}: {rows:,} rows x {columns} columns; a study holds at most {MAX_CELLS:,} cells")


def to_number(value: Any, label: str, column: str, row: int, setting: str, required: bool) -> float:
    """One numeric cell; blank/NA is NaN unless ``required``; text or inf raises naming file, column and row."""
    where = f"{label}: column '{column}', row {row} (setting '{setting}')"
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip().lower() in _MISSING:
        if required:
            raise InputError(f"{where}: missing value")
        return float("nan")
    if isinstance(value, bool):
        raise InputError(f"{where}: boolean {value!r} is not a number")
    try:
        number = float(value) if isinstance(value, int | float) else float(str(value).strip())
    except (ValueError, OverflowError):
        raise InputError(f"{where}: non-numeric value {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{where}: value {str(value)[:40]!r} is not finite")
    if abs(number) > MAX_ABS_VALUE:
        raise InputError(f"{where}: value {str(value)[:40]!r} is out of range (|value| <= {MAX_ABS_VALUE:g})")
    return number


def _settings_column(frame: pd.DataFrame, column: str, label: str) -> list[str]:
    names = [str(v).strip() for v in frame[column]]
    for i, setting in enumerate(names):
        if not setting:
            raise InputError(f"{label}: empty setting name in column '{column}', row {i + 2}")
    seen: set[str] = set()
    for i, setting in enumerate(names):
        if setting in seen:
            raise InputError(f"{label}: duplicate setting '{setting}' (row {i + 2})")
        seen.add(setting)
    return names


def _numeric_column(frame: pd.DataFrame, col: str, names: list[str], label: str, required: bool) -> np.ndarray:
    """One text column -> floats in one vectorised pass; the first bad cell raises via ``to_number``."""
    text = frame[col].astype(str).str.strip()
    missing = text.str.lower().isin(_MISSING).to_numpy()
    numbers = np.array(pd.to_numeric(text.where(~missing, None), errors="coerce"), dtype=float)
    with np.errstate(invalid="ignore"):
        bad = ~missing & ~(np.isfinite(numbers) & (np.abs(numbers) <= MAX_ABS_VALUE))
    if required:
        bad |= missing
    if bad.any():
        i = int(np.argmax(bad))
        to_number(frame[col].iat[i], label, col, i + 2, names[i], required)  # raises with file, column, row, value
        raise InputError(f"{label}: column '{col}', row {i + 2} (setting '{names[i]}'): "
                         f"non-numeric value {str(frame[col].iat[i])[:40]!r}")
    numbers[missing] = np.nan
    return numbers


def _numeric_block(frame: pd.DataFrame, names: list[str], columns: list[str], label: str, required: bool) -> pd.DataFrame:
    values = {col: _numeric_column(frame, col, names, label, required) for col in columns}
    return pd.DataFrame(values, index=names)


def _benchmark_column(column: str, label: str) -> str:
    """A column read as a benchmark: any lmms-eval-style task name (unknown ones get group ``other``)."""
    try:
        return check_benchmark_name(column)
    except InputError:
        raise InputError(f"{label}: column '{str(column)[:60]}' is neither a benchmark name (letters, digits, _ . + -) "
                         f"nor metadata ({', '.join(SETTING_META_COLUMNS)})") from None


def _unknown_column_holds_scores(frame: pd.DataFrame, column: str, label: str) -> None:
    """A column that is not a registered benchmark is read as a new benchmark only if it holds numbers."""
    for i, value in enumerate(frame[column]):
        text = str(value).strip()
        if text.lower() in _MISSING:
            continue
        try:
            float(text)
        except ValueError:
            raise InputError(f"{label}: unknown column '{column}': not a registered benchmark nor metadata "
                             f"({', '.join(SETTING_META_COLUMNS)}), and {text[:40]!r} in row {i + 2} is not a score") from None


def _unknown_benchmark(column: str, label: str) -> InputError:
    return InputError(f"{label}: unknown column '{column}' (benchmarks: {', '.join(BENCHMARKS)}; metadata: {', '.join(SETTING_META_COLUMNS)})")


def _from_released(frame: pd.DataFrame, name: str, label: str) -> Study:
    """The authors' released v1 table: A = ``<bench>_average`` per benchmark, C = ``corres``."""
    names = _settings_column(frame, "model", label)
    benchmarks = [b for b in BENCHMARKS if b in frame.columns]
    # any other benchmark of the table: a score column with its A column `<bench>_average`
    benchmarks += [c for c in frame.columns if c not in BENCHMARKS and f"{c}_average" in frame.columns
                   and c not in ("model", "corres", "geo_corres")]
    if not benchmarks:
        raise InputError(f"{label}: no benchmark columns (expected some of {', '.join(BENCHMARKS)})")
    for bench in benchmarks:
        _benchmark_column(bench, label)
    for col in frame.columns:
        known = col in ("model", "corres", "geo_corres") or any(col == b or col.startswith(b + "_") for b in benchmarks)
        if not known and not col.startswith("vizwiz_vqa_"):
            raise _unknown_benchmark(col, label)
    for bench in benchmarks:
        if f"{bench}_average" not in frame.columns:
            raise InputError(f"{label}: missing column '{bench}_average' (the A of {bench})")
    scores = _numeric_block(frame, names, benchmarks, label, required=False)
    a_block = _numeric_block(frame, names, [f"{b}_average" for b in benchmarks], label, required=True)
    a_block.columns = benchmarks
    c_values = _numeric_block(frame, names, ["corres"], label, required=True)["corres"]
    settings = pd.DataFrame({"setting": names, "A": np.nan, "C": c_values.to_numpy(), "source": "released v1 table"})
    meta = {"a_method": "v1 projected-token cosine vs CLIP (mean of 224/336 references), per benchmark", "c_method": "SPair-71k PCK@0.10 (corres)"}
    return make_study(name, settings, scores, a_per_benchmark=a_block, meta=meta)


def _from_wide(frame: pd.DataFrame, name: str, label: str) -> Study:
    """The paper's v3 layout (``setting, A_loglik, C_pck10, <bench>...``) or the editor's ``setting, A, C, ...``."""
    a_col = "A_loglik" if "A_loglik" in frame.columns else "A"
    c_col = "C_pck10" if "C_pck10" in frame.columns else "C"
    for col in ("setting", a_col, c_col):
        if col not in frame.columns:
            raise InputError(f"{label}: missing column '{col}'")
    names = _settings_column(frame, "setting", label)
    benchmarks = []
    for col in frame.columns:
        if col in ("setting", a_col, c_col) or col in SETTING_META_COLUMNS:
            continue
        if col not in BENCHMARKS:
            _benchmark_column(col, label)
            _unknown_column_holds_scores(frame, col, label)
        benchmarks.append(col)
    if not benchmarks:
        raise InputError(f"{label}: no benchmark columns (expected some of {', '.join(BENCHMARKS)})")
    ac = _numeric_block(frame, names, [a_col, c_col], label, required=True)
    scores = _numeric_block(frame, names, benchmarks, label, required=False)
    settings = pd.DataFrame({"setting": names, "A": ac[a_col].to_numpy(), "C": ac[c_col].to_numpy()})
    for col in SETTING_META_COLUMNS:
        if col in frame.columns:
            settings[col] = [str(v).strip() for v in frame[col]]
    return make_study(name, settings, scores)


def _tidy_groups(frame: pd.DataFrame, bench_col: pd.Series, label: str) -> dict[str, str]:
    """The ``group`` column of a tidy CSV: one group per benchmark (blank rows take the others' group)."""
    group_col = frame["group"].astype(str).str.strip()
    given = group_col != ""
    first_row: dict[tuple[str, str], int] = {}
    for i, key in zip(np.flatnonzero(given.to_numpy()), zip(bench_col[given], group_col[given], strict=True), strict=True):
        first_row.setdefault(key, int(i) + 2)
    out: dict[str, tuple[str, int]] = {}
    for (bench, group), row in first_row.items():
        try:
            check_group_name(group)
        except InputError as exc:
            raise InputError(f"{label}: column 'group', row {row}: {exc}") from None
        if bench in out:
            (g0, r0), (g1, r1) = sorted([out[bench], (group, row)], key=lambda x: x[1])
            raise InputError(f"{label}: benchmark '{bench}' is in group '{g0}' (row {r0}) and '{g1}' (row {r1}); "
                             "a benchmark has one group")
        out[bench] = (group, row)
    return {b: g for b, (g, _) in out.items()}


def _from_tidy(frame: pd.DataFrame, name: str, label: str) -> Study:
    """Tidy CSV: ``setting, benchmark, A, C, score`` (+ optional ``group`` of the benchmark and metadata
    columns), one row per pair."""
    for col in ("setting", "benchmark", "A", "C", "score"):
        if col not in frame.columns:
            raise InputError(f"{label}: missing column '{col}'")
    allowed = [*LONG_COLUMNS, "group", *SETTING_META_COLUMNS]
    for col in frame.columns:
        if col not in allowed:
            raise InputError(f"{label}: unknown column '{col}' (tidy columns: {', '.join(allowed)})")
    settings_col = frame["setting"].astype(str).str.strip()
    bench_col = frame["benchmark"].astype(str).str.strip()
    empty = (settings_col == "").to_numpy()
    if empty.any():
        raise InputError(f"{label}: empty setting name, row {int(np.argmax(empty)) + 2}")
    for bench in dict.fromkeys(bench_col[~bench_col.isin(BENCHMARKS)]):  # unknown benchmarks: any valid name
        try:
            check_benchmark_name(bench)
        except InputError as exc:
            row = int(np.argmax((bench_col == bench).to_numpy())) + 2
            raise InputError(f"{label}: row {row}: {exc}") from None
    dup = pd.DataFrame({"s": settings_col, "b": bench_col}).duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        raise InputError(f"{label}: duplicate row for setting '{settings_col.iat[i]}' and benchmark '{bench_col.iat[i]}' (row {i + 2})")
    bench_groups = _tidy_groups(frame, bench_col, label) if "group" in frame.columns else {}
    row_names = settings_col.tolist()
    rows = pd.DataFrame({
        "setting": settings_col.to_numpy(), "benchmark": bench_col.to_numpy(),
        "A": _numeric_column(frame, "A", row_names, label, required=True),
        "C": _numeric_column(frame, "C", row_names, label, required=True),
        "score": _numeric_column(frame, "score", row_names, label, required=False),
        "row": np.arange(len(frame)),
    })
    long = rows
    names = list(dict.fromkeys(long["setting"]))
    benchmarks = list(dict.fromkeys(long["benchmark"]))
    groups = long.groupby("setting", sort=False)
    c_counts = groups["C"].nunique()
    if (c_counts > 1).any():
        setting = c_counts.index[(c_counts > 1).to_numpy()][0]
        raise InputError(f"{label}: setting '{setting}' has different C values across rows (C is one number per setting)")
    shared = bool((groups["A"].nunique() == 1).all())
    scores = long.pivot(index="setting", columns="benchmark", values="score").reindex(index=names, columns=benchmarks)
    a_wide = long.pivot(index="setting", columns="benchmark", values="A").reindex(index=names, columns=benchmarks)
    if a_wide.isna().any().any():
        missing = a_wide.stack(future_stack=True)
        setting, bench = missing[missing.isna()].index[0]
        raise InputError(f"{label}: no row for setting '{setting}' and benchmark '{bench}' (give a row with score empty if not measured)")
    first = long.groupby("setting", sort=False).first().reindex(names)
    settings = pd.DataFrame({"setting": names, "A": first["A"].to_numpy() if shared else np.nan, "C": first["C"].to_numpy()})
    for col in SETTING_META_COLUMNS:
        if col in frame.columns:
            by_setting = frame.assign(setting=frame["setting"].str.strip()).groupby("setting", sort=False)[col].first()
            settings[col] = [str(by_setting.get(s, "")).strip() for s in names]
    study = make_study(name, settings, scores, a_per_benchmark=None if shared else a_wide)
    return study.with_groups(bench_groups) if bench_groups else study


def study_to_json(study: Study) -> str:
    """The JSON export of a study (re-importable with ``parse_study_file``)."""
    def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
        out = []
        for rec in frame.to_dict(orient="records"):
            out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()})
        return out

    payload = {"kind": JSON_KIND, "version": STUDY_FORMAT_VERSION, "name": study.name, "meta": study.meta,
               "settings": records(study.settings[SETTINGS_COLUMNS]), "long": records(study.long[LONG_COLUMNS])}
    return json.dumps(payload, indent=1, default=str)


def _json_numbers(records: list[dict], col: str, table: str, label: str, allow_null: bool) -> np.ndarray:
    """Strict numbers of one JSON column: int/float (never bool or text), finite, |x| <= MAX_ABS_VALUE; null -> NaN."""
    out = np.empty(len(records))
    for i, rec in enumerate(records):
        value = rec.get(col)
        where = f"{label}: {table}[{i}] field '{col}'"
        if value is None:
            if not allow_null:
                raise InputError(f"{where}: missing value")
            out[i] = np.nan
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{where}: {str(value)[:40]!r} is not a number")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number) or abs(number) > MAX_ABS_VALUE:
            raise InputError(f"{where}: value {str(value)[:40]} is out of range (finite, |value| <= {MAX_ABS_VALUE:g})")
        out[i] = number
    return out


def _json_records(payload: dict, key: str, columns: list[str], label: str) -> list[dict]:
    records = payload.get(key)
    if not isinstance(records, list):
        raise InputError(f"{label}: field '{key}' must be a list of objects")
    check_size(len(records), len(columns), label)
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise InputError(f"{label}: {key}[{i}] is not an object")
        for col in columns:
            if col not in rec:
                raise InputError(f"{label}: {key}[{i}] lacks field '{col}'")
    return records


def study_from_json(text: str, label: str = "json", name: str | None = None) -> Study:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{label}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise InputError(f"{label}: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more than 4300 digits
        raise InputError(f"{label}: invalid JSON ({first_line(exc, 120)})") from None
    if not isinstance(payload, dict) or payload.get("kind") != JSON_KIND:
        raise InputError(f"{label}: not a Law Explorer study export (missing \"kind\": \"{JSON_KIND}\")")
    if not isinstance(payload.get("meta") or {}, dict):
        raise InputError(f"{label}: field 'meta' must be an object")
    setting_records = _json_records(payload, "settings", ["setting", "A", "C"], label)
    long_records = _json_records(payload, "long", LONG_COLUMNS, label)
    for table, records in (("settings", setting_records), ("long", long_records)):
        for field in ("setting", "benchmark") if table == "long" else ("setting",):
            for i, rec in enumerate(records):
                if not isinstance(rec[field], str) or not rec[field].strip():
                    raise InputError(f"{label}: {table}[{i}] field '{field}': {str(rec[field])[:40]!r} is not a name")
    settings = pd.DataFrame({"setting": [rec["setting"] for rec in setting_records]})
    for col in ("A", "C"):
        settings[col] = _json_numbers(setting_records, col, "settings", label, allow_null=True)
    for col in SETTING_META_COLUMNS:
        values = [rec.get(col) for rec in setting_records]
        bad = next((v for v in values if v is not None and not isinstance(v, str | int | float)), None)
        if bad is not None:
            raise InputError(f"{label}: settings field '{col}': {str(bad)[:40]!r} is not text")
        settings[col] = ["" if v is None else str(v) for v in values]
    long = pd.DataFrame({"setting": [rec["setting"] for rec in long_records],
                         "benchmark": [rec["benchmark"] for rec in long_records]})
    for col in ("A", "C", "score"):
        long[col] = _json_numbers(long_records, col, "long", label, allow_null=True)
    meta = dict(payload.get("meta") or {})
    return Study(name=name or str(payload.get("name", "imported")), long=long[LONG_COLUMNS].copy(),
                 settings=settings[SETTINGS_COLUMNS].copy(), meta=meta)


def _validate_groups(study: Study, where: str) -> None:
    benchmarks = set(study.benchmarks)
    for bench in benchmarks:
        if bench not in BENCHMARKS:
            try:
                check_benchmark_name(bench)
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from None
    chosen = study.meta.get(GROUPS_KEY)
    if chosen is None:
        return
    if not isinstance(chosen, dict):
        raise InputError(f"{where}: meta '{GROUPS_KEY}' must map benchmark names to group names")
    for bench, group in chosen.items():
        if bench not in benchmarks:
            raise InputError(f"{where}: group given for unknown benchmark '{str(bench)[:60]}'")
        try:
            check_group_name(group)
        except InputError as exc:
            raise InputError(f"{where}: benchmark '{bench}': {exc}") from None


def validate_study(study: Study, min_settings: int = 3) -> None:
    """Raise InputError when the study cannot be fitted or is inconsistent (one message naming the problem)."""
    where = f"study '{study.name}'"
    names = study.settings["setting"].tolist()
    if not names:
        raise InputError(f"{where} has no settings")
    seen: set[str] = set()
    for setting in names:  # linear: a set, never names.count in a loop
        if setting in seen:
            raise InputError(f"{where}: duplicate setting '{setting}'")
        seen.add(setting)
    if not study.benchmarks:
        raise InputError(f"{where} has no benchmarks")
    _validate_groups(study, where)
    if study.long.duplicated(["setting", "benchmark"]).any():
        row = study.long[study.long.duplicated(["setting", "benchmark"])].iloc[0]
        raise InputError(f"{where}: duplicate entry for setting '{row.setting}' and benchmark '{row.benchmark}'")
    unknown = set(study.long["setting"]) - set(names)
    if unknown:
        raise InputError(f"{where}: scores for setting '{sorted(unknown)[0]}' which is not in the settings table")
    values = study.long[["A", "C", "score"]].to_numpy(dtype=float)
    if np.isinf(values).any():
        raise InputError(f"{where}: infinite value in A, C or score")
    usable = study.long.dropna(subset=["A", "C", "score"])
    n_usable = usable["setting"].nunique()
    if n_usable < min_settings:
        raise InputError(f"{where}: too few settings to fit: {n_usable} with A, C and a score (need at least {min_settings})")
    for bench, group in usable.groupby("benchmark", sort=False):
        if len(group) < 2:
            continue
        if group["A"].nunique() == 1:
            raise InputError(f"{where}: A is constant ({group['A'].iat[0]:g}) over the settings scored on {bench}; min-max normalisation needs a range")
        if group["C"].nunique() == 1:
            raise InputError(f"{where}: C is constant ({group['C'].iat[0]:g}) over the settings scored on {bench}; min-max normalisation needs a range")
