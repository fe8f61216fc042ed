"""The ``jobs`` table in DuckDB: one summary row per finished job, so results are queryable next to studies."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from engine import store

store.register_schema(
    "jobs",
    """
    CREATE TABLE IF NOT EXISTS jobs (
        id VARCHAR PRIMARY KEY,
        target VARCHAR NOT NULL,
        title VARCHAR,
        params VARCHAR,
        status VARCHAR NOT NULL,
        created DOUBLE,
        started DOUBLE,
        finished DOUBLE,
        attempts INTEGER,
        error VARCHAR,
        result VARCHAR
    );
    """,
)


def record(job_id: str, spec: dict[str, Any], state: dict[str, Any], result: dict[str, Any] | None) -> None:
    """Insert or replace the summary row of one job (one short transaction)."""
    row = [
        job_id,
        spec.get("target", ""),
        spec.get("title"),
        json.dumps(spec.get("params") or {}, sort_keys=True),
        state.get("status", ""),
        spec.get("created"),
        state.get("first_started") or state.get("started"),
        state.get("finished"),
        int(state.get("attempts") or 0),
        state.get("error"),
        json.dumps(result) if result is not None else None,
    ]
    with store.connect() as con:
        con.execute("DELETE FROM jobs WHERE id = ?", [job_id])
        con.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)


def summaries(target: str | None = None, status: str | None = None) -> pd.DataFrame:
    """Summary rows of finished jobs (newest first), optionally filtered by target and status."""
    query = "SELECT * FROM jobs WHERE (? IS NULL OR target = ?) AND (? IS NULL OR status = ?) ORDER BY id DESC"
    with store.connect(read_only=True) as con:
        return con.execute(query, [target, target, status, status]).df()


def forget(job_id: str) -> None:
    """Remove the summary row of one job (if any)."""
    with store.connect() as con:
        con.execute("DELETE FROM jobs WHERE id = ?", [job_id])
