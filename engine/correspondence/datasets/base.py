"""The dataset interface: a keypoint pair, the abstract dataset, splits and the one image decoder.

Coordinates are continuous pixel coordinates (x, y) in the original image, the same frame as
``engine.encoders.preprocess.ImageGeometry``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError, first_line

SPLITS = ("trn", "val", "test")
SPLIT_ALIASES = {"train": "trn", "trn": "trn", "val": "val", "test": "test"}


@dataclass
class Pair:
    """One source/target pair; ``src_kps[k]`` corresponds to ``trg_kps[k]``; ``visible[k]`` in both images."""

    pair_id: str
    category: str
    src_id: str
    trg_id: str
    src_kps: np.ndarray
    trg_kps: np.ndarray
    visible: np.ndarray
    src_bbox: tuple[float, float, float, float]
    trg_bbox: tuple[float, float, float, float]
    src_size: tuple[int, int]
    trg_size: tuple[int, int]

    def to_dict(self) -> dict:
        return {
            "pair_id": self.pair_id,
            "category": self.category,
            "src_id": self.src_id,
            "trg_id": self.trg_id,
            "src_kps": np.asarray(self.src_kps).tolist(),
            "trg_kps": np.asarray(self.trg_kps).tolist(),
            "visible": np.asarray(self.visible, dtype=bool).tolist(),
            "src_bbox": [float(v) for v in self.src_bbox],
            "trg_bbox": [float(v) for v in self.trg_bbox],
            "src_size": [int(v) for v in self.src_size],
            "trg_size": [int(v) for v in self.trg_size],
        }


class Dataset(ABC):
    """A set of keypoint pairs over images; ``key`` identifies its content for caches."""

    name: str
    key: str
    categories: list[str]

    @abstractmethod
    def pairs(self, split: str = "test", limit: int | None = None) -> list[Pair]:
        """The pairs of a split (first ``limit`` in a deterministic order)."""

    @abstractmethod
    def load_image(self, image_id: str) -> np.ndarray:
        """H x W x 3 uint8 RGB."""

    @abstractmethod
    def image_key(self, image_id: str) -> str:
        """Content identity of one image (part of feature-cache keys)."""

    def describe(self) -> dict:
        return {"name": self.name, "key": self.key, "categories": list(self.categories)}


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to H x W x 3 uint8 RGB (one clear error when unreadable)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # > MAX_IMAGE_PIXELS: refuse, never decode
            with Image.open(path) as img:
                if img.width < 1 or img.height < 1:
                    raise InputError(f"image file {path} has a zero size ({img.width} x {img.height})")
                return np.array(img.convert("RGB"))
    except FileNotFoundError as exc:
        raise InputError(f"missing image file {path}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"image file {path} is too large to decode safely ({first_line(exc, 120)})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"unreadable image file {path}: {first_line(exc, 160)}") from exc


def normalise_split(split: str) -> str:
    if split not in SPLIT_ALIASES:
        raise InputError(f"unknown split {split!r} (use trn, val or test)")
    return SPLIT_ALIASES[split]
