"""Probing one encoder: build it, encode a picture, and colour its feature grid by a 3-component PCA."""

from __future__ import annotations

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


def probe_image() -> tuple[np.ndarray, str]:
    """A real-looking offline picture: the first source image of the builtin correspondence set."""
    from engine.correspondence.datasets import open_dataset

    dataset = open_dataset("builtin", "test")
    pair = dataset.pairs("test", limit=1)[0]
    return np.asarray(dataset.load_image(pair.src_id), dtype=np.uint8), f"builtin:{pair.src_id}"


def probe(name: str, device: str = "cpu") -> ProbeResult:
    """Build ``name``, encode the probe picture and return its features' PCA picture (what a layer 'sees')."""
    from engine.correspondence.viewer import feature_pca_rgb
    from engine.encoders.preprocess import prepare
    from engine.encoders.registry import build_encoder

    encoder = build_encoder(name, device=device)
    image, source = probe_image()
    pixels, _ = prepare([image], encoder.preprocessing)
    feats = encoder.encode(pixels)
    grid = feats.features[0].detach().float().cpu().numpy()
    rgb, _ = feature_pca_rgb(grid, grid)
    info = encoder.describe() | {"grid": list(feats.grid), "weights_hash": encoder.weights_hash()}
    return ProbeResult(name=name, grid=tuple(feats.grid), channels=int(grid.shape[0]), weights_hash=encoder.weights_hash(),
                       info=info, image=image, pca_rgb=rgb, image_source=source)
