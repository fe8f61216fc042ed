"""`A+B` combinations: per-encoder L2-normalised features on the first encoder's grid, concatenated, renormalised."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.encoders.base import Preprocessing, VisionEncoder
from engine.encoders.params import FamilyParams
from engine.encoders.registry import (
    COMBINE_SEP,
    EncoderSpec,
    build_encoder,
    get_spec,
    register_combiner,
    register_family,
)
from engine.errors import InputError
from engine.hashing import hash_obj

CODE_VERSION = "combined-v1"


@dataclass(frozen=True)
class CombinedParams(FamilyParams):
    """The names of the combined encoders, the first one's grid first."""

    family = "combined"
    parts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        if not self.parts or not all(isinstance(p, str) and p.strip() for p in self.parts):
            raise InputError(f"{self.family} encoder parameter parts must be encoder names, got {list(self.parts)!r}")


class CombinedEncoder(VisionEncoder):
    """Concatenation of several encoders' dense features.

    All parts see the same view of the image: the first encoder's preprocessing defines the input
    (and thus the geometry); the others get that view re-normalised with their own mean/std and
    resized to their own input size. Each part's features are L2-normalised along channels, resized
    (bilinear) to the first encoder's grid, concatenated, and L2-normalised again.
    """

    family = "combined"

    def __init__(self, name: str, parts: list[VisionEncoder]) -> None:
        super().__init__()
        self.name = name
        self.parts = parts
        first = parts[0]
        self.patch_size = first.patch_size
        self.stride = first.stride
        self.prefix_tokens = 0
        self.embed_dim = sum(p.embed_dim for p in parts)
        self.layer = COMBINE_SEP.join(p.layer for p in parts)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.parts[0].preprocessing

    def weights_hash(self) -> str:
        return hash_obj([CODE_VERSION, [p.weights_hash() for p in self.parts]])

    def use_preprocessing_variant(self, variant: str) -> None:
        for part in self.parts:
            part.use_preprocessing_variant(variant)

    def modules(self) -> list[torch.nn.Module]:
        return [m for p in self.parts for m in p.modules()]

    def to(self, device: str | torch.device) -> CombinedEncoder:
        from engine.devices import check_device

        self.device = check_device(device)
        for part in self.parts:
            part.to(device)
        return self

    def _view_for(self, part: VisionEncoder, pixels: torch.Tensor) -> torch.Tensor:
        base, own = self.preprocessing, part.preprocessing
        x = pixels
        if (own.mean, own.std) != (base.mean, base.std):
            bm = torch.tensor(base.mean, device=x.device).view(1, 3, 1, 1)
            bs = torch.tensor(base.std, device=x.device).view(1, 3, 1, 1)
            om = torch.tensor(own.mean, device=x.device).view(1, 3, 1, 1)
            os_ = torch.tensor(own.std, device=x.device).view(1, 3, 1, 1)
            x = ((x * bs + bm) - om) / os_
        if tuple(x.shape[-2:]) != tuple(own.input_size):
            x = F.interpolate(x, size=own.input_size, mode="bilinear", align_corners=False, antialias=True)
        return x

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        feats = []
        grid = None
        for part in self.parts:
            f = part._forward(self._view_for(part, pixels).to(part.device)).float().to(pixels.device)
            f = F.normalize(f, dim=1)
            if grid is None:
                grid = tuple(f.shape[-2:])
            elif tuple(f.shape[-2:]) != grid:
                f = F.interpolate(f, size=grid, mode="bilinear", align_corners=False)
            feats.append(f)
        return F.normalize(torch.cat(feats, dim=1), dim=1)

    def describe(self) -> dict:
        out = super().describe()
        out["parts"] = [p.describe() for p in self.parts]
        return out


def combination_spec(name: str, specs: list[EncoderSpec]) -> EncoderSpec:
    papers = [s.paper_setting for s in specs]
    return EncoderSpec(
        name=name,
        family="combined",
        description="Combination of " + ", ".join(s.name for s in specs) + " (L2-normalised, concatenated on the first grid)",
        pretrained=all(s.pretrained for s in specs),
        source=COMBINE_SEP.join(s.source for s in specs),
        params=CombinedParams(tuple(s.name for s in specs)),
        paper_setting=COMBINE_SEP.join(papers) if all(papers) else None,
        license=None,
    )


def _build(spec: EncoderSpec, layer: str | None) -> CombinedEncoder:
    return CombinedEncoder(spec.name, [build_encoder(part, layer=None) for part in CombinedParams.of(spec.params).parts])


def _offline(spec: EncoderSpec) -> bool:
    return all(get_spec(p).offline_available() for p in CombinedParams.of(spec.params).parts)


register_family("combined", _build, _offline, CombinedParams)
register_combiner(combination_spec)
