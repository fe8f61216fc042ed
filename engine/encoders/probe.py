"""Probing one encoder: build it, encode a picture, and colour its feature grid by a 3-component PCA."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ProbeResult:
    """What probing found: the grid and width of the features, the weights hash, the picture and its PCA colours."""

    name: str
    grid: tuple[int, int]
    channels: int
    weights_hash: str
    info: dict[str, Any]
    image: np.ndarray  # H x W x 3 uint8, the picture that was encoded
    pca_rgb: np.ndarray  # h x w x 3 uint8, one colour per feature cell (similar features, similar colours)
    image_source: str
    input_size: tuple[int, int] = (0, 0)
    patch_size: int = 0
    stride: int = 0
    prefix_tokens: int = 0
    layer: str = ""
    build_s: float = 0.0
    encode_s: float = 0.0

    def side_by_side(self) -> np.ndarray:
        """The picture and its feature PCA (each cell a block of pixels, at the picture's height) in one RGB array,
        for an export; a white gap between them."""
        height = self.image.shape[0]
        h, w = self.pca_rgb.shape[:2]
        rows = (np.arange(height) * h) // height  # nearest cell of each output row / column
        cols = (np.arange(max(1, round(w * height / h))) * w) // max(1, round(w * height / h))
        pca = self.pca_rgb[rows][:, cols]
        gap = np.full((height, 8, 3), 255, dtype=np.uint8)
        return np.concatenate([self.image.astype(np.uint8), gap, pca.astype(np.uint8)], axis=1)


def probe_image() -> tuple[np.ndarray, str]:
    """A real-looking offline picture: the first source image of the builtin correspondence set."""
    from engine.correspondence.datasets import open_dataset

    dataset = open_dataset("builtin", "test")
    pair = dataset.pairs("test", limit=1)[0]
    return np.asarray(dataset.load_image(pair.src_id), dtype=np.uint8), f"builtin:{pair.src_id}"


def sample_image(size: int = 256) -> np.ndarray:
    """A deterministic synthetic RGB test image (gradients and a disc), so probing needs no files."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    disc = ((xx - 0.6) ** 2 + (yy - 0.4) ** 2) < 0.05
    img = np.stack([xx, yy, 1 - xx * yy], axis=-1)
    img[disc] = [1.0, 0.2, 0.1]
    return (img * 255).astype(np.uint8)


def probe(name: str, device: str = "cpu", layer: str | int | None = None,
          image: tuple[np.ndarray, str] | None = None) -> ProbeResult:
    """Build ``name``, encode the probe picture (``image``: picture and where it came from; default the builtin
    one) and return its features' PCA picture (what a layer 'sees'), geometry and build/encode times."""
    from engine.correspondence.viewer import feature_pca_rgb
    from engine.encoders.preprocess import prepare
    from engine.encoders.registry import build_encoder

    t0 = time.perf_counter()
    encoder = build_encoder(name, device=device, layer=layer)
    t1 = time.perf_counter()
    image, source = image if image is not None else probe_image()
    pixels, _ = prepare([image], encoder.preprocessing)
    feats = encoder.encode(pixels)
    t2 = time.perf_counter()
    grid = feats.features[0].detach().float().cpu().numpy()
    rgb, _ = feature_pca_rgb(grid, grid)
    info = encoder.describe() | {"grid": list(feats.grid), "weights_hash": encoder.weights_hash()}
    return ProbeResult(name=name, grid=tuple(feats.grid), channels=int(grid.shape[0]), weights_hash=encoder.weights_hash(),
                       info=info, image=image, pca_rgb=rgb, image_source=source,
                       input_size=tuple(encoder.preprocessing.input_size), patch_size=encoder.patch_size,
                       stride=encoder.stride, prefix_tokens=encoder.prefix_tokens, layer=encoder.layer,
                       build_s=t1 - t0, encode_s=t2 - t1)
