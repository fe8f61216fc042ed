"""Dataset specs (``builtin``, ``spair:/path``) to opened datasets; builtin is generated once per process."""

from __future__ import annotations

from pathlib import Path

from engine.correspondence.datasets.base import Dataset, normalise_split
from engine.correspondence.datasets.spair import SPairDataset
from engine.errors import InputError, NotAvailableError

_OPENED: dict[str, Dataset] = {}  # only builtin: generating it costs a second


def open_dataset(spec: str, split: str = "test") -> Dataset:
    """``builtin`` or ``spair:/path/to/SPair-71k`` -> a Dataset (instances are reused within a process)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("empty dataset spec (use builtin or spair:/path/to/SPair-71k)")
    spec = spec.strip()
    normalise_split(split)
    if spec == "builtin":
        if spec not in _OPENED:
            from engine.correspondence.datasets.builtin import BuiltinDataset

            _OPENED[spec] = BuiltinDataset()
        return _OPENED[spec]
    if spec.startswith("spair:"):
        path = Path(spec[len("spair:") :]).expanduser()
        if not path.exists():
            raise NotAvailableError(f"SPair-71k folder {path} does not exist")
        return SPairDataset(path)
    raise InputError(f"unknown dataset spec {spec!r} (use builtin or spair:/path/to/SPair-71k)")


def forget_opened() -> None:
    """Drop reused dataset instances (tests rebuild folders in place)."""
    _OPENED.clear()
