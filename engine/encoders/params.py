"""Typed encoder parameters: one frozen dataclass per family, checked at construction, read as its JSON dict."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, get_args

from engine.encoders.base import ResizeStrategy
from engine.errors import InputError


@dataclass(frozen=True)
class FamilyParams(Mapping):
    """Base of every family's parameters. A field left at ``None`` was not given and is not in the JSON form
    (``as_dict``), except the fields named in ``always`` (their ``None`` is part of the record); reading the
    object as a mapping reads that JSON form, so ``params | {"seed": 1}`` is the dict of a variant."""

    family: ClassVar[str] = ""
    always: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FamilyParams:
        """The parameters from their JSON form; an unknown key or a bad value is an InputError naming it."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(f"{cls.family or cls.__name__} encoder parameters: unknown {', '.join(map(repr, unknown))} "
                             f"(known: {', '.join(known)})")
        return cls(**values)

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> FamilyParams:
        """``params`` as this type (itself when it already is one): what an adapter reads a spec through."""
        return params if isinstance(params, cls) else cls.from_dict(dict(params))

    def as_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None or f.name in self.always:
                out[f.name] = _plain(value)
        return out

    def shown_label(self) -> str | None:
        """The label a person gave this encoder (an upload's), shown instead of its id."""
        return None

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())

    def __or__(self, other: Mapping[str, Any]) -> dict[str, Any]:
        return self.as_dict() | dict(other)


def _plain(value: Any) -> Any:
    """A JSON-ready copy (tuples become lists, as they were written in the table)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class FreeParams(FamilyParams):
    """Parameters of a family that declares no type (a test's or a script's own family): any JSON dict."""

    values: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FreeParams:
        return cls(dict(values))

    def as_dict(self) -> dict[str, Any]:
        return _plain(self.values)


def check_int(owner: str, name: str, value: Any, minimum: int | None = None) -> None:
    """``value`` is None or an integer (not a bool) of at least ``minimum``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise InputError(f"{owner} encoder parameter {name} must be an integer{bound}, got {value!r}")


def check_choice(owner: str, name: str, value: Any, choices: tuple) -> None:
    """``value`` is None or one of ``choices``."""
    if value is not None and value not in choices:
        raise InputError(f"{owner} encoder parameter {name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_text(owner: str, name: str, value: Any) -> None:
    """``value`` is None or a non-empty string."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise InputError(f"{owner} encoder parameter {name} must be a non-empty string, got {value!r}")


def check_mapping(owner: str, name: str, value: Any) -> None:
    """``value`` is None or a dict (a config or keyword arguments)."""
    if value is not None and not isinstance(value, dict):
        raise InputError(f"{owner} encoder parameter {name} must be a mapping, got {type(value).__name__}")


def check_view(owner: str, image_size: Any, layer: Any, resize: Any) -> None:
    """The parameters every tower shares: input side in pixels, layer index (int or its text), resize strategy."""
    check_int(owner, "image_size", image_size, 1)
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int | str)):
        raise InputError(f"{owner} encoder parameter layer must be an integer index, got {layer!r}")
    check_choice(owner, "resize", resize, get_args(ResizeStrategy))
