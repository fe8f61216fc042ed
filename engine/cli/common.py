"""Shared pieces of CLI commands: the --format option, the Output value and text tables."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd


@dataclass
class Output:
    """What a command produced: ``data`` for ``--format json``, ``text`` (or tables) for humans."""

    data: Any
    text: str | None = None
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)

    def print(self, fmt: str) -> None:
        if fmt == "json":
            print(json.dumps(_json_safe(self.data), indent=2))
            return
        parts = [self.text] if self.text else []
        for title, table in self.tables:
            parts.append(f"{title}\n{table.to_string()}" if title else table.to_string())
        if not parts:
            parts.append(json.dumps(_json_safe(self.data), indent=2))
        print("\n\n".join(parts))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _bounded_int(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from exc
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number

    parse.__name__ = f"int>={minimum}"
    return parse


positive_int = _bounded_int(1)  # argparse type for counts and sizes: 0 or less is refused, never read as "default"
non_negative_int = _bounded_int(0)

# Every leaf command by its words (e.g. "study import"), filled by ``leaf`` while the parser is built.
COMMANDS: dict[str, argparse.ArgumentParser] = {}


class Subparsers(Protocol):
    """What ``ArgumentParser.add_subparsers()`` returns (argparse keeps its class private)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def leaf(
    subparsers: Subparsers,
    name: str,
    func: Callable[[argparse.Namespace], Output],
    help: str,
    formats: Sequence[str] = ("text", "json"),
    format_help: str = "output format (default: text)",
) -> argparse.ArgumentParser:
    """Add a leaf command with the shared ``--format text|json`` option (``formats``: a command whose ``--format``
    also names an input file's format)."""
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.add_argument("--format", choices=list(formats), default="text", help=format_help)
    parser.set_defaults(func=func)
    COMMANDS[parser.prog.removeprefix("python -m engine ")] = parser
    return parser
