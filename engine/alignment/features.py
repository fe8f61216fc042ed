"""Frozen encoder tokens for alignment, with an on-disk cache keyed by encoder weights hash + image hash."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from engine import config
from engine.atomic import atomic_path
from engine.encoders.base import Preprocessing, VisionEncoder, to_uint8_rgb
from engine.errors import InputError, NotAvailableError
from engine.hashing import hash_bytes, hash_obj

MAX_IMAGE_PIXELS = 64_000_000
CODE_VERSION = "alignment-features-1"


class PixelPatchEncoder(VisionEncoder):
    """Raw-pixel baseline used when the encoder registry is not installed: each p x p patch's pixels is a token."""

    family = "pixels"
    prefix_tokens = 0

    def __init__(self, input_size: int = 64, patch: int = 8) -> None:
        super().__init__()
        self.name = f"alignment-pixel-patches-{input_size}-{patch}"
        self.patch_size = self.stride = patch
        self.embed_dim = 3 * patch * patch
        self._pre = Preprocessing(input_size=(input_size, input_size))

    @property
    def preprocessing(self) -> Preprocessing:
        return self._pre

    def weights_hash(self) -> str:
        return hash_obj(["pixel-patches", self._pre.key(), self.patch_size])

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        b, c, h, w = pixels.shape
        patches = pixels.unfold(2, p, p).unfold(3, p, p)  # B C h w p p
        return patches.permute(0, 1, 4, 5, 2, 3).reshape(b, c * p * p, h // p, w // p)


_LOCAL_ENCODERS: dict[str, Callable[[], VisionEncoder]] = {"alignment-pixel-patches": PixelPatchEncoder}


def build_encoder(name: str, device: str = "cpu") -> VisionEncoder:
    """An encoder from the shared registry, else from this module's small fallback table."""
    if name in _LOCAL_ENCODERS:
        return _LOCAL_ENCODERS[name]().to(device)
    try:
        registry = importlib.import_module("engine.encoders.registry")
    except ImportError as exc:
        raise NotAvailableError(f"encoder {name!r}: the encoder registry is not installed") from exc
    return registry.build_encoder(name, device=device)


def prepare(images: Sequence[np.ndarray], pre: Preprocessing) -> torch.Tensor:
    """uint8 H x W x 3 images -> normalised B x 3 x H x W (shared preprocessing when available)."""
    try:
        shared = importlib.import_module("engine.encoders.preprocess")
        pixels, _ = shared.prepare(list(images), pre)
        return pixels
    except ImportError:
        pass
    out = []
    for image in images:
        t = torch.from_numpy(to_uint8_rgb(image)).permute(2, 0, 1)[None].float() / 255.0
        out.append(F.interpolate(t, size=pre.input_size, mode="bilinear", antialias=True, align_corners=False)[0])
    batch = torch.stack(out)
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    return (batch - mean) / std


def read_image(path: str | Path) -> np.ndarray:
    """An untrusted image file -> uint8 RGB array (decompression bombs refused)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise InputError(f"{path.name}: {img.width}x{img.height} is too large an image")
            return np.array(img.convert("RGB"))
    except InputError:
        raise
    except Exception as exc:  # unreadable image is one input error
        raise InputError(f"{path.name}: not a readable image ({type(exc).__name__})") from exc


def encoder_key(encoder: VisionEncoder) -> str:
    return hash_obj([CODE_VERSION, encoder.describe(), encoder.weights_hash()])


class TokenCache:
    """Per-image token tensors of one encoder under ``<home>/features/alignment/<encoder key>/``."""

    def __init__(self, encoder: VisionEncoder, root: Path | None = None, batch_size: int = 16) -> None:
        self.encoder = encoder
        self.folder = (root or config.subdir("features") / "alignment") / encoder_key(encoder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self.hits = 0
        self.misses = 0

    def _file(self, image_hash: str) -> Path:
        return self.folder / f"{image_hash}.safetensors"

    def tokens(self, paths: Sequence[str | Path], image_hashes: Sequence[str] | None = None) -> torch.Tensor:
        """B x N x C tokens for image files, computing (in batches) only those not cached yet."""
        hashes = list(image_hashes) if image_hashes is not None else [hash_bytes(Path(p).read_bytes()) for p in paths]
        result: dict[int, torch.Tensor] = {}
        todo = []
        for i, h in enumerate(hashes):
            file = self._file(h)
            if file.is_file():
                result[i] = load_file(str(file))["tokens"]
                self.hits += 1
            else:
                todo.append(i)
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            pixels = prepare([read_image(paths[i]) for i in idx], self.encoder.preprocessing)
            with torch.inference_mode():
                toks = self.encoder.tokens(pixels).float().cpu()
            for j, i in enumerate(idx):
                tensor = toks[j].clone().contiguous()
                with atomic_path(self._file(hashes[i])) as tmp:  # unique temporary name: ranks may write the same image
                    save_file({"tokens": tensor}, str(tmp))
                result[i] = tensor
                self.misses += 1
        return torch.stack([result[i] for i in range(len(hashes))])
