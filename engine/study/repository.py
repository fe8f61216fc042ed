"""Studies in the DuckDB store, plus the bundled read-only ``paper-v3`` study; every write is one transaction."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from engine import config, store
from engine.errors import InputError
from engine.study.io import check_study_name, parse_study_file, study_from_json, study_to_json, validate_study
from engine.study.model import Study, make_study

BUNDLED_NAME = "paper-v3"
BUNDLED_DIR = config.DATA_DIR / "paper_v3"

store.register_schema(
    "studies",
    """
    CREATE TABLE IF NOT EXISTS studies (
        name VARCHAR PRIMARY KEY,
        payload VARCHAR NOT NULL,
        n_settings INTEGER,
        benchmarks VARCHAR,
        source VARCHAR,
        content_hash VARCHAR,
        created TIMESTAMP,
        updated TIMESTAMP
    );
    """,
)


@lru_cache(maxsize=1)
def _bundled_cached() -> Study:
    meta = json.loads((BUNDLED_DIR / "study.json").read_text())
    tidy = pd.read_csv(BUNDLED_DIR / "paper_v3.csv")
    names = list(dict.fromkeys(tidy["setting"]))
    benchmarks = list(dict.fromkeys(tidy["benchmark"]))
    scores = tidy.pivot(index="setting", columns="benchmark", values="score").reindex(index=names, columns=benchmarks)
    first = tidy.groupby("setting", sort=False).first().reindex(names)
    defaults = meta.get("setting_defaults", {})
    settings = pd.DataFrame({"setting": names, "A": first["A"].to_numpy(), "C": first["C"].to_numpy(), **defaults})
    study_meta = {k: v for k, v in meta.items() if k != "setting_defaults"}
    study_meta["bundled"] = True
    return make_study(BUNDLED_NAME, settings, scores, meta=study_meta)


def bundled_study() -> Study:
    """The paper's v3 tables (15 settings x 8 benchmarks), shipped in ``data/paper_v3``."""
    study = _bundled_cached()
    return Study(study.name, study.long.copy(), study.settings.copy(), dict(study.meta))


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _stored(name: str) -> Study | None:
    with store.connect(read_only=True) as con:
        row = con.execute("SELECT payload FROM studies WHERE name = ?", [name]).fetchone()
    return None if row is None else study_from_json(row[0], f"stored study '{name}'", name)


def _write(con: Any, study: Study, created: datetime | None = None) -> None:
    now = _now()
    con.execute("DELETE FROM studies WHERE name = ?", [study.name])
    con.execute(
        "INSERT INTO studies VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [study.name, study_to_json(study), len(study.setting_names), ",".join(study.benchmarks),
         str(study.meta.get("source", "")), study.content_hash(), created or now, now],
    )


def save_study(study: Study, overwrite: bool = False) -> Study:
    """Validate and store a study under its name (InputError if it exists and ``overwrite`` is False)."""
    name = check_study_name(study.name)
    if name == BUNDLED_NAME:
        raise InputError(f"'{BUNDLED_NAME}' is the bundled study and cannot be replaced; choose another name")
    validate_study(study)
    with store.connect() as con:
        row = con.execute("SELECT created FROM studies WHERE name = ?", [name]).fetchone()
        if row is not None and not overwrite:
            raise InputError(f"a study named '{name}' already exists (delete it or choose another name)")
        _write(con, study, created=row[0] if row else None)
    return study


def list_studies() -> list[dict[str, Any]]:
    """All studies: the bundled ``paper-v3`` first, then stored ones by name."""
    bundled = bundled_study()
    out = [{"name": BUNDLED_NAME, "n_settings": len(bundled.setting_names), "benchmarks": bundled.benchmarks,
            "source": str(bundled.meta.get("source", "")), "updated": None, "bundled": True}]
    with store.connect(read_only=True) as con:
        rows = con.execute("SELECT name, n_settings, benchmarks, source, updated FROM studies ORDER BY name").fetchall()
    for name, n, benches, source, updated in rows:
        out.append({"name": name, "n_settings": int(n), "benchmarks": [b for b in (benches or "").split(",") if b],
                    "source": source or "", "updated": updated.isoformat(timespec="seconds") if updated else None,
                    "bundled": False})
    return out


def delete_study(name: str) -> None:
    if name == BUNDLED_NAME:
        raise InputError(f"'{BUNDLED_NAME}' is bundled with the app and cannot be deleted")
    with store.connect() as con:
        if con.execute("SELECT 1 FROM studies WHERE name = ?", [name]).fetchone() is None:
            raise InputError(f"no study named '{name}'")
        con.execute("DELETE FROM studies WHERE name = ?", [name])


def load_study(source: str) -> Study:
    """``paper-v3``, the name of a stored study, or a study file path (CSV released/tidy/paper, or JSON export)."""
    source = str(source or "").strip()
    if source == BUNDLED_NAME:
        return bundled_study()
    if source:
        stored = _stored(source)
        if stored is not None:
            return stored
        path = Path(source).expanduser()
        if path.is_file():
            stem = re.sub(r"[^A-Za-z0-9 _.+\-@()]", "_", path.stem).strip(" _.") or "imported"
            return parse_study_file(path, name=check_study_name(stem[:80]))
    names = [s["name"] for s in list_studies()]
    raise InputError(f"unknown study '{source}': not a stored study ({', '.join(names)}) nor an existing file")


def _refuse_bundled(name: str) -> None:
    """The one error for writing to the bundled study: it is read-only."""
    if name == BUNDLED_NAME:
        raise InputError(f"'{BUNDLED_NAME}' is read-only: copy it first (python -m engine study copy {BUNDLED_NAME} NEW_NAME)")


def writable_study(name: str) -> Study:
    """The stored study ``name`` that results can be attached to (InputError for the bundled one, a file or none)."""
    name = str(name or "").strip()
    _refuse_bundled(name)
    stored = _stored(name) if name else None
    if stored is None:
        names = [s["name"] for s in list_studies() if not s["bundled"]]
        known = f"stored studies: {', '.join(names)}" if names else "no study is stored yet"
        raise InputError(f"no stored study named '{name}' ({known}; create one with "
                         f"python -m engine study copy {BUNDLED_NAME} {name or 'NAME'} or study import FILE --name NAME)")
    return stored


def copy_study(src: str, new_name: str) -> Study:
    """Store a copy of any study (e.g. the read-only bundled one) under a new name."""
    study = load_study(src)
    copied = Study(check_study_name(new_name), study.long.copy(), study.settings.copy(),
                   {**study.meta, "bundled": False, "copied_from": study.name})
    return save_study(copied, overwrite=False)


def set_setting_scores(
    study_name: str,
    setting: str,
    *,
    A: float | Mapping[str, float] | None = None,
    C: float | None = None,
    scores: Mapping[str, float] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Study:
    """Attach measured A, C, scores or metadata to one setting of a stored study (created if new), atomically."""
    return _update(study_name, lambda study: study.with_setting(setting, A=A, C=C, scores=scores, **dict(metadata or {})))


def set_groups(study_name: str, groups: Mapping[str, str]) -> Study:
    """Assign benchmarks of a stored study to groups (``{benchmark: group}``), atomically."""
    return _update(study_name, lambda study: study.with_groups(groups))


def _update(study_name: str, change: Callable[[Study], Study]) -> Study:
    """Read, change, validate and write a stored study in one transaction (the bundled one is read-only)."""
    _refuse_bundled(study_name)
    with store.connect() as con:
        row = con.execute("SELECT payload, created FROM studies WHERE name = ?", [study_name]).fetchone()
        if row is None:
            raise InputError(f"no stored study named '{study_name}'")
        updated = change(study_from_json(row[0], f"stored study '{study_name}'", study_name))
        validate_study(updated)
        _write(con, updated, created=row[1])
    return updated
