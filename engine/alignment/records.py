"""DuckDB records of A scores (with their full recipe) and of imported / trained projectors."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pandas as pd

from engine import store

store.register_schema(
    "alignment",
    """
    CREATE TABLE IF NOT EXISTS alignment_scores (
        id VARCHAR PRIMARY KEY,
        created TIMESTAMP,
        definition VARCHAR,
        variant VARCHAR,
        a DOUBLE,
        per_reference VARCHAR,
        n_images INTEGER,
        n_tokens BIGINT,
        seed INTEGER,
        setting VARCHAR,
        encoder VARCHAR,
        encoder_hash VARCHAR,
        projector_hash VARCHAR,
        llm VARCHAR,
        llm_hash VARCHAR,
        recipe VARCHAR
    );
    CREATE TABLE IF NOT EXISTS alignment_projectors (
        id VARCHAR PRIMARY KEY,
        created TIMESTAMP,
        encoder VARCHAR,
        llm VARCHAR,
        in_dim INTEGER,
        out_dim INTEGER,
        path VARCHAR,
        source VARCHAR,
        sha VARCHAR
    );
    """,
)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def record_a_score(
    definition: str,
    a: float,
    *,
    variant: str = "clean",
    per_reference: dict | None = None,
    n_images: int = 0,
    n_tokens: int | None = None,
    seed: int | None = None,
    setting: str | None = None,
    encoder: str | None = None,
    encoder_hash: str | None = None,
    projector_hash: str | None = None,
    llm: str | None = None,
    llm_hash: str | None = None,
    recipe: dict | None = None,
) -> str:
    """Store one A score with its recipe (definition ``v1`` / ``v3``, images, N, seed, references, hashes)."""
    record_id = uuid.uuid4().hex[:16]
    row = [
        record_id, _now(), definition, variant, float(a), json.dumps(per_reference or {}), int(n_images),
        n_tokens, seed, setting, encoder, encoder_hash, projector_hash, llm, llm_hash,
        json.dumps(recipe or {}, default=str),
    ]
    with store.connect() as con:
        con.execute("INSERT INTO alignment_scores VALUES (" + ",".join("?" * len(row)) + ")", row)
    return record_id


def list_a_scores(definition: str | None = None) -> pd.DataFrame:
    """All recorded A scores, newest first (optionally one definition)."""
    query = "SELECT * FROM alignment_scores"
    params: list = []
    if definition:
        query += " WHERE definition = ?"
        params.append(definition)
    with store.connect(read_only=True) as con:
        return con.execute(query + " ORDER BY created DESC", params).df()


def record_projector(encoder: str, llm: str, in_dim: int, out_dim: int, path: str, source: str, sha: str) -> str:
    """Store a projector's provenance; returns its id (= the content hash)."""
    with store.connect() as con:
        con.execute("DELETE FROM alignment_projectors WHERE id = ?", [sha])
        con.execute(
            "INSERT INTO alignment_projectors VALUES (?,?,?,?,?,?,?,?,?)",
            [sha, _now(), encoder, llm, int(in_dim), int(out_dim), str(path), source, sha],
        )
    return sha


def list_projectors() -> pd.DataFrame:
    """Stored projectors (imported or trained), newest first."""
    with store.connect(read_only=True) as con:
        return con.execute("SELECT * FROM alignment_projectors ORDER BY created DESC").df()


def insert_records(projectors: list[dict] | tuple[dict, ...] = (), scores: list[dict] | tuple[dict, ...] = ()) -> None:
    """Store projector and A-score rows recorded elsewhere (a sweep's A task on Ray, in a DuckDB file of its own),
    as they are: same ids and values, in one transaction (a projector row replaces one with its id)."""
    with store.connect() as con:
        for table, rows in (("alignment_projectors", projectors), ("alignment_scores", scores)):
            for row in rows:
                names = list(row)
                if table == "alignment_projectors":
                    con.execute("DELETE FROM alignment_projectors WHERE id = ?", [row["id"]])
                con.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                            [row[n] for n in names])
