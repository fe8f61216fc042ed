"""The table of C evaluations in DuckDB, per-category tables, and attaching a C score to a study setting."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from engine import store
from engine.correspondence.result_types import CEvaluation
from engine.errors import InputError

store.register_schema(
    "correspondence_results",
    """
    CREATE TABLE IF NOT EXISTS corr_results (
        id VARCHAR PRIMARY KEY,
        encoder VARCHAR NOT NULL,
        weights_hash VARCHAR,
        dataset VARCHAR,
        dataset_key VARCHAR,
        split VARCHAR,
        limit_pairs INTEGER,
        protocol_name VARCHAR,
        protocol_hash VARCHAR,
        pck_json VARCHAR NOT NULL,
        stats_json VARCHAR,
        created TIMESTAMP
    );
    """,
)


def record_result(result: CEvaluation) -> str:
    """Insert (or replace: same inputs, same id) one evaluation; returns its id."""
    row = (
        result.result_id,
        result.encoder.name,
        result.encoder.weights_hash,
        result.dataset.spec,
        result.dataset.key,
        result.dataset.split,
        result.dataset.limit,
        result.protocol["name"],
        result.protocol["hash"],
        json.dumps(result.pck),
        json.dumps(asdict(result.stats)),
        datetime.now(UTC).replace(tzinfo=None),
    )
    with store.connect() as con:
        con.execute("INSERT OR REPLACE INTO corr_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    return result.result_id


def _row_to_dict(row: tuple, columns: list[str]) -> dict[str, Any]:
    data = dict(zip(columns, row, strict=True))
    data["pck"] = json.loads(data.pop("pck_json"))
    data["stats"] = json.loads(data.pop("stats_json") or "{}")
    data["created"] = str(data["created"])
    return data


def list_results(encoder: str | None = None) -> list[dict[str, Any]]:
    """Every recorded evaluation, newest first (optionally of one encoder)."""
    query = "SELECT * FROM corr_results"
    args: list[Any] = []
    if encoder:
        query += " WHERE encoder = ?"
        args.append(encoder)
    with store.connect(read_only=True) as con:
        cur = con.execute(query + " ORDER BY created DESC", args)
        columns = [d[0] for d in cur.description]
        rows = cur.fetchall()
    return [_row_to_dict(r, columns) for r in rows]


def get_result(result_id: str) -> dict[str, Any]:
    with store.connect(read_only=True) as con:
        cur = con.execute("SELECT * FROM corr_results WHERE id = ?", [result_id])
        columns = [d[0] for d in cur.description]
        row = cur.fetchone()
    if row is None:
        raise InputError(f"no correspondence result with id {result_id!r} (see `correspondence results`)")
    return _row_to_dict(row, columns)


def c_value(result: CEvaluation | Mapping[str, Any], alpha: str = "0.1", averaging: str = "per_image") -> float | None:
    """The paper's C: PCK@0.10 (per image by default) x 100; None when the result does not hold it.

    ``result``: an evaluation, or its JSON (a job's result, a stored row from ``get_result``/``list_results``)."""
    pck = result.pck if isinstance(result, CEvaluation) else result.get("pck")
    value = (pck or {}).get(averaging, {}).get(alpha)
    return None if value is None else float(value) * 100.0


def c_score(result: CEvaluation | Mapping[str, Any], alpha: str = "0.1", averaging: str = "per_image") -> float:
    """``c_value`` of a result that must hold it (InputError otherwise)."""
    value = c_value(result, alpha, averaging)
    if value is None:
        raise InputError(f"result has no {averaging} PCK@{alpha}")
    return value


def c_scale(dataset: str, split: str, limit: int | None) -> str:
    """``paper`` for C on the whole SPair-71k test split, else ``demo`` (C on other pairs is not comparable)."""
    return "paper" if dataset.startswith("spair:") and split == "test" and limit is None else "demo"


def c_method(dataset: str, split: str, limit: int | None, protocol: str) -> str:
    """How a C was measured, in the words of a study's ``c_method`` column; demo scale (:func:`c_scale`) says so."""
    text = f"{'SPair-71k' if dataset.startswith('spair:') else dataset} {split} PCK@0.10 per image x 100, protocol {protocol}"
    if limit is not None:
        text += f", first {limit} pairs"
    return text if c_scale(dataset, split, limit) == "paper" else f"{text} (demo scale: not comparable to SPair-71k test C)"


def c_method_of(result: CEvaluation | Mapping[str, Any]) -> str:
    """``c_method`` of an evaluation, its JSON or a stored row (``get_result``): dataset, split, pair limit, protocol."""
    data = result.to_dict() if isinstance(result, CEvaluation) else result
    if isinstance(data.get("dataset"), Mapping):  # an evaluation's JSON
        dataset, protocol = data["dataset"], data["protocol"]
        return c_method(str(dataset["spec"]), str(dataset["split"]), dataset.get("limit"), str(protocol["name"]))
    return c_method(str(data["dataset"]), str(data["split"]), data.get("limit_pairs"), str(data["protocol_name"]))


def attach_c_to_study(result: str | CEvaluation | Mapping[str, Any], study_name: str, setting: str) -> float:
    """Set C (= per-image PCK@0.10 x 100) of a study setting from a recorded result id, an evaluation or its JSON,
    with how it was measured (``c_method``: a builtin, other-split or subset C must not pass for SPair-71k test C)."""
    data = get_result(result) if isinstance(result, str) else result
    value = c_score(data)
    try:
        from engine.study import set_setting_scores
    except ImportError as exc:
        raise InputError("studies are not available in this build (engine.study is missing)") from exc
    set_setting_scores(study_name, setting, C=value, metadata={"c_method": c_method_of(data)})
    return value


def per_category_table(*results: CEvaluation | Mapping[str, Any], alpha: str = "0.1") -> pd.DataFrame:
    """Categories x evaluations (or stored rows) table of PCK@alpha (x 100), with an ``overall`` row per averaging."""
    columns: dict[str, dict[str, float | None]] = {}
    for result in results:
        res = result.to_dict() if isinstance(result, CEvaluation) else result
        enc = res.get("encoder")
        label = enc["name"] if isinstance(enc, dict) else str(enc)
        proto = res.get("protocol")
        proto_name = proto["name"] if isinstance(proto, dict) else res.get("protocol_name", "")
        label = f"{label} [{proto_name}]" if proto_name else label
        while label in columns:
            label += "'"
        pck = res["pck"]
        col = {cat: (None if v.get(alpha) is None else 100.0 * v[alpha]) for cat, v in pck["per_category"].items()}
        for averaging in ("per_image", "per_point"):
            value = pck[averaging].get(alpha)
            col[f"overall ({averaging})"] = None if value is None else 100.0 * value
        columns[label] = col
    table = pd.DataFrame(columns)
    table.index.name = "category"
    return table
