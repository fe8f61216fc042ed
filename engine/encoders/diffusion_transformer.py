"""Diffusion-transformer features (DiT, SD3): one block's image tokens at t=1 on the patch grid, 2x2 merged into channels."""

from __future__ import annotations

import torch

from engine.encoders.common import ModuleEncoder, tokens_to_grid
from engine.encoders.diffusion_common import (
    CLASS_MODES,
    BlockCapture,
    DiffusionParams,
    ddpm_noisy,
    diffusers_module,
    fixed_noise,
    load_or_fail,
    parse_index,
    require_weights,
    space_to_depth,
    vae_factor,
    vae_latents,
    wrap,
)
from engine.encoders.registry import EncoderSpec
from engine.errors import InputError


class _TokenGridFeatures(torch.nn.Module):
    """VAE latents -> noised to t -> transformer; the hooked block's image tokens -> patch grid -> 2x2 merge."""

    def __init__(self, vae, transformer, block_index: int, t: int, merge_order: str, select=None) -> None:
        super().__init__()
        self.vae, self.transformer = vae, transformer
        self.t, self.merge_order = t, merge_order
        self.patch = int(transformer.config.patch_size)
        self.capture = BlockCapture(transformer.transformer_blocks[block_index], select)

    def _noisy(self, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _call(self, noisy: torch.Tensor, t: torch.Tensor) -> None:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latents = vae_latents(self.vae, x)
        t = torch.full((x.shape[0],), self.t, device=x.device, dtype=torch.long)
        noisy = self._noisy(latents, t)
        tokens = self.capture.run(lambda: self._call(noisy, t))
        grid = tokens_to_grid(tokens, 0, (latents.shape[-2] // self.patch, latents.shape[-1] // self.patch))
        return space_to_depth(grid, self.merge_order)


class DiTBlockFeatures(_TokenGridFeatures):
    """DiT (class-conditional, DDPM): class label = the null (classifier-free) class, or no class embedding at all.

    ``class_mode="none"`` reproduces the released code, which replaces every block's timestep+label embedding
    by the timestep embedding alone (done here with a hook that zeroes the label embedding).
    """

    def __init__(self, vae, transformer, alphas_cumprod, block_index: int, t: int, merge_order: str, class_mode: str) -> None:
        super().__init__(vae, transformer, block_index, t, merge_order)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)
        self.null_class = int(transformer.config.num_embeds_ada_norm)
        table = transformer.transformer_blocks[0].norm1.emb.class_embedder.embedding_table
        if class_mode == "null" and table.num_embeddings <= self.null_class:
            raise InputError("this DiT has no null-class embedding (trained without label dropout): use class_mode='none'")
        if class_mode == "none":
            for block in transformer.transformer_blocks:
                block.norm1.emb.class_embedder.register_forward_hook(self._drop_label)

    def _drop_label(self, _module, _inputs, output: torch.Tensor) -> torch.Tensor | None:
        # Only while this extractor runs: other extractors may share the transformer.
        return torch.zeros_like(output) if self.capture.active else None

    def _noisy(self, latents, t):
        return ddpm_noisy(latents, self.alphas_cumprod, t)

    def _call(self, noisy, t):
        labels = torch.full_like(t, self.null_class)
        self.transformer(noisy, timestep=t, class_labels=labels)


class SD3BlockFeatures(_TokenGridFeatures):
    """SD3 (rectified flow): x_t = (1 - s) x_0 + s * noise with s = t / 1000; a joint block's image-stream output."""

    def __init__(self, vae, transformer, prompt_embeds, pooled_embeds, block_index: int, t: int, merge_order: str) -> None:
        super().__init__(vae, transformer, block_index, t, merge_order, select=lambda out: out[1])
        self.register_buffer("prompt_embeds", prompt_embeds, persistent=False)
        self.register_buffer("pooled_embeds", pooled_embeds, persistent=False)

    def _noisy(self, latents, t):
        sigma = (t.to(latents.dtype) / 1000.0).view(-1, 1, 1, 1)
        return (1 - sigma) * latents + sigma * fixed_noise(latents)

    def _call(self, noisy, t):
        batch = noisy.shape[0]
        self.transformer(
            hidden_states=noisy,
            encoder_hidden_states=self.prompt_embeds.to(noisy).expand(batch, -1, -1),
            pooled_projections=self.pooled_embeds.to(noisy).expand(batch, -1),
            timestep=t,
        )


def _settings(spec: EncoderSpec, transformer, vae, layer: str | None) -> tuple[int, int, str, int]:
    params = DiffusionParams.of(spec.params)
    count = len(transformer.transformer_blocks)
    block = parse_index(layer, params.block if params.block is not None else -1, count, "transformer block")
    stride = vae_factor(vae) * int(transformer.config.patch_size) * 2
    return block, params.t if params.t is not None else 1, params.merge_order or "clean", stride


def dit_encoder(spec: EncoderSpec, vae, transformer, alphas_cumprod: torch.Tensor, layer: str | None) -> ModuleEncoder:
    """Wrap DiT components (DiT-XL/2 or tiny random ones) in the dense-feature contract."""
    block, t, merge, stride = _settings(spec, transformer, vae, layer)
    class_mode = DiffusionParams.of(spec.params).class_mode or "null"
    if class_mode not in CLASS_MODES:
        raise InputError(f"DiT class_mode must be one of {', '.join(CLASS_MODES)}, got {class_mode!r}")
    module = DiTBlockFeatures(vae, transformer, alphas_cumprod, block, t, merge, class_mode).eval()
    cond = {"t": t, "class_mode": class_mode, "merge_order": merge}
    return wrap(spec, module, f"transformer_blocks.{block}", cond, stride, stride)


def sd3_encoder(
    spec: EncoderSpec, vae, transformer, prompt_embeds: torch.Tensor, pooled_embeds: torch.Tensor, layer: str | None
) -> ModuleEncoder:
    """Wrap SD3 components; ``prompt_embeds`` 1 x L x joint_attention_dim, ``pooled_embeds`` 1 x pooled_projection_dim."""
    block, t, merge, stride = _settings(spec, transformer, vae, layer)
    module = SD3BlockFeatures(vae, transformer, prompt_embeds, pooled_embeds, block, t, merge).eval()
    cond = {"t": t, "merge_order": merge, "prompt_embeds": prompt_embeds, "pooled_embeds": pooled_embeds,
            "conditioning": DiffusionParams.of(spec.params).conditioning or "empty prompt"}
    return wrap(spec, module, f"transformer_blocks.{block}", cond, stride, stride)



def build_dit(spec: EncoderSpec, layer: str | None) -> ModuleEncoder:
    diffusers, repo = diffusers_module(), DiffusionParams.of(spec.params).repo
    require_weights(repo, f"encoder {spec.name!r}")
    pipe = load_or_fail(lambda: diffusers.DiTPipeline.from_pretrained(repo), repo)
    return dit_encoder(spec, pipe.vae, pipe.transformer, pipe.scheduler.alphas_cumprod, layer)


def build_sd3(spec: EncoderSpec, layer: str | None) -> ModuleEncoder:
    diffusers, repo = diffusers_module(), DiffusionParams.of(spec.params).repo
    require_weights(repo, f"encoder {spec.name!r}")
    # Like the released code: no T5 encoder; diffusers then fills the T5 part of the context with zeros.
    pipe = load_or_fail(lambda: diffusers.StableDiffusion3Pipeline.from_pretrained(
        repo, text_encoder_3=None, tokenizer_3=None), repo)
    with torch.inference_mode():
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt="", prompt_2=None, prompt_3=None, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
        )
    return sd3_encoder(spec, pipe.vae, pipe.transformer, embeds, pooled, layer)
