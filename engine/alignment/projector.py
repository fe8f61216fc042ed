"""The LLaVA-1.5 ``mlp2x_gelu`` stage-1 projector: build, save/load, and import of LLaVA checkpoints."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from engine import config
from engine.atomic import atomic_path
from engine.errors import InputError, first_line
from engine.hashing import hash_file

PROJECTOR_TYPES = ("mlp2x_gelu", "linear")
_PREFIXES = ("model.mm_projector.", "base_model.model.model.mm_projector.", "mm_projector.")


def build_projector(in_dim: int, out_dim: int, kind: str = "mlp2x_gelu") -> nn.Sequential:
    """``Linear(in, out) -> GELU -> Linear(out, out)`` (state-dict keys ``0.*``, ``2.*`` as in LLaVA)."""
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    if kind == "linear":
        return nn.Sequential(nn.Linear(in_dim, out_dim))
    raise InputError(f"unknown projector type {kind!r}; choose one of {', '.join(PROJECTOR_TYPES)}")


def projector_dims(state: dict[str, torch.Tensor]) -> tuple[int, int, str]:
    """(in_dim, out_dim, kind) read from a projector state dict."""
    if "0.weight" not in state:
        raise InputError("projector weights lack the key mm_projector.0.weight")
    out_dim, in_dim = state["0.weight"].shape
    kind = "mlp2x_gelu" if "2.weight" in state else "linear"
    return int(in_dim), int(out_dim), kind


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(f"projector file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles with code, truncated files, anything unsafe
        raise InputError(f"{path.name} is not a safe weights file (only tensors are accepted): {first_line(exc)}") from exc
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path.name} does not hold a flat dict of tensors")
    return obj


def extract_projector_state(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Projector keys (``0.weight`` ...) from a LLaVA checkpoint dict, tolerating ``model.mm_projector.`` prefixes."""
    state: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        short = key
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                short = key[len(prefix) :]
                break
        if short in {"0.weight", "0.bias", "2.weight", "2.bias"}:
            state[short] = value
    in_dim, out_dim, kind = projector_dims(state)
    needed = ["0.weight", "0.bias"] + (["2.weight", "2.bias"] if kind == "mlp2x_gelu" else [])
    missing = [k for k in needed if k not in state]
    if missing:
        raise InputError(f"projector weights lack {', '.join('mm_projector.' + k for k in missing)}")
    expected = {"0.weight": (out_dim, in_dim), "0.bias": (out_dim,), "2.weight": (out_dim, out_dim), "2.bias": (out_dim,)}
    for key in needed:
        if tuple(state[key].shape) != expected[key]:
            raise InputError(f"mm_projector.{key} has shape {tuple(state[key].shape)}, expected {expected[key]}")
    return {k: state[k].float() for k in needed}


def load_projector(path: str | Path, in_dim: int | None = None, out_dim: int | None = None) -> nn.Sequential:
    """A projector from a LLaVA ``mm_projector.bin`` / safetensors file, checked against the expected widths."""
    state = extract_projector_state(_read_weights(Path(path)))
    file_in, file_out, kind = projector_dims(state)
    if in_dim is not None and file_in != in_dim:
        raise InputError(f"projector input width {file_in} does not match the encoder width {in_dim}")
    if out_dim is not None and file_out != out_dim:
        raise InputError(f"projector output width {file_out} does not match the LLM hidden size {out_dim}")
    module = build_projector(file_in, file_out, kind)
    module.load_state_dict(state)
    return module


def save_projector(module: nn.Module, path: str | Path) -> Path:
    """Save as safetensors with LLaVA key names (``model.mm_projector.0.weight`` ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"model.mm_projector.{k}": v.detach().float().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return path


def import_projector(path: str | Path, in_dim: int, out_dim: int) -> tuple[Path, str]:
    """Validate a projector file and store a safetensors copy under ``<home>/projectors``; returns (path, sha)."""
    module = load_projector(path, in_dim=in_dim, out_dim=out_dim)
    folder = config.subdir("projectors")
    tmp = save_projector(module, folder / f"incoming-{uuid.uuid4().hex}.safetensors")
    sha = hash_file(tmp)
    final = folder / f"{sha}.safetensors"
    shutil.move(str(tmp), final)
    return final, sha
