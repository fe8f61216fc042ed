"""The dense-feature contract every encoder family must pass, as a tester mixin, plus tiny random-init specs.

Each family's test class subclasses ``EncoderConformance``, names the family it ``covers`` and supplies
``tiny_spec()``; every property is its own ``test_*`` method, so a failure names what broke. Test specs are
registered by fixtures for the duration of one test only (``registered``), never at import.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import ClassVar

import numpy as np
import pytest
import torch

from engine.encoders import registry
from engine.encoders.base import VisionEncoder
from engine.encoders.preprocess import prepare
from engine.encoders.registry import EncoderSpec, build_encoder, get_family

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def _spec(name: str, family: str, description: str, params: dict) -> EncoderSpec:
    return EncoderSpec(name, family, description, False, "test", params)


TINY_SPECS: dict[str, EncoderSpec] = {s.name: s for s in [
    _spec("test-tiny-clip", "hf-transformers", "tiny CLIP tower",
          {"config": {"model_type": "clip_vision_model", "image_size": 32, "patch_size": 8} | TINY}),
    _spec("test-tiny-siglip", "hf-transformers", "tiny SigLIP tower",
          {"config": {"model_type": "siglip_vision_model", "image_size": 32, "patch_size": 8} | TINY}),
    _spec("test-tiny-siglip2", "hf-transformers", "tiny SigLIP2 (NaFlex) tower",
          {"config": {"model_type": "siglip2_vision_model", "num_patches": 16, "patch_size": 8} | TINY}),
    _spec("test-tiny-dinov2", "hf-transformers", "tiny DINOv2",
          {"config": {"model_type": "dinov2", "image_size": 28, "patch_size": 14} | TINY, "image_size": 42}),
    _spec("test-tiny-dinov2-reg", "hf-transformers", "tiny DINOv2 + registers",
          {"config": {"model_type": "dinov2_with_registers", "image_size": 28, "patch_size": 14, "num_register_tokens": 4} | TINY}),
    _spec("test-tiny-openclip", "open-clip", "tiny open_clip ViT",
          {"model_cfg": {"embed_dim": 16,
                         "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
                         "text_cfg": {"context_length": 8, "vocab_size": 50, "width": 16, "heads": 2, "layers": 1}}}),
    _spec("test-tiny-timm", "timm", "tiny timm ViT",
          {"model_name": "vit_tiny_patch16_224", "kwargs": {"img_size": 32, "depth": 2}, "image_size": 32}),
    _spec("test-tiny-effnet", "efficientnet-lite", "EfficientNet-Lite0 random at 64 px", {"seed": 0, "image_size": 64}),
    _spec("test-tiny-pixels", "pixels", "pixels at 32 px", {"patch": 8, "image_size": 32}),
]}


@contextmanager
def registered(specs: Iterable[EncoderSpec] = (), families: Iterable[tuple[str, Callable, Callable]] = ()) -> Iterator[None]:
    """Register test families and specs for the block; afterwards the registry is as it was before."""
    specs, families = list(specs), list(families)
    registry.list_families()  # load the adapters first, so that their import cannot undo what we restore
    old_families = [(f[0], registry.unregister_family(f[0])) for f in families]
    old_specs = [(s.name, registry.unregister_encoder(s.name)) for s in specs]
    for name, build, offline in families:
        registry.register_family(name, build, offline)
    for spec in specs:
        registry.register_encoder(spec)
    try:
        yield
    finally:
        for name, old in old_specs:
            registry.unregister_encoder(name)
            if old is not None:
                registry.register_encoder(old)
        for name, old in old_families:
            registry.unregister_family(name)
            if old is not None:
                registry.register_family(old.name, old.build, old.offline_available, old.params)


def random_images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(40 + 7 * k, 50 + 5 * k, 3), dtype=np.uint8) for k in range(n)]


class EncoderConformance:
    """Tester mixin: a subclass per family sets ``covers`` and supplies ``tiny_spec()``."""

    covers: ClassVar[str]  # the registered family whose contract this class checks
    expected_prefix_tokens: ClassVar[int] = 0  # CLS / register tokens dropped before the grid (none for CNNs)
    seeded_weights: ClassVar[bool] = True  # params["seed"] changes the (random-init) weights

    def tiny_spec(self) -> EncoderSpec:
        raise NotImplementedError

    def specs_to_register(self) -> list[EncoderSpec]:
        return [self.tiny_spec()]

    def families_to_register(self) -> list[tuple[str, Callable, Callable]]:
        return []

    @pytest.fixture
    def name(self) -> Iterator[str]:
        with registered(self.specs_to_register(), self.families_to_register()):
            yield self.tiny_spec().name

    @pytest.fixture
    def encoder(self, name) -> VisionEncoder:
        return build_encoder(name)

    @pytest.fixture
    def pixels(self, encoder) -> torch.Tensor:
        return prepare(random_images(3), encoder.preprocessing)[0]

    @pytest.fixture
    def features(self, encoder, pixels):
        return encoder.encode(pixels)

    def test_features_have_batch_and_channels(self, encoder, features):
        assert tuple(features.features.shape[:2]) == (3, encoder.embed_dim)

    def test_grid_follows_patch_and_stride(self, encoder, features):
        height, width = encoder.preprocessing.input_size
        expected = ((height - encoder.patch_size) // encoder.stride + 1, (width - encoder.patch_size) // encoder.stride + 1)
        assert tuple(features.features.shape[-2:]) == expected
        assert (features.stride, features.patch_size) == (encoder.stride, encoder.patch_size)

    def test_prefix_tokens(self, encoder):
        assert encoder.prefix_tokens == self.expected_prefix_tokens

    def test_deterministic(self, encoder, pixels, features):
        assert torch.equal(encoder.encode(pixels).features, features.features)

    def test_batch_consistent(self, encoder, pixels, features):
        alone = encoder.encode(pixels[1:2]).features
        torch.testing.assert_close(alone[0], features.features[1], atol=1e-4, rtol=1e-4)

    def test_tokens_are_the_grid_flattened(self, encoder, pixels, features):
        _b, c, h, w = features.features.shape
        tokens = encoder.tokens(pixels)
        assert tokens.shape == (3, h * w, c)
        torch.testing.assert_close(tokens[0, 0], features.features[0, :, 0, 0])

    def test_describe_is_json(self, encoder):
        described = json.loads(json.dumps(encoder.describe()))
        assert described["name"] == encoder.name

    def test_weights_hash_is_stable_across_builds(self, name, encoder):
        assert build_encoder(name).weights_hash() == encoder.weights_hash()

    def test_weights_hash_changes_with_the_weights(self, name):
        if not self.seeded_weights:
            pytest.skip(f"{self.covers}: no seeded weights")
        spec = self.tiny_spec()
        family = get_family(spec.family)
        a = family.build(spec, None)
        b = family.build(replace(spec, params=spec.params | {"seed": 1}), None)
        assert a.weights_hash() != b.weights_hash()


def conformance_classes() -> list[type[EncoderConformance]]:
    """Every concrete conformance class imported so far (subclasses at any depth)."""
    found, todo = [], list(EncoderConformance.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "covers" in vars(cls) or any("covers" in vars(base) for base in cls.__mro__[1:-1]):
            found.append(cls)
    return found
