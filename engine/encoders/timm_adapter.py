"""timm ViTs through ``forward_intermediates(..., output_fmt="NCHW")``; random init offline, pretrained from the hub."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.encoders.base import Preprocessing
from engine.encoders.common import ModuleEncoder, hf_cached, parse_layer, require_hub
from engine.encoders.params import FamilyParams, check_int, check_mapping, check_text, check_view
from engine.encoders.registry import EncoderSpec, register_family
from engine.errors import InputError, NotAvailableError, first_line

DEFAULT_LAYER = -2


@dataclass(frozen=True)
class TimmParams(FamilyParams):
    """A timm ``model_name`` with its ``create_model`` keyword arguments, the seed of a random init, and how the
    tower is read (input side, block index, resize strategy); weights from the hub when the spec is pretrained."""

    family = "timm"
    model_name: str | None = None
    kwargs: dict | None = None
    seed: int | None = None
    image_size: int | None = None
    layer: int | str | None = None
    resize: str | None = None

    def __post_init__(self) -> None:
        if self.model_name is None:
            raise InputError(f"{self.family} encoder parameters need a model_name")
        check_text(self.family, "model_name", self.model_name)
        check_mapping(self.family, "kwargs", self.kwargs)
        check_int(self.family, "seed", self.seed)
        check_view(self.family, self.image_size, self.layer, self.resize)


def _create(spec: EncoderSpec) -> torch.nn.Module:
    import timm

    params = TimmParams.of(spec.params)
    kwargs = dict(params.kwargs or {})
    name = params.model_name
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
    torch.manual_seed(params.seed or 0)
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
    params = TimmParams.of(spec.params)
    if not hasattr(model, "forward_intermediates") or not hasattr(model, "blocks"):
        raise InputError(f"encoder {spec.name!r}: only timm ViTs with forward_intermediates are supported")
    depth = len(model.blocks)
    index = parse_layer(layer if layer is not None else params.layer, DEFAULT_LAYER)
    if not -depth <= index < depth:
        raise InputError(f"layer {index} out of range for {spec.name!r} ({depth} blocks)")
    block = index % depth
    patch = int(model.patch_embed.patch_size[0])
    cfg = model.pretrained_cfg or {}
    size = int(params.image_size or model.patch_embed.img_size[0])

    def forward(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module.forward_intermediates(x, indices=[block], intermediates_only=True, output_fmt="NCHW")[0]

    return ModuleEncoder(
        name=spec.name,
        family=spec.family,
        module=model,
        forward=forward,
        preprocessing=Preprocessing(
            (size, size), params.resize or "stretch", tuple(cfg.get("mean", (0.5,) * 3)), tuple(cfg.get("std", (0.5,) * 3))
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
    repo = _hub_repo(TimmParams.of(spec.params).model_name)
    return repo is not None and (hf_cached(repo, "model.safetensors") or hf_cached(repo, "pytorch_model.bin"))


register_family("timm", _build, _offline, TimmParams)
