"""The encoder registry: named specs, one adapter per family (a table, never name substrings), `A+B` combinations.

It imports no adapter: the package face (``engine.encoders``) imports the adapters named in ``catalog.ADAPTERS``
(each registers its family) and then calls ``load_builtins`` for the catalog's table of specs.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from engine.encoders import catalog
from engine.encoders.base import VisionEncoder
from engine.encoders.params import FamilyParams, FreeParams
from engine.errors import InputError

COMBINE_SEP = "+"
UPLOAD_SCHEME = "upload:"


@dataclass(frozen=True)
class EncoderSpec:
    """What a name means: its family (adapter), where the weights come from and the adapter parameters.

    ``params`` may be given as a dict (its JSON form): it becomes the family's parameter type (checked there).
    """

    name: str
    family: str
    description: str
    pretrained: bool
    source: str
    params: FamilyParams = field(default_factory=FreeParams, hash=False, compare=True)
    paper_setting: str | None = None
    license: str | None = None

    def __post_init__(self) -> None:
        wanted = params_type(self.family)
        if not isinstance(self.params, FamilyParams if wanted is FreeParams else wanted):
            object.__setattr__(self, "params", wanted.from_dict(dict(self.params or {})))

    def offline_available(self) -> bool:
        """Whether it can be built on this machine without network (wheel importable / local path / HF cache)."""
        try:
            return bool(get_family(self.family).offline_available(self))
        except Exception:
            return False

    @property
    def label(self) -> str | None:
        """The label a person gave it (uploads), else None."""
        return self.params.shown_label()

    def as_dict(self, params: bool = True) -> dict[str, Any]:
        """The one row of an encoder (CLI listing and ``show``, the pages' tables): JSON-ready, ``params`` last."""
        row = {
            "name": self.name,
            "family": self.family,
            "pretrained": self.pretrained,
            "offline_available": self.offline_available(),
            "description": self.description,
            "source": self.source,
            "paper_setting": self.paper_setting,
            "license": self.license,
            "label": self.label,
        }
        return row | {"params": self.params.as_dict()} if params else row


@dataclass(frozen=True)
class Family:
    """An adapter: ``build(spec, layer) -> VisionEncoder``, ``offline_available(spec) -> bool`` and the type of its
    specs' parameters."""

    name: str
    build: Callable[[EncoderSpec, str | None], VisionEncoder]
    offline_available: Callable[[EncoderSpec], bool]
    params: type[FamilyParams] = FreeParams


@dataclass(frozen=True)
class SpecStore:
    """Specs kept outside the built-in table (uploads): all of them, one by its ``upload:<hash>`` id, one by label."""

    list_specs: Callable[[], list[EncoderSpec]]
    by_id: Callable[[str], EncoderSpec | None]
    by_label: Callable[[str], EncoderSpec | None]


_FAMILIES: dict[str, Family] = {}
_STORED: list[SpecStore] = []  # set by the upload adapter
_COMBINERS: list[Callable[[str, list[EncoderSpec]], EncoderSpec]] = []  # set by the combination adapter
_SPECS: dict[str, EncoderSpec] = {}


def register_family(
    name: str, build: Callable, offline_available: Callable[[EncoderSpec], bool], params: type[FamilyParams] = FreeParams
) -> None:
    """Add (or replace) a family: its builder, its offline check and its parameter type."""
    _FAMILIES[name] = Family(name, build, offline_available, params)


def params_type(family: str) -> type[FamilyParams]:
    """The parameter type of a family (``FreeParams`` for one that declares none or is not registered)."""
    known = _FAMILIES.get(family)
    return known.params if known is not None else FreeParams


def unregister_family(name: str) -> Family | None:
    """Remove a family (tests that register their own); returns what was there."""
    return _FAMILIES.pop(name, None)


def list_families() -> list[str]:
    """Names of every registered family (adapter)."""
    return list(_FAMILIES)


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    """Add (or replace) a named built-in spec."""
    if not spec.name or COMBINE_SEP in spec.name:
        raise InputError(f"encoder names must be non-empty and must not contain '{COMBINE_SEP}': {spec.name!r}")
    _SPECS[spec.name] = spec
    return spec


def unregister_encoder(name: str) -> EncoderSpec | None:
    """Remove a named built-in spec (tests that register their own); returns what was there."""
    return _SPECS.pop(name, None)


def register_spec_store(store: SpecStore) -> None:
    """Where ``upload:<hash>`` ids and upload labels resolve (the upload adapter registers the upload store)."""
    _STORED[:] = [store]


def register_combiner(combine: Callable[[str, list[EncoderSpec]], EncoderSpec]) -> None:
    """How ``A+B`` resolves: ``combine(name, part_specs)`` (the combination adapter registers it)."""
    _COMBINERS[:] = [combine]


def _combine(name: str) -> EncoderSpec:
    if not _COMBINERS:
        raise InputError(f"combinations are not available (no combination adapter): {name!r}")
    return _COMBINERS[0](name, [get_spec(p.strip()) for p in name.split(COMBINE_SEP)])


def load_builtins(table: tuple[catalog.Builtin, ...] = catalog.BUILTINS,
                  combinations: tuple[str, ...] = catalog.COMBINATIONS) -> None:
    """Register the catalog's specs, then its listed combinations (their parts resolve among those specs).
    Called by the package face once every adapter has registered its family."""
    for row in table:
        register_encoder(EncoderSpec(**{f.name: getattr(row, f.name) for f in fields(row)}))
    for name in combinations:
        _SPECS[name] = _combine(name)


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        raise InputError(f"no adapter for encoder family {name!r} (known: {', '.join(sorted(_FAMILIES))})")
    return _FAMILIES[name]


def _uploaded_specs() -> list[EncoderSpec]:
    return [spec for store in _STORED for spec in store.list_specs()]


def list_encoders(include_uploaded: bool = True) -> list[EncoderSpec]:
    """Built-in specs (registration order) followed by uploaded encoders from the store."""
    specs = list(_SPECS.values())
    if include_uploaded:
        specs.extend(_uploaded_specs())
    return specs


def get_spec(name: str) -> EncoderSpec:
    """The spec for a name, resolved by its scheme here and nowhere else: a built-in name; ``upload:<hash>`` (the
    upload store); an upload's label; ``A+B`` (a combination of resolvable names). Unknown -> InputError with
    close matches."""
    name = name.strip()
    if name in _SPECS:
        return _SPECS[name]
    if name.startswith(UPLOAD_SCHEME):
        spec = next((s for store in _STORED if (s := store.by_id(name)) is not None), None)
    else:
        spec = next((s for store in _STORED if (s := store.by_label(name)) is not None), None)
        if spec is None and COMBINE_SEP in name:
            return _combine(name)
    if spec is not None:
        return spec
    known = [s.name for s in list_encoders()]
    close = difflib.get_close_matches(name, known, n=4, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; run `python -m engine encoders list` ({len(known)} known)"
    raise InputError(f"unknown encoder {name!r}{hint}")


def build_encoder(
    name: str, device: str = "cpu", layer: str | int | None = None, preprocessing: str = "clean"
) -> VisionEncoder:
    """Build a ready-to-use encoder by name (weights loaded, eval mode, on ``device``).

    ``preprocessing`` picks a variant of the encoder's own preprocessing: ``clean`` (default),
    ``paper-c`` (the released C-score code) or ``llava`` (see ``preprocess.variant_preprocessing``).
    """
    spec = get_spec(name)
    family = get_family(spec.family)
    encoder = family.build(spec, None if layer is None else str(layer))
    if preprocessing != "clean":
        encoder.use_preprocessing_variant(preprocessing)
    return encoder.to(device)


def display_name(spec: EncoderSpec) -> str:
    """What a person reads for an encoder: an upload's label (its ``upload:<hash>`` id when it has none), else its name."""
    label = spec.label
    return str(label).strip() if label and str(label).strip() else spec.name


def display_names(specs: list[EncoderSpec] | None = None) -> dict[str, str]:
    """Encoder id -> display name; a label shared by two encoders (or equal to another's name) gets its id added."""
    specs = list_encoders() if specs is None else specs
    shown = {s.name: display_name(s) for s in specs}
    counts: dict[str, int] = {}
    for text in [*shown.values(), *(n for n, t in shown.items() if t != n)]:
        counts[text] = counts.get(text, 0) + 1
    return {name: text if text == name or counts[text] == 1 else f"{text} ({name})" for name, text in shown.items()}
