"""Named, versioned correspondence-evaluation protocols (how C is measured), with content hashes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from engine.errors import InputError
from engine.hashing import hash_obj

NORMALIZERS = ("bbox", "image")
COMPARISONS = ("<=", "<")
AVERAGINGS = ("per_image", "per_point")
MATCHINGS = ("nn_feature", "upsampled_map")
ARGMAXES = ("argmax", "soft_argmax")
RESIZES = (None, "stretch_square")


@dataclass(frozen=True)
class Protocol:
    """Every convention that changes a PCK number.

    ``normalizer``: ``bbox`` = longest side of the target bounding box, ``image`` = longest side of the target image.
    ``comparison``: a keypoint is correct when ``error <= alpha * norm`` (``<=``) or ``error < alpha * norm`` (``<``).
    ``averaging``: the primary average (both are always reported): ``per_image`` = mean over pairs of the fraction of
    correct visible keypoints, ``per_point`` = correct / all visible keypoints.
    ``matching``: ``nn_feature`` = nearest neighbour on the feature grid, ``upsampled_map`` = cosine-similarity map
    bilinearly upsampled by the encoder stride, then arg-maxed in (model-input) pixels.
    ``argmax``: hard ``argmax`` or ``soft_argmax`` = softmax(sim / soft_beta) expectation restricted to the
    (2 * soft_window + 1)^2 cells around the hard maximum (``soft_window=0``: the whole map).
    ``resize``: ``None`` = the encoder's own preprocessing; ``stretch_square`` = every image stretched to a square input.
    ``frame``: ``None`` = source keypoints are mapped exactly onto the feature grid; an int F = keypoints are placed in an
    F x F frame (aspect kept, zero padded, centred) and that frame is assumed to tile the feature grid uniformly.
    """

    name: str
    version: int = 1
    alphas: tuple[float, ...] = (0.05, 0.10, 0.15)
    normalizer: str = "bbox"
    comparison: str = "<="
    averaging: str = "per_image"
    matching: str = "nn_feature"
    argmax: str = "argmax"
    soft_window: int = 5
    soft_beta: float = 0.02
    resize: str | None = None
    frame: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        checks = [
            ("normalizer", self.normalizer, NORMALIZERS),
            ("comparison", self.comparison, COMPARISONS),
            ("averaging", self.averaging, AVERAGINGS),
            ("matching", self.matching, MATCHINGS),
            ("argmax", self.argmax, ARGMAXES),
            ("resize", self.resize, RESIZES),
        ]
        for field_name, value, allowed in checks:
            if value not in allowed:
                raise InputError(f"protocol {self.name!r}: {field_name}={value!r} is not one of {list(allowed)}")
        if not self.alphas or any(not (0 < float(a) < 1) for a in self.alphas):
            raise InputError(f"protocol {self.name!r}: alphas must be fractions in (0, 1), got {list(self.alphas)}")
        if int(self.soft_window) < 0 or float(self.soft_beta) <= 0:
            raise InputError(f"protocol {self.name!r}: soft_window must be >= 0 and soft_beta > 0")
        if self.frame is not None and int(self.frame) < 8:
            raise InputError(f"protocol {self.name!r}: frame must be None or an int >= 8")
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["alphas"] = list(self.alphas)
        return data

    def hash(self) -> str:
        """Content hash of every field that changes a number (name and description excluded)."""
        data = self.to_dict()
        data.pop("name")
        data.pop("description")
        return hash_obj(data)

    def describe(self) -> dict[str, Any]:
        return {**self.to_dict(), "hash": self.hash()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        """A custom protocol from a dict (unknown keys are an error; ``hash`` is ignored)."""
        if not isinstance(data, dict):
            raise InputError("a protocol must be a JSON object")
        known = {f.name for f in fields(cls)}
        extra = set(data) - known - {"hash"}
        if extra:
            raise InputError(f"unknown protocol field(s): {sorted(extra)}")
        values = {k: v for k, v in data.items() if k in known}
        if "name" not in values:
            values["name"] = "custom"
        if "alphas" in values:
            values["alphas"] = tuple(values["alphas"])
        return cls(**values)


def alpha_key(alpha: float) -> str:
    """The JSON key of one alpha: ``0.1`` -> ``"0.1"``, ``0.05`` -> ``"0.05"``."""
    return repr(round(float(alpha), 6))


_REGISTRY: dict[str, Protocol] = {
    "default": Protocol(
        name="default",
        description=(
            "Clean definition: the encoder's own preprocessing, nearest neighbour on the feature grid mapped back to "
            "cell centres in original pixels, per-image PCK of visible keypoints, bbox normaliser = longest side of "
            "the target bbox, error <= alpha * norm."
        ),
    ),
    "paper-compat": Protocol(
        name="paper-compat",
        alphas=(0.05, 0.10, 0.15),
        comparison="<",
        argmax="soft_argmax",
        soft_window=5,
        soft_beta=0.02,
        resize="stretch_square",
        frame=840,
        description=(
            "The authors' released C-score code (GeoAware-SC based): images stretched to a square encoder input, "
            "keypoints in an 840 px zero-padded aspect-kept frame assumed to tile the feature grid, soft-argmax in "
            "a window of radius 5 with beta 0.02, per-image PCK with a strict '<' against the target bbox."
        ),
    ),
    "dense-upsampled": Protocol(
        name="dense-upsampled",
        matching="upsampled_map",
        description="Like default, but the similarity map is bilinearly upsampled by the stride before the argmax.",
    ),
}


def get_protocol(name: str | Protocol | dict) -> Protocol:
    """A registered protocol by name (or pass through a Protocol / build one from a dict)."""
    if isinstance(name, Protocol):
        return name
    if isinstance(name, dict):
        return Protocol.from_dict(name)
    if name not in _REGISTRY:
        raise InputError(f"unknown protocol {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_protocols() -> list[Protocol]:
    return list(_REGISTRY.values())


def register_protocol(protocol: Protocol) -> None:
    """Add a named protocol (e.g. from a plugin); a name cannot be re-bound to different content."""
    existing = _REGISTRY.get(protocol.name)
    if existing is not None and existing.hash() != protocol.hash():
        raise InputError(f"protocol {protocol.name!r} is already registered with different settings")
    _REGISTRY[protocol.name] = protocol
