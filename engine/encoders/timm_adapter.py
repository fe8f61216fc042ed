"""timm ViTs through ``forward_intermediates(..., output_fmt="NCHW")``; random init offline, pretrained from the hub."""

from __future__ import annotations

import torch

from engine.encoders.base import Preprocessing
from engine.encoders.common import ModuleEncoder, hf_cached, parse_layer, require_hub
from engine.encoders.registry import EncoderSpec, register_encoder, register_family
from engine.errors import InputError, NotAvailableError, first_line

DEFAULT_LAYER = -2


def _create(spec: EncoderSpec) -> torch.nn.Module:
    import timm

    params = spec.params
    kwargs = dict(params.get("kwargs", {}))
    name = params["model_name"]
    if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
        raise InputError(f"unknown timm model {name!r}")
    if spec.pretrained:
        repo = _hub_repo(name)
        if repo is None:
            raise NotAvailableError(f"timm model {name!r} has no Hugging Face hub weights")
        require_hub(repo, f"encoder {spec.name!r}")
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as exc:
            raise NotAvailableError(f"could not load timm {name}: {first_line(exc)}") from exc
    torch.manual_seed(int(params.get("seed", 0)))
    return timm.create_model(name, pretrained=False, **kwargs)


def _hub_repo(name: str) -> str | None:
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:
        return None
    hub = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    return hub or None


def _build(spec: EncoderSpec, layer: str | None) -> ModuleEncoder:
    model = _create(spec)
    if not hasattr(model, "forward_intermediates") or not hasattr(model, "blocks"):
        raise InputError(f"encoder {spec.name!r}: only timm ViTs with forward_intermediates are supported")
    depth = len(model.blocks)
    index = parse_layer(layer if layer is not None else spec.params.get("layer"), DEFAULT_LAYER)
    if not -depth <= index < depth:
        raise InputError(f"layer {index} out of range for {spec.name!r} ({depth} blocks)")
    block = index % depth
    patch = int(model.patch_embed.patch_size[0])
    cfg = model.pretrained_cfg or {}
    size = int(spec.params.get("image_size") or model.patch_embed.img_size[0])

    def forward(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module.forward_intermediates(x, indices=[block], intermediates_only=True, output_fmt="NCHW")[0]

    return ModuleEncoder(
        name=spec.name,
        family=spec.family,
        module=model,
        forward=forward,
        preprocessing=Preprocessing(
            (size, size), spec.params.get("resize", "stretch"), tuple(cfg.get("mean", (0.5,) * 3)), tuple(cfg.get("std", (0.5,) * 3))
        ),
        patch_size=patch,
        stride=patch,
        embed_dim=int(model.embed_dim),
        prefix_tokens=int(model.num_prefix_tokens),
        layer=str(block - depth),
        info={"source": spec.source, "blocks": depth},
    )


def _offline(spec: EncoderSpec) -> bool:
    if not spec.pretrained:
        return True
    repo = _hub_repo(spec.params["model_name"])
    return repo is not None and (hf_cached(repo, "model.safetensors") or hf_cached(repo, "pytorch_model.bin"))


register_family("timm", _build, _offline)
register_encoder(
    EncoderSpec(
        name="timm-vit-s16-random",
        family="timm",
        description="timm ViT-S/16 architecture with random weights (seed 0): a control",
        pretrained=False,
        source="random:timm/vit_small_patch16_224",
        params={"model_name": "vit_small_patch16_224", "seed": 0},
    )
)
