"""Raw-pixel baseline: each 8x8 patch of normalised RGB (plus its mean colour and gradients) is one feature."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.encoders.base import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from engine.encoders.common import ModuleEncoder
from engine.encoders.params import FamilyParams, check_int
from engine.encoders.registry import EncoderSpec, register_family


@dataclass(frozen=True)
class PixelsParams(FamilyParams):
    """Patch side and input side in pixels (defaults 8 and 224)."""

    family = "pixels"
    patch: int | None = None
    image_size: int | None = None

    def __post_init__(self) -> None:
        check_int(self.family, "patch", self.patch, 1)
        check_int(self.family, "image_size", self.image_size, 1)


class PixelPatches(torch.nn.Module):
    """Unfold P x P patches (3*P*P values) and append the patch's mean RGB and mean |dx|, |dy| per channel."""

    def __init__(self, patch: int) -> None:
        super().__init__()
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        b, _, h, w = x.shape
        gh, gw = h // p, w // p
        x = x[:, :, : gh * p, : gw * p]
        raw = F.unfold(x, kernel_size=p, stride=p).view(b, 3 * p * p, gh, gw)
        mean = F.avg_pool2d(x, p)
        dx = F.pad((x[:, :, :, 1:] - x[:, :, :, :-1]).abs(), (0, 1, 0, 0))
        dy = F.pad((x[:, :, 1:, :] - x[:, :, :-1, :]).abs(), (0, 0, 0, 1))
        grads = torch.cat([F.avg_pool2d(dx, p), F.avg_pool2d(dy, p)], dim=1)
        return torch.cat([raw, mean, grads], dim=1)


def _build(spec: EncoderSpec, layer: str | None) -> ModuleEncoder:
    params = PixelsParams.of(spec.params)
    patch, size = params.patch or 8, params.image_size or 224
    return ModuleEncoder(
        name=spec.name,
        family=spec.family,
        module=PixelPatches(patch),
        forward=lambda m, x: m(x),
        preprocessing=Preprocessing((size, size), "stretch", IMAGENET_MEAN, IMAGENET_STD),
        patch_size=patch,
        stride=patch,
        embed_dim=3 * patch * patch + 9,
        extra_hash=f"pixels-v1-{patch}",
        info={"source": spec.source},
    )


register_family("pixels", _build, lambda spec: True, PixelsParams)
