"""Reading user-supplied JSON files: existence, a size cap and parse errors become one clear InputError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.errors import InputError, first_line

DEFAULT_MAX_JSON_BYTES = 512 * 1024**2


def read_json_file(path: str | Path, what: str, max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> Any:
    """Parse the JSON file at ``path``; ``what`` names it in messages (e.g. "predictions file")."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{what} {path} does not exist")
    if file.stat().st_size > max_bytes:
        raise InputError(f"{what} {path} is larger than {max_bytes // 2**20} MiB")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {path} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InputError(f"{what} {path} is nested too deeply to be read") from None
    except ValueError as exc:  # e.g. an integer literal of more than 4300 digits
        raise InputError(f"{what} {path} is not usable JSON: {first_line(exc, 120)}") from None
