"""Embedding dumps in the authors' layout (``<dir>/tensor_1.pt ...``) or safetensors / npy, loaded safely and lazily."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from engine.errors import InputError, first_line
from engine.hashing import hash_obj

_NAME = re.compile(r"^tensor_(\d+)\.(pt|pth|safetensors|npy)$")
SUFFIXES = (".pt", ".pth", ".safetensors", ".npy")
MAX_DUMP_BYTES = 4 * 1024**3  # one image's [tokens, dim] is ~5 MB at paper scale; refuse absurd files


def _indexed_files(folder: Path) -> dict[int, Path]:
    files: dict[int, Path] = {}
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if not match:
            continue
        index = int(match.group(1))
        if index in files:
            raise InputError(f"{folder}: two dumps for image {index} ({files[index].name}, {path.name})")
        if path.is_symlink():
            raise InputError(f"{folder}: {path.name} is a symlink; dumps must be plain files")
        files[index] = path
    return files


def dump_files(folder: str | Path, n_images: int | None = None) -> list[Path]:
    """The files of a dump folder in image order (tensor_1, tensor_2, ...); gaps or too few images -> InputError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"embedding dump folder not found: {folder}")
    files = _indexed_files(folder)
    if not files:
        raise InputError(f"{folder} holds no tensor_<i>.pt / .safetensors / .npy files")
    count = len(files)
    expected = set(range(1, count + 1))
    if set(files) != expected:
        missing = sorted(expected - set(files))[:5]
        raise InputError(f"{folder}: dumps must be numbered tensor_1 ... tensor_{count}; missing {missing}")
    if n_images is not None:
        if n_images < 1:
            raise InputError("--images must be at least 1")
        if n_images > count:
            raise InputError(f"{folder} holds {count} images, fewer than the {n_images} asked for")
        count = n_images
    return [files[i] for i in range(1, count + 1)]


def load_tensor(path: str | Path) -> torch.Tensor:
    """One image's embeddings as a 2-D ``[tokens, dim]`` tensor (dtype kept; pickles with code are refused)."""
    path = Path(path)
    if path.stat().st_size > MAX_DUMP_BYTES:
        raise InputError(f"{path.name} is larger than {MAX_DUMP_BYTES >> 30} GiB; not one image's embeddings")
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as fh:
                keys = list(fh.keys())
                if len(keys) != 1:
                    raise InputError(f"{path.name}: expected one tensor in the file, found {len(keys)}")
                tensor = fh.get_tensor(keys[0])
        elif path.suffix == ".npy":
            tensor = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict) and len(obj) == 1:
                obj = next(iter(obj.values()))
            if not isinstance(obj, torch.Tensor):
                raise InputError(f"{path.name}: expected a tensor, found {type(obj).__name__}")
            tensor = obj
    except InputError:
        raise
    except Exception as exc:  # any unreadable / unsafe file is one input error
        raise InputError(f"{path.name}: cannot be read safely ({type(exc).__name__}: {first_line(exc, 160)})") from exc
    while tensor.ndim > 2 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 2:
        raise InputError(f"{path.name}: expected a [tokens, dim] tensor, found shape {tuple(tensor.shape)}")
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise InputError(f"{path}: empty [tokens, dim] tensor of shape {tuple(tensor.shape)}")
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise InputError(f"{path}: dtype {tensor.dtype} is not a real embedding")
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise InputError(f"{path}: {bad} non-finite values (NaN or inf) in the embeddings")
    return tensor


def iter_dump(folder: str | Path, n_images: int | None = None) -> Iterator[torch.Tensor]:
    """Yield each image's ``[tokens, dim]`` tensor in index order, one file at a time (bounded memory)."""
    for path in dump_files(folder, n_images):
        yield load_tensor(path)


def dump_fingerprint(folder: str | Path, n_images: int | None = None) -> str:
    """Cheap identity of a dump for the record: file names and sizes."""
    files = dump_files(folder, n_images)
    return hash_obj([[p.name, p.stat().st_size] for p in files])
