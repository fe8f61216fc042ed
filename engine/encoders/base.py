"""The dense-feature contract every vision encoder adapter implements (one ABC, one spec of preprocessing).

Downstream code (correspondence, alignment) never special-cases a model: it asks an encoder for its
``Preprocessing`` (how an image becomes the model input) and calls ``encode`` to get B x C x h x w
features plus the geometry needed to map image pixels to feature cells.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch

ResizeStrategy = Literal["stretch", "letterbox", "shortest_side_center_crop"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes the model input: resize strategy, input size (H, W), normalisation."""

    input_size: tuple[int, int]
    resize: ResizeStrategy = "stretch"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pad_value: float = 0.0

    def key(self) -> dict:
        return asdict(self)


@dataclass
class DenseFeatures:
    """Features of a batch: ``features`` is B x C x h x w on a regular grid over the model input.

    Feature cell (i, j) covers model-input pixels [j*stride, j*stride + patch_size) horizontally
    (same for rows), i.e. its centre is at ``(j * stride + patch_size / 2, i * stride + patch_size / 2)``.
    ``prefix_tokens`` says how many non-spatial tokens (CLS, registers) were dropped.
    """

    features: torch.Tensor
    patch_size: int
    stride: int
    prefix_tokens: int
    preprocessing: Preprocessing
    layer: str = "default"
    extras: dict = field(default_factory=dict)

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.features.shape[-2]), int(self.features.shape[-1])


class VisionEncoder(ABC):
    """A frozen vision encoder seen through the dense-feature contract.

    Subclasses set the class-level / instance attributes and implement ``_forward``; ``encode``
    handles dtype, device and no-grad. ``tokens`` (B x N x C, prefix tokens dropped) is what a
    LLaVA projector consumes; by default it is the flattened dense grid.
    """

    name: str
    family: str
    patch_size: int
    stride: int
    prefix_tokens: int = 0
    embed_dim: int
    layer: str = "default"

    def __init__(self) -> None:
        self.device = torch.device("cpu")

    @property
    @abstractmethod
    def preprocessing(self) -> Preprocessing:
        """How images must be prepared for this encoder."""

    @abstractmethod
    def weights_hash(self) -> str:
        """Content hash of the weights actually loaded (part of every cache key)."""

    @abstractmethod
    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W normalised input on ``self.device`` -> B x C x h x w features."""

    def to(self, device: str | torch.device) -> VisionEncoder:
        from engine.devices import check_device

        self.device = check_device(device)
        for module in self.modules():
            module.to(self.device)
        return self

    def modules(self) -> list[torch.nn.Module]:
        """The torch modules to move between devices (override when there are any)."""
        return []

    def encode(self, pixels: torch.Tensor) -> DenseFeatures:
        """Dense features of a preprocessed batch (see ``engine.encoders.preprocess``)."""
        with torch.inference_mode():
            feats = self._forward(pixels.to(self.device))
        return DenseFeatures(
            features=feats.float(),
            patch_size=self.patch_size,
            stride=self.stride,
            prefix_tokens=self.prefix_tokens,
            preprocessing=self.preprocessing,
            layer=self.layer,
        )

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """B x N x C spatial tokens in row-major order (what a LLaVA projector consumes)."""
        feats = self.encode(pixels).features
        return feats.flatten(2).transpose(1, 2)

    def describe(self) -> dict:
        """JSON-friendly description used by listings and cache keys."""
        return {
            "name": self.name,
            "family": self.family,
            "patch_size": self.patch_size,
            "stride": self.stride,
            "prefix_tokens": self.prefix_tokens,
            "embed_dim": self.embed_dim,
            "layer": self.layer,
            "preprocessing": self.preprocessing.key(),
        }


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Any H x W (x 1/3/4) image array -> H x W x 3 uint8 RGB."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.dtype != np.uint8:
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        arr = np.clip(arr * scale, 0, 255).astype(np.uint8)
    return arr
