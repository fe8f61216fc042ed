"""Shared pieces of the adapters: a torch-module encoder base, weight hashing, token grids and hub checks."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable

import torch

from engine.encoders.base import Preprocessing, VisionEncoder
from engine.errors import InputError, NotAvailableError


def state_dict_hash(module: torch.nn.Module, length: int = 16) -> str:
    """SHA-256 over parameter/buffer names, shapes, dtypes and bytes (changes whenever any weight changes)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}|{tuple(t.shape)}|{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:length]


def parse_layer(layer: str | int | None, default: int) -> int:
    """A layer index from user input ("-2", 11, None -> default); negative counts from the end."""
    if layer is None or layer == "default" or layer == "":
        return default
    try:
        return int(layer)
    except (TypeError, ValueError):
        raise InputError(f"layer must be an integer index (e.g. -2 for the second-to-last), got {layer!r}") from None


def tokens_to_grid(hidden: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """B x (prefix + h*w) x C tokens -> B x C x h x w, dropping the prefix (CLS / register) tokens."""
    h, w = grid
    spatial = hidden[:, prefix:, :]
    if spatial.shape[1] != h * w:
        raise InputError(f"expected {h * w} spatial tokens for a {h}x{w} grid, got {spatial.shape[1]}")
    return spatial.transpose(1, 2).reshape(hidden.shape[0], hidden.shape[2], h, w)


class ModuleEncoder(VisionEncoder):
    """An encoder wrapping one torch module and a forward function; weights hash computed once, lazily."""

    def __init__(
        self,
        *,
        name: str,
        family: str,
        module: torch.nn.Module,
        forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
        preprocessing: Preprocessing,
        patch_size: int,
        stride: int,
        embed_dim: int,
        prefix_tokens: int = 0,
        layer: str = "default",
        extra_hash: str = "",
        info: dict | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.family = family
        self.module = module.eval()
        for param in module.parameters():
            param.requires_grad_(False)
        self._forward_fn = forward
        self._preprocessing = preprocessing
        self.patch_size = patch_size
        self.stride = stride
        self.embed_dim = embed_dim
        self.prefix_tokens = prefix_tokens
        self.layer = layer
        self._extra_hash = extra_hash
        self._hash: str | None = None
        self.info = dict(info or {})

    @property
    def preprocessing(self) -> Preprocessing:
        return self._preprocessing

    def use_preprocessing_variant(self, variant: str) -> None:
        from engine.encoders.preprocess import variant_preprocessing

        self._preprocessing = variant_preprocessing(self._preprocessing, variant)
        self.info["preprocessing_variant"] = variant

    def weights_changed(self) -> None:
        """Forget the cached weights hash (after loading other weights into the module)."""
        self._hash = None

    def weights_hash(self) -> str:
        if self._hash is None:
            self._hash = hashlib.sha256((state_dict_hash(self.module) + self._extra_hash).encode()).hexdigest()[:16]
        return self._hash

    def modules(self) -> list[torch.nn.Module]:
        return [self.module]

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        param = next(self.module.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        return self._forward_fn(self.module, pixels.to(dtype))

    def describe(self) -> dict:
        out = super().describe()
        out.update(self.info)
        return out


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def hf_cached(repo_id: str, filename: str = "config.json") -> bool:
    """Whether the local Hugging Face cache holds ``filename`` of ``repo_id`` (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception:
        return False
    return isinstance(found, str)


def hub_reachable(host: str = "huggingface.co", timeout_s: float = 3.0) -> bool:
    """A quick TCP probe so that loading from the hub fails in seconds instead of hanging."""
    if hf_offline():
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def require_hub(repo_id: str, what: str) -> None:
    """Raise NotAvailableError unless ``repo_id`` is cached locally or the hub answers."""
    if hf_cached(repo_id) or hub_reachable():
        return
    mode = "HF_HUB_OFFLINE=1 is set" if hf_offline() else "huggingface.co is not reachable"
    raise NotAvailableError(f"{what} needs '{repo_id}' from the Hugging Face hub, which is not in the local cache and {mode}")
