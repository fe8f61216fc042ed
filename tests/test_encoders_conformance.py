"""Every adapter family passes the dense-feature conformance checks on a tiny random-init model."""

from __future__ import annotations

import pytest
import torch
from encoder_conformance import TINY_NAMES, TINY_SPECS, EncoderConformance

from engine.encoders.registry import build_encoder
from engine.errors import InputError


class TestConformance(EncoderConformance):
    @pytest.mark.parametrize("name", TINY_NAMES)
    def test_contract(self, name):
        self.check_all(name)

    @pytest.mark.parametrize("spec", [s for s in TINY_SPECS if s.family != "pixels"], ids=lambda s: s.name)
    def test_hash_changes_with_weights(self, spec):
        self.check_hash_changes(spec)


@pytest.mark.parametrize("name", ["test-tiny-clip", "test-tiny-dinov2-reg"])
def test_prefix_tokens_are_dropped_from_the_selected_layer(name):
    enc = build_encoder(name)
    x = torch.randn(2, 3, *enc.preprocessing.input_size)
    hidden = enc.module(pixel_values=x, output_hidden_states=True).hidden_states[-2]
    feats = enc.encode(x).features
    spatial = hidden[:, enc.prefix_tokens :, :]
    torch.testing.assert_close(enc.tokens(x), spatial, atol=1e-5, rtol=1e-5)
    assert feats.shape[-1] * feats.shape[-2] == spatial.shape[1]


def test_layer_selection_and_range():
    last = build_encoder("test-tiny-clip", layer=-1)
    default = build_encoder("test-tiny-clip")
    assert (last.layer, default.layer) == ("-1", "-2")
    x = torch.randn(1, 3, 32, 32)
    assert not torch.allclose(last.encode(x).features, default.encode(x).features)
    with pytest.raises(InputError, match="out of range"):
        build_encoder("test-tiny-clip", layer=7)
    with pytest.raises(InputError, match="integer"):
        build_encoder("test-tiny-clip", layer="top")


def test_combination_is_unit_norm_on_first_grid():
    combo = build_encoder("test-tiny-dinov2+test-tiny-pixels")
    dino = build_encoder("test-tiny-dinov2")
    x = torch.randn(2, 3, *combo.preprocessing.input_size)
    feats = combo.encode(x).features
    assert feats.shape[-2:] == dino.encode(x).features.shape[-2:]
    assert feats.shape[1] == dino.embed_dim + build_encoder("test-tiny-pixels").embed_dim
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(2, *feats.shape[-2:]))


def test_siglip2_patch_layout_matches_the_transformers_processor():
    from transformers.models.siglip2.image_processing_siglip2 import convert_image_to_patches

    from engine.encoders.hf_transformers import patchify

    x = torch.randn(2, 3, 32, 48)
    ours = patchify(x, 8)
    for k in range(2):
        torch.testing.assert_close(ours[k], convert_image_to_patches(x[k], 8))
    enc = build_encoder("test-tiny-siglip2")
    assert enc.preprocessing.input_size == (32, 32) and enc.encode(torch.randn(1, 3, 32, 32)).features.shape == (1, 32, 4, 4)
