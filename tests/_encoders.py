"""A seeded conv test encoder shared by the C-evaluation tests: 8 x 8 pixel patches through a fixed linear map."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.encoders.base import Preprocessing, VisionEncoder


class TinyConvEncoder(VisionEncoder):
    """8 x 8 pixel patches through a seeded linear map (a conv: bf16 autocast changes its output); counts the images
    and the forwards it saw."""

    name = "tiny-conv"
    family = "test"
    patch_size = 8
    stride = 8
    embed_dim = 32

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.weight = torch.randn(32, 192, 1, 1, generator=gen) / 14.0
        self.images_seen = 0
        self.forward_calls = 0

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(input_size=(64, 48), resize="letterbox")

    def weights_hash(self) -> str:
        return "tiny-conv-v1"

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.images_seen += pixels.shape[0]
        self.forward_calls += 1
        return F.conv2d(F.pixel_unshuffle(pixels, 8), self.weight.to(pixels.device))
