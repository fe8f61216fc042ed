"""Diffusion features (optional extra `diffusers`): SD UNet ``up_blocks[0]`` at t=1 with an empty prompt; DiT / SD3 blocks.

diffusers is an optional extra: every spec reports ``offline_available() == False`` unless diffusers is
importable and the weights are in the local cache, and building raises a clear NotAvailableError otherwise.
Only the SD 1.x / 2.x UNet path is implemented (tested on tiny random components); SDim, SDXL, DiT and SD3
are registered with their paper settings but not implemented yet.
"""

from __future__ import annotations

import importlib.util

import torch

from engine.encoders.base import Preprocessing
from engine.encoders.common import ModuleEncoder, hf_cached, require_hub
from engine.encoders.registry import EncoderSpec, register_encoder, register_family
from engine.errors import InputError, NotAvailableError

HALF = (0.5, 0.5, 0.5)  # diffusion VAEs take [-1, 1]


def _diffusers():
    if importlib.util.find_spec("diffusers") is None:
        raise NotAvailableError("diffusion encoders need the optional extra: pip install diffusers==0.42.1")
    import diffusers

    return diffusers


class UNetUpFeatures(torch.nn.Module):
    """VAE-encode, noise to timestep t (fixed seed), run the UNet with a fixed prompt embedding, keep up_blocks[i].

    ``alphas_cumprod`` is the scheduler's noise schedule; the UNet stops being useful after the hooked block,
    but runs to the end (diffusers has no early exit).
    """

    def __init__(self, vae, unet, prompt_embeds: torch.Tensor, alphas_cumprod: torch.Tensor, t: int, up_index: int) -> None:
        super().__init__()
        self.vae, self.unet = vae, unet
        self.register_buffer("prompt_embeds", prompt_embeds, persistent=False)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)
        self.t, self.up_index = t, up_index
        self._captured: torch.Tensor | None = None
        unet.up_blocks[up_index].register_forward_hook(self._capture)

    def _capture(self, _module, _inputs, output) -> None:
        self._captured = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latents = self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor
        generator = torch.Generator(device="cpu").manual_seed(0)
        noise = torch.randn(latents.shape[1:], generator=generator).to(latents).expand_as(latents)
        t = torch.full((x.shape[0],), self.t, device=x.device, dtype=torch.long)
        alpha = self.alphas_cumprod[t].view(-1, 1, 1, 1).to(latents.dtype)
        noisy = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
        embeds = self.prompt_embeds.expand(x.shape[0], -1, -1)
        self.unet(noisy, t, encoder_hidden_states=embeds)
        return self._captured


def unet_encoder(spec: EncoderSpec, vae, unet, prompt_embeds, alphas_cumprod, layer: str | None) -> ModuleEncoder:
    """Wrap SD components (any size, tiny ones in tests) in the dense-feature contract."""
    up_index = int(layer) if layer is not None else int(spec.params.get("up_index", 0))
    if not 0 <= up_index < len(unet.up_blocks):
        raise InputError(f"up block index must be 0..{len(unet.up_blocks) - 1}")
    module = UNetUpFeatures(vae, unet, prompt_embeds, alphas_cumprod, int(spec.params.get("t", 1)), up_index).eval()
    size = int(spec.params.get("image_size", 512))
    with torch.inference_mode():
        probe = module(torch.zeros(1, 3, size, size))
    stride = size // probe.shape[-1]
    return ModuleEncoder(
        name=spec.name,
        family=spec.family,
        module=module,
        forward=lambda m, x: m(x),
        preprocessing=Preprocessing((size, size), "stretch", HALF, HALF),
        patch_size=stride,
        stride=stride,
        embed_dim=int(probe.shape[1]),
        layer=f"up_blocks.{up_index}",
        info={"source": spec.source, "t": int(spec.params.get("t", 1))},
    )


def _build(spec: EncoderSpec, layer: str | None) -> ModuleEncoder:
    diffusers = _diffusers()
    repo = spec.params["repo"]
    kind = spec.params["kind"]
    if kind != "sd-unet":
        raise NotAvailableError(f"{spec.name}: the {kind} feature extractor is registered but not implemented yet")
    require_hub(repo, f"encoder {spec.name!r}")
    try:
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(repo, torch_dtype=torch.float32, safety_checker=None)
    except Exception as exc:
        raise NotAvailableError(f"could not load {repo}: {str(exc).splitlines()[0]}") from exc
    with torch.inference_mode():
        embeds = pipe.encode_prompt("", "cpu", 1, False)[0]
    return unet_encoder(spec, pipe.vae, pipe.unet, embeds, pipe.scheduler.alphas_cumprod, layer)


def _offline(spec: EncoderSpec) -> bool:
    return importlib.util.find_spec("diffusers") is not None and hf_cached(spec.params["repo"], "model_index.json")


register_family("diffusion", _build, _offline)
_SPECS = [
    ("SD1.5", "runwayml/stable-diffusion-v1-5", "sd-unet", 768, "Stable Diffusion 1.5 UNet up_blocks[0], t=1, empty prompt"),
    ("SD2.1", "stabilityai/stable-diffusion-2-1", "sd-unet", 768, "Stable Diffusion 2.1 UNet up_blocks[0], t=1, empty prompt"),
    ("SDim", "lambdalabs/sd-image-variations-diffusers", "sd-image-variations", 768, "SD image variations UNet (CLIP-image conditioned)"),
    ("SDXL", "stabilityai/stable-diffusion-xl-base-1.0", "sdxl-unet", 512, "SDXL base UNet up_blocks[0], t=1, empty prompt"),
    ("DiT", "facebook/DiT-XL-2-512", "dit", 512, "DiT-XL/2 transformer block, 2x2 tokens merged into channels"),
    ("SD3", "stabilityai/stable-diffusion-3-medium-diffusers", "sd3", 512, "SD3 medium transformer block, 2x2 tokens merged"),
]
for _name, _repo, _kind, _size, _desc in _SPECS:
    register_encoder(
        EncoderSpec(_name, "diffusion", _desc, True, f"hf:{_repo}", {"repo": _repo, "kind": _kind, "image_size": _size, "t": 1}, paper_setting=_name)
    )
