"""open_clip ViTs: model name + pretrained tag, a local checkpoint, or a config dict; dense tokens via forward_intermediates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from engine.encoders.base import CLIP_MEAN, CLIP_STD, Preprocessing
from engine.encoders.common import ModuleEncoder, hf_cached, parse_layer, require_hub
from engine.encoders.params import FamilyParams, check_int, check_mapping, check_text, check_view
from engine.encoders.registry import EncoderSpec, register_family
from engine.errors import InputError, NotAvailableError, first_line

DEFAULT_LAYER = -2
HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class OpenCLIPParams(FamilyParams):
    """An open_clip ``model_name`` with a ``pretrained`` tag (hub) or a local ``checkpoint``, or a ``model_cfg`` dict
    (seeded random init); how the tower is read (input side, block index, resize strategy)."""

    family = "open-clip"
    model_name: str | None = None
    pretrained: str | None = None
    checkpoint: str | None = None
    model_cfg: dict | None = None
    seed: int | None = None
    image_size: int | None = None
    layer: int | str | None = None
    resize: str | None = None

    def __post_init__(self) -> None:
        for name in ("model_name", "pretrained", "checkpoint"):
            check_text(self.family, name, getattr(self, name))
        check_mapping(self.family, "model_cfg", self.model_cfg)
        if self.model_cfg is None and not (self.model_name and (self.pretrained or self.checkpoint)):
            raise InputError(f"{self.family} encoder parameters need a model_cfg, or a model_name with a pretrained "
                             "tag or a checkpoint")
        check_int(self.family, "seed", self.seed)
        check_view(self.family, self.image_size, self.layer, self.resize)


def _hub_repo(model_name: str, tag: str) -> str | None:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, tag) or {}
    hub = cfg.get("hf_hub") or ""
    return hub.rstrip("/") or None


def _create(model_name: str) -> torch.nn.Module:
    import open_clip

    if model_name not in open_clip.list_models():
        raise InputError(f"unknown open_clip model name {model_name!r} (see open_clip.list_models())")
    return open_clip.create_model(model_name, pretrained=None)


def load_checkpoint_into(model: torch.nn.Module, path: Path) -> None:
    """Load a safetensors / weights-only torch checkpoint into an open_clip model, with clear key errors."""
    from engine.encoders.safe_files import load_state_dict_file, strict_load

    state = load_state_dict_file(path)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    strict_load(model, state, what="open_clip checkpoint")


def load_visual(spec: EncoderSpec) -> tuple[torch.nn.Module, tuple, tuple]:
    """The open_clip visual tower and its mean/std."""
    import open_clip

    params = OpenCLIPParams.of(spec.params)
    if params.model_cfg is not None:
        torch.manual_seed(params.seed or 0)
        model = open_clip.model.CLIP(**params.model_cfg)
    elif params.checkpoint:
        path = Path(params.checkpoint)
        if not path.exists():
            raise NotAvailableError(f"the open_clip checkpoint {path} of encoder {spec.name!r} does not exist")
        model = _create(params.model_name)
        load_checkpoint_into(model, path)
    else:
        name, tag = params.model_name, params.pretrained
        repo = _hub_repo(name, tag)
        if repo is None:
            raise NotAvailableError(f"open_clip {name}/{tag} has no Hugging Face hub source usable here")
        require_hub(repo, f"encoder {spec.name!r}")
        try:
            model = open_clip.create_model(name, pretrained=tag)
        except Exception as exc:
            raise NotAvailableError(f"could not load open_clip {name}/{tag}: {first_line(exc)}") from exc
    cfg = open_clip.get_pretrained_cfg(params.model_name or "", params.pretrained or "") or {}
    return model.visual, tuple(cfg.get("mean", CLIP_MEAN)), tuple(cfg.get("std", CLIP_STD))


def _build(spec: EncoderSpec, layer: str | None) -> ModuleEncoder:
    visual, mean, std = load_visual(spec)
    params = OpenCLIPParams.of(spec.params)
    if not hasattr(visual, "forward_intermediates") or not hasattr(visual, "transformer"):
        raise InputError(f"encoder {spec.name!r}: only open_clip ViT towers give dense tokens")
    depth = len(visual.transformer.resblocks)
    index = parse_layer(layer if layer is not None else params.layer, DEFAULT_LAYER)
    if not -depth <= index < depth:
        raise InputError(f"layer {index} out of range for {spec.name!r} ({depth} blocks)")
    block = index % depth
    patch = int(visual.patch_size[0])
    size = int(params.image_size or visual.image_size[0])

    def forward(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        out = module.forward_intermediates(x, indices=[block], intermediates_only=True, output_fmt="NCHW")
        return out["image_intermediates"][0]

    return ModuleEncoder(
        name=spec.name,
        family=spec.family,
        module=visual,
        forward=forward,
        preprocessing=Preprocessing((size, size), params.resize or "stretch", mean, std),
        patch_size=patch,
        stride=patch,
        embed_dim=int(visual.transformer.width),
        prefix_tokens=1,
        layer=str(block - depth),
        info={"source": spec.source, "blocks": depth},
    )


def _offline(spec: EncoderSpec) -> bool:
    params = OpenCLIPParams.of(spec.params)
    if params.model_cfg is not None:
        return True
    if params.checkpoint:
        return Path(params.checkpoint).exists()
    if not _any_open_clip_weights_cached():
        return False  # nothing to find: spares the registry listing the seconds of importing open_clip
    repo = _hub_repo(params.model_name, params.pretrained)
    return repo is not None and any(hf_cached(repo, f) for f in HUB_FILES)


def _any_open_clip_weights_cached() -> bool:
    """Whether the local Hugging Face cache holds any open_clip weights file at all (a glob, no import)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    cache = Path(constants.HF_HUB_CACHE)
    return any(next(cache.glob(f"models--*/snapshots/*/{name}"), None) is not None for name in HUB_FILES)


register_family("open-clip", _build, _offline, OpenCLIPParams)
