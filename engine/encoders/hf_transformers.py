"""Hugging Face `transformers` vision towers (CLIP, SigLIP, SigLIP2 incl. NaFlex, DINOv2 +registers), by model_type table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.encoders.base import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from engine.encoders.common import ModuleEncoder, hf_cached, parse_layer, require_hub, tokens_to_grid
from engine.encoders.params import FamilyParams, check_int, check_mapping, check_text, check_view
from engine.encoders.registry import EncoderSpec, register_family
from engine.errors import InputError, NotAvailableError, first_line

HALF = (0.5, 0.5, 0.5)
DEFAULT_LAYER = -2  # LLaVA's mm_vision_select_layer: output of the second-to-last block


@dataclass(frozen=True)
class HFParams(FamilyParams):
    """Where the tower comes from (a hub ``repo``, a local ``path``, or a ``config`` dict with ``model_type`` for a
    seeded random init) and how it is read (input side, hidden-state index, resize strategy)."""

    family = "hf-transformers"
    repo: str | None = None
    path: str | None = None
    config: dict | None = None
    seed: int | None = None
    image_size: int | None = None
    layer: int | str | None = None
    resize: str | None = None

    def __post_init__(self) -> None:
        check_text(self.family, "repo", self.repo)
        check_text(self.family, "path", self.path)
        check_mapping(self.family, "config", self.config)
        if self.config is not None and "model_type" not in self.config:
            raise InputError(f"{self.family} encoder parameter config needs a model_type")
        if self.config is None and not self.path and not self.repo:
            raise InputError(f"{self.family} encoder parameters name neither a config, a local path nor a hub repo")
        check_int(self.family, "seed", self.seed)
        check_view(self.family, self.image_size, self.layer, self.resize)


@dataclass(frozen=True)
class HFArch:
    """How to build and read one transformers vision tower."""

    model_class: str
    config_class: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    has_cls: bool
    vision_sub_config: bool  # composite (text+vision) configs keep the tower in .vision_config
    interpolate_kw: bool  # forward accepts interpolate_pos_encoding
    patchified: bool = False  # SigLIP2 (NaFlex) takes flattened patches + attention mask + spatial shapes


ARCHS: dict[str, HFArch] = {
    "clip": HFArch("CLIPVisionModel", "CLIPVisionConfig", CLIP_MEAN, CLIP_STD, True, True, True),
    "clip_vision_model": HFArch("CLIPVisionModel", "CLIPVisionConfig", CLIP_MEAN, CLIP_STD, True, False, True),
    "siglip": HFArch("SiglipVisionModel", "SiglipVisionConfig", HALF, HALF, False, True, True),
    "siglip_vision_model": HFArch("SiglipVisionModel", "SiglipVisionConfig", HALF, HALF, False, False, True),
    "dinov2": HFArch("Dinov2Model", "Dinov2Config", IMAGENET_MEAN, IMAGENET_STD, True, False, False),
    "dinov2_with_registers": HFArch(
        "Dinov2WithRegistersModel", "Dinov2WithRegistersConfig", IMAGENET_MEAN, IMAGENET_STD, True, False, False
    ),
}
ARCHS["siglip2"] = HFArch("Siglip2VisionModel", "Siglip2VisionConfig", HALF, HALF, False, True, False, True)
ARCHS["siglip2_vision_model"] = HFArch("Siglip2VisionModel", "Siglip2VisionConfig", HALF, HALF, False, False, False, True)


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """B x C x H x W -> B x (h*w) x (patch*patch*C), the layout of transformers' SigLIP2 image processor."""
    b, c, height, width = x.shape
    h, w = height // patch, width // patch
    x = x[:, :, : h * patch, : w * patch].reshape(b, c, h, patch, w, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, h * w, patch * patch * c)


def _native_size(cfg) -> int:
    if hasattr(cfg, "image_size"):
        return int(cfg.image_size)
    return round(int(cfg.num_patches) ** 0.5) * int(cfg.patch_size)  # SigLIP2: a square grid of num_patches


def _arch(model_type: str) -> HFArch:
    if model_type not in ARCHS:
        raise InputError(f"unsupported transformers model_type {model_type!r} (supported: {', '.join(sorted(ARCHS))})")
    return ARCHS[model_type]


def _prefix_tokens(model_type: str, cfg) -> int:
    arch = ARCHS[model_type]
    registers = int(getattr(cfg, "num_register_tokens", 0) or 0)
    return int(arch.has_cls) + registers


def _read_preprocessor(source: str) -> dict:
    """preprocessor_config.json of a local dir or a cached hub repo ({} when absent)."""
    path = Path(source)
    if path.is_dir():
        file = path / "preprocessor_config.json"
        return json.loads(file.read_text()) if file.exists() else {}
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(source, "preprocessor_config.json")).read_text())
    except Exception:
        return {}


def _input_size(pre_cfg: dict, cfg, override: int | None) -> int:
    if override:
        return int(override)
    crop = pre_cfg.get("crop_size")
    if isinstance(crop, dict) and "height" in crop:
        return int(crop["height"])
    if isinstance(crop, int):
        return crop
    size = pre_cfg.get("size")
    if isinstance(size, dict) and "height" in size:
        return int(size["height"])
    return _native_size(cfg)


def load_tower(spec: EncoderSpec) -> tuple[torch.nn.Module, str, dict]:
    """The vision tower module, its model_type and its preprocessor config, from config dict, local dir or hub id."""
    import transformers

    params = HFParams.of(spec.params)
    if params.config is not None:  # random init from a config dict (tests, random controls)
        cfg_dict = dict(params.config)
        model_type = cfg_dict.pop("model_type")
        arch = _arch(model_type)
        cfg = getattr(transformers, arch.config_class)(**cfg_dict)
        torch.manual_seed(params.seed or 0)
        return getattr(transformers, arch.model_class)(cfg), model_type, {}
    source = params.path or params.repo
    if params.path and not Path(source).is_dir():
        raise NotAvailableError(f"the model directory {source} of encoder {spec.name!r} does not exist")
    if not params.path:
        require_hub(source, f"encoder {spec.name!r}")
    try:
        cfg = transformers.AutoConfig.from_pretrained(source)
        arch = _arch(cfg.model_type)
        model_cls = getattr(transformers, arch.model_class)
        model = model_cls.from_pretrained(source, dtype=torch.float32, use_safetensors=True if params.path else None)
    except (InputError, NotAvailableError):
        raise
    except OSError as exc:
        raise NotAvailableError(f"could not load {source!r} for encoder {spec.name!r}: {first_line(exc)}") from exc
    except (ValueError, RuntimeError, KeyError) as exc:
        raise InputError(f"{source!r} is not a usable transformers vision model: {first_line(exc)}") from exc
    return model, cfg.model_type, _read_preprocessor(source)


def encoder_from_tower(
    spec: EncoderSpec, model: torch.nn.Module, model_type: str, pre_cfg: dict, layer: str | None, view: FamilyParams
) -> ModuleEncoder:
    """Wrap a loaded tower in the dense-feature contract (layer selection, prefix dropping, preprocessing);
    ``view`` holds ``image_size``, ``layer`` and ``resize`` (``HFParams`` or a wrapping family's own parameters)."""
    arch = ARCHS[model_type]
    cfg = model.config
    patch = int(cfg.patch_size)
    size = _input_size(pre_cfg, cfg, view.image_size)
    mean = tuple(pre_cfg.get("image_mean", arch.mean))
    std = tuple(pre_cfg.get("image_std", arch.std))
    prefix = _prefix_tokens(model_type, cfg)
    index = parse_layer(layer if layer is not None else view.layer, DEFAULT_LAYER)
    n_states = int(cfg.num_hidden_layers) + 1
    if not -n_states <= index < n_states:
        raise InputError(f"layer {index} out of range for {spec.name!r} ({cfg.num_hidden_layers} blocks; hidden states 0..{n_states - 1})")
    native = _native_size(cfg)

    def forward(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        grid = (x.shape[-2] // patch, x.shape[-1] // patch)
        kwargs = {"output_hidden_states": True}
        if arch.patchified:
            pixels = patchify(x, patch)
            kwargs["pixel_attention_mask"] = torch.ones(pixels.shape[:2], dtype=torch.long, device=x.device)
            kwargs["spatial_shapes"] = torch.tensor([grid] * x.shape[0], dtype=torch.long, device=x.device)
            out = module(pixel_values=pixels, **kwargs)
        else:
            if arch.interpolate_kw and tuple(x.shape[-2:]) != (native, native):
                kwargs["interpolate_pos_encoding"] = True
            out = module(pixel_values=x, **kwargs)
        return tokens_to_grid(out.hidden_states[index], prefix, grid)

    return ModuleEncoder(
        name=spec.name,
        family=spec.family,
        module=model,
        forward=forward,
        preprocessing=Preprocessing((size, size), view.resize or "stretch", mean, std),
        patch_size=patch,
        stride=patch,
        embed_dim=int(cfg.hidden_size),
        prefix_tokens=prefix,
        layer=str(index),
        info={"model_type": model_type, "source": spec.source, "num_hidden_layers": int(cfg.num_hidden_layers)},
    )


def _build(spec: EncoderSpec, layer: str | None) -> ModuleEncoder:
    model, model_type, pre_cfg = load_tower(spec)
    return encoder_from_tower(spec, model, model_type, pre_cfg, layer, HFParams.of(spec.params))


def _offline(spec: EncoderSpec) -> bool:
    params = HFParams.of(spec.params)
    if params.config is not None:
        return True
    if params.path:
        return (Path(params.path) / "config.json").exists()
    return hf_cached(params.repo)


register_family("hf-transformers", _build, _offline, HFParams)
