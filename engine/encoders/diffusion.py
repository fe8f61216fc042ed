"""Diffusion encoder family (optional extra `diffusers`): SD 1.5/2.1, SD image variations, SDXL, DiT and SD3.

diffusers is an optional extra: every spec reports ``offline_available() == False`` unless diffusers is
importable and the weights are in the local cache, and building raises a clear NotAvailableError otherwise.
The extractors live in ``diffusion_unet`` (UNet ``up_blocks[i]``) and ``diffusion_transformer`` (DiT / SD3
block tokens, 2x2 merged into channels); see docs/encoders.md for the exact settings.
"""

from __future__ import annotations

import importlib.util

from engine.encoders.common import ModuleEncoder
from engine.encoders.diffusion_common import DiffusionParams, diffusers_module, weights_present
from engine.encoders.registry import EncoderSpec, register_family
from engine.errors import InputError


def _builders() -> dict:
    from engine.encoders import diffusion_transformer as tr
    from engine.encoders import diffusion_unet as un

    return {"sd-unet": un.build_sd, "sd-image-variations": un.build_sdim, "sdxl-unet": un.build_sdxl,
            "dit": tr.build_dit, "sd3": tr.build_sd3}


def _build(spec: EncoderSpec, layer: str | None) -> ModuleEncoder:
    diffusers_module()
    builders = _builders()
    kind = DiffusionParams.of(spec.params).kind
    if kind not in builders:
        raise InputError(f"{spec.name}: unknown diffusion kind {kind!r} (known: {', '.join(sorted(builders))})")
    return builders[kind](spec, layer)


def _offline(spec: EncoderSpec) -> bool:
    return importlib.util.find_spec("diffusers") is not None and weights_present(DiffusionParams.of(spec.params).repo)


register_family("diffusion", _build, _offline, DiffusionParams)
