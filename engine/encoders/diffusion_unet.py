"""UNet diffusion features (SD 1.x/2.x, SD image variations, SDXL): ``up_blocks[i]`` output at t=1, fixed noise."""

from __future__ import annotations

import torch

from engine.encoders.base import CLIP_MEAN, CLIP_STD
from engine.encoders.common import ModuleEncoder
from engine.encoders.diffusion_common import (
    SELF_IMAGE_NORMS,
    BlockCapture,
    DiffusionParams,
    ddpm_noisy,
    diffusers_module,
    load_or_fail,
    parse_index,
    require_weights,
    vae_factor,
    vae_latents,
    wrap,
)
from engine.encoders.registry import EncoderSpec
from engine.errors import InputError


class SelfImageContext(torch.nn.Module):
    """SD image variations conditioned on the image itself: its CLIP image embedding as a 1-token context.

    ``norm="clip"`` maps the [-1, 1] input to CLIP's mean/std (what the pipeline's feature extractor does);
    ``norm="paper"`` feeds the [-1, 1] tensor as is (the released code). Both resize bilinearly to the
    image encoder's input size.
    """

    def __init__(self, image_encoder, norm: str) -> None:
        super().__init__()
        if norm not in SELF_IMAGE_NORMS:
            raise InputError(f"image_norm must be one of {', '.join(SELF_IMAGE_NORMS)}, got {norm!r}")
        self.image_encoder, self.norm = image_encoder, norm
        self.size = int(image_encoder.config.image_size)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.norm == "clip":
            pixels = ((pixels + 1) / 2 - self.mean.to(pixels)) / self.std.to(pixels)
        return self.image_encoder(pixel_values=pixels).image_embeds.unsqueeze(1)


class UNetUpFeatures(torch.nn.Module):
    """VAE-encode, noise to timestep t (fixed seed), run the UNet with fixed conditioning, return ``up_blocks[i]``.

    ``prompt_embeds`` (1 x L x D) is the cross-attention context (text for SD/SDXL, a CLIP image embedding
    for SD image variations). ``pooled_embeds`` (1 x P), when given, turns on SDXL's ``added_cond_kwargs``:
    ``text_embeds`` = pooled embedding and ``time_ids`` = (H, W, 0, 0, H, W) for the actual input size
    (original size = target size = the model input, no crop). ``context`` (a module, x -> B x L x D), when
    given, replaces ``prompt_embeds`` by a per-image context.
    """

    def __init__(
        self,
        vae,
        unet,
        prompt_embeds: torch.Tensor,
        alphas_cumprod: torch.Tensor,
        t: int,
        up_index: int,
        pooled_embeds: torch.Tensor | None = None,
        context: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.vae, self.unet, self.context = vae, unet, context
        self.register_buffer("prompt_embeds", prompt_embeds, persistent=False)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)
        self.register_buffer("pooled_embeds", pooled_embeds, persistent=False)
        self.t, self.up_index = t, up_index
        self.capture = BlockCapture(unet.up_blocks[up_index])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latents = vae_latents(self.vae, x)
        batch = x.shape[0]
        t = torch.full((batch,), self.t, device=x.device, dtype=torch.long)
        noisy = ddpm_noisy(latents, self.alphas_cumprod, t)
        embeds = self.prompt_embeds.expand(batch, -1, -1) if self.context is None else self.context(x)
        kwargs = {"encoder_hidden_states": embeds.to(latents)}
        if self.pooled_embeds is not None:
            height, width = x.shape[-2:]
            time_ids = torch.tensor([[height, width, 0, 0, height, width]], device=x.device, dtype=latents.dtype)
            kwargs["added_cond_kwargs"] = {
                "text_embeds": self.pooled_embeds.to(latents).expand(batch, -1),
                "time_ids": time_ids.expand(batch, -1),
            }
        return self.capture.run(lambda: self.unet(noisy, t, **kwargs))


def unet_encoder(
    spec: EncoderSpec,
    vae,
    unet,
    prompt_embeds: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    layer: str | None,
    pooled_embeds: torch.Tensor | None = None,
    conditioning: str = "empty prompt",
    context: torch.nn.Module | None = None,
) -> ModuleEncoder:
    """Wrap UNet components (any size, tiny random ones in tests) in the dense-feature contract."""
    params = DiffusionParams.of(spec.params)
    up_index = parse_index(layer, params.up_index or 0, len(unet.up_blocks), "up block")
    t = params.t if params.t is not None else 1
    module = UNetUpFeatures(vae, unet, prompt_embeds, alphas_cumprod, t, up_index, pooled_embeds, context).eval()
    cond = {"t": t, "conditioning": conditioning, "prompt_embeds": prompt_embeds}
    if pooled_embeds is not None:
        cond["pooled_embeds"] = pooled_embeds
    stride, multiple = unet_geometry(vae, unet, up_index)
    return wrap(spec, module, f"up_blocks.{up_index}", cond, stride, multiple)


def unet_geometry(vae, unet, up_index: int) -> tuple[int, int]:
    """(stride of ``up_blocks[up_index]``'s output, what input sides must divide by) from the architecture."""
    downs = sum(1 for block in unet.down_blocks if getattr(block, "downsamplers", None))
    ups = sum(1 for block in unet.up_blocks[: up_index + 1] if getattr(block, "upsamplers", None))
    factor = vae_factor(vae)
    return factor * 2 ** (downs - ups), factor * 2**downs


def sdim_encoder(
    spec: EncoderSpec, vae, unet, alphas_cumprod: torch.Tensor, layer: str | None, image_encoder=None
) -> ModuleEncoder:
    """SD image variations. ``conditioning="zero"`` (default): a zero CLIP image embedding (1 x 1 x D), the
    pipeline's own unconditional embedding. ``"self-image"``: the image's own CLIP image embedding (the released
    code; needs ``image_encoder``, a ``CLIPVisionModelWithProjection``), normalised as ``image_norm`` says.
    """
    params = DiffusionParams.of(spec.params)
    mode = params.conditioning or "zero"
    zeros = torch.zeros(1, 1, int(unet.config.cross_attention_dim))
    if mode == "zero":
        return unet_encoder(spec, vae, unet, zeros, alphas_cumprod, layer, conditioning="zero image embedding")
    if mode != "self-image" or image_encoder is None:
        raise InputError(f"{spec.name}: SDim conditioning must be 'zero' or 'self-image' (with an image encoder), got {mode!r}")
    norm = params.image_norm or "clip"
    context = SelfImageContext(image_encoder, norm)
    return unet_encoder(spec, vae, unet, zeros, alphas_cumprod, layer, conditioning=f"self image embedding ({norm})", context=context)


def sdxl_encoder(
    spec: EncoderSpec, vae, unet, prompt_embeds: torch.Tensor, pooled_embeds: torch.Tensor, alphas_cumprod, layer: str | None
) -> ModuleEncoder:
    """SDXL: both text encoders' empty-prompt embeddings (1 x 77 x 2048, pooled 1 x 1280) + size time ids."""
    return unet_encoder(spec, vae, unet, prompt_embeds, alphas_cumprod, layer, pooled_embeds=pooled_embeds)



def build_sd(spec: EncoderSpec, layer: str | None) -> ModuleEncoder:
    diffusers, repo = diffusers_module(), DiffusionParams.of(spec.params).repo
    require_weights(repo, f"encoder {spec.name!r}")
    pipe = load_or_fail(lambda: diffusers.StableDiffusionPipeline.from_pretrained(repo, safety_checker=None), repo)
    with torch.inference_mode():
        embeds = pipe.encode_prompt("", "cpu", 1, False)[0]
    return unet_encoder(spec, pipe.vae, pipe.unet, embeds, pipe.scheduler.alphas_cumprod, layer)


def build_sdim(spec: EncoderSpec, layer: str | None) -> ModuleEncoder:
    diffusers, repo = diffusers_module(), DiffusionParams.of(spec.params).repo
    require_weights(repo, f"encoder {spec.name!r}")
    # The CLIP image encoder is loaded only for the self-image variant (a zero embedding needs none).
    vae = load_or_fail(lambda: diffusers.AutoencoderKL.from_pretrained(repo, subfolder="vae"), repo)
    unet = load_or_fail(lambda: diffusers.UNet2DConditionModel.from_pretrained(repo, subfolder="unet"), repo)
    scheduler = load_or_fail(lambda: diffusers.DDPMScheduler.from_pretrained(repo, subfolder="scheduler"), repo)
    image_encoder = None
    if DiffusionParams.of(spec.params).conditioning == "self-image":
        from transformers import CLIPVisionModelWithProjection

        image_encoder = load_or_fail(lambda: CLIPVisionModelWithProjection.from_pretrained(repo, subfolder="image_encoder"), repo)
    return sdim_encoder(spec, vae, unet, scheduler.alphas_cumprod, layer, image_encoder)


def build_sdxl(spec: EncoderSpec, layer: str | None) -> ModuleEncoder:
    diffusers, repo = diffusers_module(), DiffusionParams.of(spec.params).repo
    require_weights(repo, f"encoder {spec.name!r}")
    pipe = load_or_fail(lambda: diffusers.StableDiffusionXLPipeline.from_pretrained(repo), repo)
    with torch.inference_mode():
        embeds, _, pooled, _ = pipe.encode_prompt("", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)
    return sdxl_encoder(spec, pipe.vae, pipe.unet, embeds, pooled, pipe.scheduler.alphas_cumprod, layer)
