"""Diffusion features on tiny random SD components (skipped when the optional diffusers extra is absent)."""

from __future__ import annotations

import pytest
import torch

from engine.encoders.registry import EncoderSpec, build_encoder
from engine.errors import NotAvailableError

diffusers = pytest.importorskip("diffusers")


def _tiny_encoder(seed: int = 0, layer: str | None = None):
    from engine.encoders.diffusion import unet_encoder

    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8)
    unet = diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, attention_head_dim=4, norm_num_groups=8,
    )
    scheduler = diffusers.DDPMScheduler()
    spec = EncoderSpec("tiny-sd", "diffusion", "tiny", False, "test", {"image_size": 32, "t": 1})
    return unet_encoder(spec, vae, unet, torch.zeros(1, 3, 8), scheduler.alphas_cumprod, layer)


def test_tiny_unet_features_follow_the_contract():
    enc = _tiny_encoder()
    x = torch.randn(3, 3, 32, 32)
    feats = enc.encode(x).features
    assert feats.shape == (3, 32, 16, 16) and enc.stride == 2 and enc.layer == "up_blocks.0"
    torch.testing.assert_close(enc.encode(x).features, feats)
    torch.testing.assert_close(enc.encode(x[1:2]).features[0], feats[1], atol=1e-4, rtol=1e-4)
    assert enc.tokens(x).shape == (3, 256, 32)
    assert _tiny_encoder().weights_hash() == enc.weights_hash() != _tiny_encoder(seed=1).weights_hash()
    assert _tiny_encoder(layer="1").encode(x).features.shape[1] == 16


def test_paper_diffusion_settings_fail_clearly_offline():
    for name in ("SD1.5", "SDXL"):
        with pytest.raises(NotAvailableError):
            build_encoder(name)
