"""Shared conformance checks every encoder family must pass, plus tiny random-init specs to run them on."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import torch

from engine.encoders.base import VisionEncoder
from engine.encoders.preprocess import prepare
from engine.encoders.registry import EncoderSpec, build_encoder, get_family, register_encoder

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}

TINY_SPECS = [
    EncoderSpec("test-tiny-clip", "hf-transformers", "tiny CLIP tower", False, "test",
                {"config": {"model_type": "clip_vision_model", "image_size": 32, "patch_size": 8} | TINY}),
    EncoderSpec("test-tiny-siglip", "hf-transformers", "tiny SigLIP tower", False, "test",
                {"config": {"model_type": "siglip_vision_model", "image_size": 32, "patch_size": 8} | TINY}),
    EncoderSpec("test-tiny-siglip2", "hf-transformers", "tiny SigLIP2 (NaFlex) tower", False, "test",
                {"config": {"model_type": "siglip2_vision_model", "num_patches": 16, "patch_size": 8} | TINY}),
    EncoderSpec("test-tiny-dinov2", "hf-transformers", "tiny DINOv2", False, "test",
                {"config": {"model_type": "dinov2", "image_size": 28, "patch_size": 14} | TINY, "image_size": 42}),
    EncoderSpec("test-tiny-dinov2-reg", "hf-transformers", "tiny DINOv2 + registers", False, "test",
                {"config": {"model_type": "dinov2_with_registers", "image_size": 28, "patch_size": 14, "num_register_tokens": 4} | TINY}),
    EncoderSpec("test-tiny-openclip", "open-clip", "tiny open_clip ViT", False, "test",
                {"model_cfg": {"embed_dim": 16,
                               "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
                               "text_cfg": {"context_length": 8, "vocab_size": 50, "width": 16, "heads": 2, "layers": 1}}}),
    EncoderSpec("test-tiny-timm", "timm", "tiny timm ViT", False, "test",
                {"model_name": "vit_tiny_patch16_224", "kwargs": {"img_size": 32, "depth": 2}, "image_size": 32}),
    EncoderSpec("test-tiny-effnet", "efficientnet-lite", "EfficientNet-Lite0 random at 64 px", False, "test",
                {"seed": 0, "image_size": 64}),
    EncoderSpec("test-tiny-pixels", "pixels", "pixels at 32 px", False, "test", {"patch": 8, "image_size": 32}),
]
for _spec in TINY_SPECS:
    register_encoder(_spec)
TINY_NAMES = [s.name for s in TINY_SPECS] + ["test-tiny-dinov2+test-tiny-pixels"]
EXPECTED_PREFIX = {"test-tiny-clip": 1, "test-tiny-siglip": 0, "test-tiny-siglip2": 0, "test-tiny-dinov2": 1, "test-tiny-dinov2-reg": 5,
                   "test-tiny-openclip": 1, "test-tiny-timm": 1}


def random_images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(40 + 7 * k, 50 + 5 * k, 3), dtype=np.uint8) for k in range(n)]


class EncoderConformance:
    """Mixin: subclasses provide ``make(name) -> VisionEncoder``; every test runs per encoder name."""

    def make(self, name: str) -> VisionEncoder:
        return build_encoder(name)

    def check_all(self, name: str) -> None:
        enc = self.make(name)
        pixels, _ = prepare(random_images(3), enc.preprocessing)
        feats = enc.encode(pixels)
        height, width = enc.preprocessing.input_size
        b, c, h, w = feats.features.shape
        assert (b, c) == (3, enc.embed_dim)
        assert (h, w) == ((height - enc.patch_size) // enc.stride + 1, (width - enc.patch_size) // enc.stride + 1)
        assert feats.stride == enc.stride and feats.patch_size == enc.patch_size
        if name in EXPECTED_PREFIX:
            assert enc.prefix_tokens == EXPECTED_PREFIX[name]
        # deterministic and batch-consistent
        again = enc.encode(pixels).features
        assert torch.equal(feats.features, again)
        alone = enc.encode(pixels[1:2]).features
        torch.testing.assert_close(alone[0], feats.features[1], atol=1e-4, rtol=1e-4)
        tokens = enc.tokens(pixels)
        assert tokens.shape == (3, h * w, c)
        torch.testing.assert_close(tokens[0, 0], feats.features[0, :, 0, 0])
        json.dumps(enc.describe())
        # weights hash: stable across builds, changes with the weights
        assert self.make(name).weights_hash() == enc.weights_hash()

    def check_hash_changes(self, spec: EncoderSpec) -> None:
        a = get_family(spec.family).build(spec, None)
        b = get_family(spec.family).build(replace(spec, params=spec.params | {"seed": 1}), None)
        assert a.weights_hash() != b.weights_hash()
