"""Shared pieces of the diffusion feature extractors: lazy diffusers import, latents, fixed noise, block hooks, 2x2 merge."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.encoders.base import Preprocessing
from engine.encoders.common import ModuleEncoder, hf_cached, require_hub
from engine.encoders.params import FamilyParams, check_choice, check_int, check_text
from engine.encoders.registry import EncoderSpec
from engine.errors import InputError, NotAvailableError, first_line
from engine.hashing import hash_bytes, hash_obj

HALF = (0.5, 0.5, 0.5)  # diffusion VAEs take [-1, 1]
DIFFUSION_CODE_VERSION = "diffusion-v2"
NOISE_SEED = 0
MERGE_ORDERS = ("clean", "paper")
KINDS = ("sd-unet", "sd-image-variations", "sdxl-unet", "dit", "sd3")
CLASS_MODES = ("null", "none")  # DiT: the null class label, or no class embedding at all (the released code)
SELF_IMAGE_NORMS = ("clip", "paper")


@dataclass(frozen=True)
class DiffusionParams(FamilyParams):
    """A diffusers pipeline (``repo``: hub id or local folder) of one ``kind``, the input side, the timestep and
    what conditions it: ``conditioning`` (SDim: ``zero`` or ``self-image``; SD3: its label), ``image_norm`` (SDim
    self-image), ``class_mode`` (DiT), ``merge_order`` of the 2x2 token merge; which UNet up block / transformer
    block is read (``up_index`` / ``block``); ``seed``: of a random init (tiny pipelines; hub weights ignore it)."""

    family = "diffusion"
    repo: str | None = None
    kind: str | None = None
    image_size: int | None = None
    t: int | None = None
    conditioning: str | None = None
    image_norm: str | None = None
    class_mode: str | None = None
    merge_order: str | None = None
    up_index: int | None = None
    block: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        check_text(self.family, "repo", self.repo)
        check_choice(self.family, "kind", self.kind, KINDS)
        check_int(self.family, "image_size", self.image_size, 1)
        check_int(self.family, "t", self.t, 0)
        check_text(self.family, "conditioning", self.conditioning)
        check_choice(self.family, "image_norm", self.image_norm, SELF_IMAGE_NORMS)
        check_choice(self.family, "class_mode", self.class_mode, CLASS_MODES)
        check_choice(self.family, "merge_order", self.merge_order, MERGE_ORDERS)
        check_int(self.family, "up_index", self.up_index)
        check_int(self.family, "block", self.block)
        check_int(self.family, "seed", self.seed)


def diffusers_module():
    """The diffusers package, or a one-line NotAvailableError naming the optional extra."""
    if importlib.util.find_spec("diffusers") is None:
        raise NotAvailableError("diffusion encoders need the optional extra: pip install diffusers==0.42.1")
    import diffusers

    return diffusers


def weights_present(repo: str) -> bool:
    """A local diffusers folder, or a hub repo whose ``model_index.json`` is in the local cache (no network)."""
    return (Path(repo) / "model_index.json").is_file() or hf_cached(repo, "model_index.json")


def require_weights(repo: str, what: str) -> None:
    """Pass for a local folder / cached repo; otherwise the hub must answer (one NotAvailableError line if not)."""
    if not weights_present(repo):
        require_hub(repo, what)


def load_or_fail(loader: Callable[[], object], repo: str):
    """Run a hub loader; any failure becomes one NotAvailableError line naming the repo."""
    try:
        return loader()
    except Exception as exc:
        raise NotAvailableError(f"could not load {repo}: {first_line(exc, 1000)}") from exc


def vae_latents(vae, x: torch.Tensor) -> torch.Tensor:
    """Deterministic latents: the posterior mean (the released code samples), shifted/scaled as the VAE config says."""
    latents = vae.encode(x).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None)
    if shift is not None:
        latents = latents - shift
    return latents * vae.config.scaling_factor


def vae_factor(vae) -> int:
    """Pixels per latent cell: AutoencoderKL downsamples once per encoder block except the last."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def fixed_noise(latents: torch.Tensor) -> torch.Tensor:
    """One seeded noise map shared by every image of the batch, so features do not depend on batch composition."""
    generator = torch.Generator(device="cpu").manual_seed(NOISE_SEED)
    return torch.randn(latents.shape[1:], generator=generator).to(latents).expand_as(latents)


def ddpm_noisy(latents: torch.Tensor, alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """DDPM forward process q(x_t | x_0) with the scheduler's cumulative alphas."""
    alpha = alphas_cumprod.to(latents.device)[t].view(-1, 1, 1, 1).to(latents.dtype)
    return alpha.sqrt() * latents + (1 - alpha).sqrt() * fixed_noise(latents)


class _Stop(Exception):
    """Raised by the capture hook: nothing after the hooked block is needed (diffusers models have no early exit)."""


class BlockCapture:
    """A forward hook on one block that keeps its output (``select`` picks it from tuple outputs) and stops the model.

    The hook acts only inside ``run``, so several captures may sit on the same model (other layers) unharmed.
    """

    def __init__(self, block: torch.nn.Module, select: Callable[[object], torch.Tensor] | None = None) -> None:
        self.select = select or (lambda out: out)
        self.value: torch.Tensor | None = None
        self.active = False
        self.handle = block.register_forward_hook(self._hook)

    def _hook(self, _module, _inputs, output) -> None:
        if self.active:
            self.value = self.select(output)
            raise _Stop

    def run(self, call: Callable[[], object]) -> torch.Tensor:
        self.value, self.active = None, True
        try:
            with contextlib.suppress(_Stop):
                call()
        finally:
            self.active = False
        if self.value is None:
            raise RuntimeError("the hooked diffusion block did not run")
        return self.value


def space_to_depth(grid: torch.Tensor, order: str = "clean") -> torch.Tensor:
    """B x C x h x w -> B x 4C x h/2 x w/2, merging each 2x2 cell block into channels.

    ``clean``: ``pixel_unshuffle`` order, channel = c * 4 + dy * 2 + dx. ``paper``: the released code's
    ``unfold`` order, channel = (dx * 2 + dy) * C + c. Same values, permuted channels.
    """
    if order not in MERGE_ORDERS:
        raise InputError(f"merge order must be one of {', '.join(MERGE_ORDERS)}, got {order!r}")
    b, c, h, w = grid.shape
    if h % 2 or w % 2:
        raise InputError(f"a 2x2 merge needs an even token grid, got {h}x{w}")
    if order == "clean":
        return torch.nn.functional.pixel_unshuffle(grid, 2)
    cells = grid.reshape(b, c, h // 2, 2, w // 2, 2)  # b, c, y, dy, x, dx
    return cells.permute(0, 5, 3, 1, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def parse_index(layer: str | None, default: int, count: int, what: str) -> int:
    """A block index from user input (negative counts from the end), checked against ``count`` blocks."""
    try:
        index = default if layer in (None, "", "default") else int(layer)
    except (TypeError, ValueError):
        raise InputError(f"{what} index must be an integer, got {layer!r}") from None
    if not -count <= index < count:
        raise InputError(f"{what} index must be in -{count}..{count - 1}, got {index}")
    return index % count


def wrap(
    spec: EncoderSpec,
    module: torch.nn.Module,
    layer: str,
    conditioning: dict,
    stride: int,
    multiple: int,
) -> ModuleEncoder:
    """Check the geometry with a small probe and wrap ``module`` in the dense-feature contract.

    ``stride`` comes from the architecture (VAE factor x UNet up-block scale, or VAE factor x patch x 2
    for merged transformer tokens); ``multiple`` is what input sides must be divisible by. A probe at
    2 x ``multiple`` pixels (cheap, unlike a probe at the full input size) must give exactly that stride.
    """
    params = DiffusionParams.of(spec.params)
    size = params.image_size or 512
    if size <= 0 or size % multiple:
        raise InputError(f"{spec.name}: input size must be a positive multiple of {multiple}, got {size}")
    probe_size = 2 * multiple
    with torch.inference_mode():
        probe = module(torch.zeros(1, 3, probe_size, probe_size))
    if tuple(probe.shape[-2:]) != (probe_size // stride,) * 2:
        raise InputError(f"{spec.name}: a {probe_size} px probe gave a {tuple(probe.shape[-2:])} grid, expected stride {stride}")
    info = {"source": spec.source, "t": params.t if params.t is not None else 1, "kind": params.kind}
    info |= {k: v for k, v in conditioning.items() if not isinstance(v, torch.Tensor)}
    return ModuleEncoder(
        name=spec.name,
        family=spec.family,
        module=module,
        forward=lambda m, x: m(x),
        preprocessing=Preprocessing((size, size), "stretch", HALF, HALF),
        patch_size=stride,
        stride=stride,
        embed_dim=int(probe.shape[1]),
        layer=layer,
        extra_hash=conditioning_hash(conditioning),
        info=info,
    )


def conditioning_hash(conditioning: dict) -> str:
    """Hash of what conditions the model besides its weights (prompt embeddings, t, class, merge order)."""
    parts = {DIFFUSION_CODE_VERSION: True}
    for key, value in sorted(conditioning.items()):
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu", torch.float32).contiguous()
            value = [list(t.shape), hash_bytes(t.reshape(-1).numpy().tobytes())]
        parts[key] = value
    return hash_obj(parts)
