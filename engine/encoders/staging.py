"""Upload staging folders (``<home>/uploads/.staging-*``): owner marks and the sweep of folders left by killed uploads."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

from engine import config

STAGING_PREFIX = ".staging-"
_OWNER_FILE = ".owner"
STALE_STAGING_S = 24 * 3600  # a staging folder without a readable owner is stale after this long


def _owner_alive(stage: Path) -> bool:
    try:
        host, pid = (stage / _OWNER_FILE).read_text().split()
        pid_int = int(pid)
    except (OSError, ValueError):
        try:
            return time.time() - stage.stat().st_mtime < STALE_STAGING_S
        except OSError:
            return False
    if host != socket.gethostname():
        return time.time() - stage.stat().st_mtime < STALE_STAGING_S
    try:
        os.kill(pid_int, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_staging(stage: Path) -> None:
    """Mark a staging folder as owned by this process (so sweeps elsewhere leave it alone)."""
    (stage / _OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}")


def release_staging(stage: Path) -> None:
    """Drop the owner mark before the folder is moved into place."""
    (stage / _OWNER_FILE).unlink(missing_ok=True)


def sweep_stale_staging() -> list[str]:
    """Remove staging folders left by killed uploads (owner process gone); returns the removed names."""
    removed = []
    for stage in config.subdir("uploads").glob(STAGING_PREFIX + "*"):
        if stage.is_dir() and not _owner_alive(stage):
            shutil.rmtree(stage, ignore_errors=True)
            removed.append(stage.name)
    return removed
