"""Seeded random-init controls of real architectures: what an untrained network scores on A and C."""

from __future__ import annotations

from engine.encoders.registry import EncoderSpec, register_encoder

DINOV2_S14 = {
    "model_type": "dinov2",
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 6,
    "intermediate_size": 1536,
    "patch_size": 14,
    "image_size": 518,
    "layerscale_value": 1.0,
}
CLIP_B16 = {
    "model_type": "clip_vision_model",
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "patch_size": 16,
    "image_size": 224,
}

register_encoder(
    EncoderSpec(
        name="dinov2-s14-random",
        family="hf-transformers",
        description="DINOv2 ViT-S/14 architecture with random weights (seed 0): a control, not a trained model",
        pretrained=False,
        source="random:dinov2-s14",
        params={"config": DINOV2_S14, "seed": 0, "image_size": 224},
    )
)
register_encoder(
    EncoderSpec(
        name="clip-b16-random",
        family="hf-transformers",
        description="CLIP ViT-B/16 vision-tower architecture with random weights (seed 0): a control",
        pretrained=False,
        source="random:clip-b16",
        params={"config": CLIP_B16, "seed": 0},
    )
)
register_encoder(
    EncoderSpec(
        name="efficientnet-lite0-random",
        family="efficientnet-lite",
        description="EfficientNet-Lite0 architecture with random weights (seed 0), block 4 (stride 16): a control",
        pretrained=False,
        source="random:efficientnet-lite0",
        params={"seed": 0, "image_size": 224},
    )
)
