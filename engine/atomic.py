"""Atomic file writes: a temporary file beside the target renamed over it, so readers never see half a file."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A fresh temporary path in ``path``'s folder to write to; renamed over ``path`` when the block succeeds,
    removed when it fails. ``suffix`` is the temporary name's ending (``np.save`` wants ``.npy``)."""
    path = Path(path)
    # A unique name, created by the writer (so the file gets the usual permissions, unlike mkstemp's 0600).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 text whole or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, data: Any, **dump_options: Any) -> None:
    """Write JSON whole or not at all (``dump_options`` go to ``json.dump``)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, **dump_options)
