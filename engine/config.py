"""Where Law Explorer keeps its state: the DuckDB store, caches, uploads and jobs (env-configurable)."""

from __future__ import annotations

import math
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# A source checkout (or editable install) reads the top-level data/; a built install reads the copy setup.py puts
# in the package.
DATA_DIR = REPO_ROOT / "data" if (REPO_ROOT / "data").is_dir() else Path(__file__).resolve().parent / "bundled_data"


def home() -> Path:
    """Root of all mutable state; ``LAW_EXPLORER_HOME`` overrides the per-user default."""
    env = os.environ.get("LAW_EXPLORER_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(base) / "law-explorer"
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path() -> Path:
    """The DuckDB database file; ``LAW_EXPLORER_DB`` overrides ``<home>/law_explorer.duckdb``."""
    env = os.environ.get("LAW_EXPLORER_DB")
    path = Path(env).expanduser() if env else home() / "law_explorer.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def subdir(name: str) -> Path:
    """A named folder under home (``cache``, ``features``, ``jobs``, ``uploads``, ``exports`` ...)."""
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def feature_cache_limit_bytes() -> int:
    """Size cap of the on-disk feature cache; ``LAW_EXPLORER_FEATURE_CACHE_GB`` (default 20)."""
    return int(env_float("LAW_EXPLORER_FEATURE_CACHE_GB", 20.0) * 1024**3)


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    """A non-negative number from an environment variable; anything else is one clear error naming it."""
    from engine.errors import InputError

    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"environment variable {name}={text[:40]!r} is not a number (unset it or give e.g. {default:g})") from None
    if not math.isfinite(value) or value < minimum:
        raise InputError(f"environment variable {name}={text[:40]!r} must be a finite number >= {minimum:g}")
    return value
