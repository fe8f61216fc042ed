"""Keypoint-pair datasets behind one interface: SPair-71k (and PF-PASCAL/PF-WILLOW style) from disk, and builtin.

Coordinates are continuous pixel coordinates (x, y) in the original image, the same frame as
``engine.encoders.preprocess.ImageGeometry`` (annotations of SPair are used as given).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError, NotAvailableError, first_line
from engine.hashing import hash_obj

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


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError as exc:
        raise InputError(f"missing annotation file {path}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed JSON in {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"malformed annotation {path}: expected a JSON object")
    return data


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


class SPairDataset(Dataset):
    """SPair-71k in its standard layout.

    ``<root>/JPEGImages/<cat>/<im>.jpg``, ``ImageAnnotation/<cat>/<im>.json`` (``kps``: {"0": [x, y] | null, ...},
    ``bndbox``, ``image_width``/``image_height``), ``PairAnnotation/{trn,val,test}/<id>-<src>-<trg>:<cat>.json``
    with ``src_imname``, ``trg_imname``, ``category``, ``src_kps``/``trg_kps`` (corresponding keypoints visible in
    both images), ``kps_ids``, ``src_bndbox``/``trg_bndbox`` [x1, y1, x2, y2], ``src_imsize``/``trg_imsize``
    [w, h, c]; optional ``Layout/{large,small}/{trn,val,test}.txt`` (pair file stems, one per line).
    """

    def __init__(self, root: str | Path, layout: str = "large") -> None:
        self.root = Path(root).expanduser()
        self.name = f"spair:{self.root}"
        for sub in ("JPEGImages", "PairAnnotation"):
            if not (self.root / sub).is_dir():
                raise InputError(f"not an SPair-71k folder: {self.root / sub} is missing")
        self.layout = layout
        self.categories = sorted(p.name for p in (self.root / "JPEGImages").iterdir() if p.is_dir())
        stamp = []
        for split in SPLITS:
            folder = self.root / "PairAnnotation" / split
            if folder.is_dir():
                stamp.append((split, len(os.listdir(folder)), folder.stat().st_mtime_ns))
        self.key = hash_obj({"kind": "spair", "root": str(self.root.resolve()), "stamp": stamp})
        self._pairs: dict[str, list[Pair]] = {}

    def _pair_files(self, split: str) -> list[Path]:
        folder = self.root / "PairAnnotation" / split
        layout_file = self.root / "Layout" / self.layout / f"{split}.txt"
        if layout_file.is_file():
            stems = [line.strip() for line in layout_file.read_text(encoding="utf-8").splitlines() if line.strip()]
            inside = folder.resolve()
            files = []
            for i, stem in enumerate(stems, start=1):
                path = (folder / f"{stem}.json").resolve()
                if path.parent != inside:  # a stem is a file name in the split folder, never a path
                    raise InputError(f"{layout_file}: line {i}: pair stem {stem!r} leaves {folder}")
                files.append(path)
            return files
        if not folder.is_dir():
            raise InputError(f"SPair split {split!r} not found: {folder} is missing")
        return sorted(folder.glob("*.json"))

    def _parse(self, path: Path) -> Pair:
        data = _read_json(path)
        try:
            category = str(data["category"])
            src, trg = str(data["src_imname"]), str(data["trg_imname"])
            src_kps = np.asarray(data["src_kps"], dtype=np.float64).reshape(-1, 2)
            trg_kps = np.asarray(data["trg_kps"], dtype=np.float64).reshape(-1, 2)
            src_bbox = tuple(float(v) for v in data["src_bndbox"])
            trg_bbox = tuple(float(v) for v in data["trg_bndbox"])
            src_size = (int(data["src_imsize"][0]), int(data["src_imsize"][1]))
            trg_size = (int(data["trg_imsize"][0]), int(data["trg_imsize"][1]))
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise InputError(f"malformed SPair pair annotation {path}: {type(exc).__name__}: {exc}") from exc
        if len(src_kps) != len(trg_kps) or len(src_bbox) != 4 or len(trg_bbox) != 4:
            raise InputError(f"malformed SPair pair annotation {path}: keypoint counts or bboxes do not match")
        for field, size in (("src_imsize", src_size), ("trg_imsize", trg_size)):
            if min(size) < 1:
                raise InputError(f"malformed SPair pair annotation {path}: {field} {list(size)} is not a positive image size")
        for field, box in (("src_bndbox", src_bbox), ("trg_bndbox", trg_bbox)):
            if not all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
                raise InputError(f"malformed SPair pair annotation {path}: {field} {list(box)} is not an [x1, y1, x2, y2] box")
        if not (np.isfinite(src_kps).all() and np.isfinite(trg_kps).all()):
            raise InputError(f"malformed SPair pair annotation {path}: non-finite keypoint coordinates")
        return Pair(
            pair_id=path.stem,
            category=category,
            src_id=f"{category}/{src}",
            trg_id=f"{category}/{trg}",
            src_kps=src_kps,
            trg_kps=trg_kps,
            visible=np.ones(len(src_kps), dtype=bool),
            src_bbox=src_bbox,  # type: ignore[arg-type]
            trg_bbox=trg_bbox,  # type: ignore[arg-type]
            src_size=src_size,
            trg_size=trg_size,
        )

    def pairs(self, split: str = "test", limit: int | None = None) -> list[Pair]:
        split = normalise_split(split)
        if split not in self._pairs:
            self._pairs[split] = [self._parse(p) for p in self._pair_files(split)]
        pairs = self._pairs[split]
        return pairs if limit is None else pairs[: max(0, int(limit))]

    def _image_path(self, image_id: str) -> Path:
        path = (self.root / "JPEGImages" / image_id).resolve()
        if self.root.resolve() not in path.parents:
            raise InputError(f"image id {image_id!r} escapes the dataset folder")
        return path

    def load_image(self, image_id: str) -> np.ndarray:
        return read_rgb(self._image_path(image_id))

    def image_key(self, image_id: str) -> str:
        path = self._image_path(image_id)
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise InputError(f"missing image file {path}") from exc
        return f"spair:{self.key}:{image_id}:{st.st_size}:{st.st_mtime_ns}"


def normalise_split(split: str) -> str:
    if split not in SPLIT_ALIASES:
        raise InputError(f"unknown split {split!r} (use trn, val or test)")
    return SPLIT_ALIASES[split]


_OPENED: dict[str, Dataset] = {}  # only builtin: generating it costs a second


def open_dataset(spec: str, split: str = "test") -> Dataset:
    """``builtin`` or ``spair:/path/to/SPair-71k`` -> a Dataset (instances are reused within a process)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("empty dataset spec (use builtin or spair:/path/to/SPair-71k)")
    spec = spec.strip()
    normalise_split(split)
    if spec == "builtin":
        if spec not in _OPENED:
            from engine.correspondence.builtin import BuiltinDataset

            _OPENED[spec] = BuiltinDataset()
        return _OPENED[spec]
    if spec.startswith("spair:"):
        path = Path(spec[len("spair:") :]).expanduser()
        if not path.exists():
            raise NotAvailableError(f"SPair-71k folder {path} does not exist")
        return SPairDataset(path)
    raise InputError(f"unknown dataset spec {spec!r} (use builtin or spair:/path/to/SPair-71k)")


def forget_opened() -> None:
    """Drop reused dataset instances (tests rebuild folders in place)."""
    _OPENED.clear()
