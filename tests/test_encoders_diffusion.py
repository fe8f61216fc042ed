"""Diffusion features on tiny random SD / SDim / SDXL / DiT / SD3 components (skipped without the diffusers extra)."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import ClassVar

import pytest
import torch
from encoder_conformance import EncoderConformance, registered

from engine.encoders.diffusion_common import ddpm_noisy, space_to_depth, vae_latents
from engine.encoders.registry import EncoderSpec, build_encoder
from engine.errors import InputError, NotAvailableError

diffusers = pytest.importorskip("diffusers")

SIZE = 32  # tiny VAE downsamples by 2 -> 16 x 16 latents


def _vae(latent_channels: int = 4):
    return diffusers.AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                                   up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=latent_channels, norm_num_groups=8)


def _unet(**extra):
    return diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, attention_head_dim=4, norm_num_groups=8, **extra,
    )


def _image_encoder():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(CLIPVisionConfig(image_size=16, patch_size=8, hidden_size=8, intermediate_size=16,
                                                          num_hidden_layers=1, num_attention_heads=2, projection_dim=8))


def _tiny_build(spec: EncoderSpec, layer: str | None):
    from engine.encoders import diffusion_transformer as tr
    from engine.encoders import diffusion_unet as un

    torch.manual_seed(int(spec.params.get("seed", 0)))
    kind, alphas = spec.params["kind"], diffusers.DDPMScheduler().alphas_cumprod
    if kind == "sd-unet":
        return un.unet_encoder(spec, _vae(), _unet(), torch.randn(1, 3, 8), alphas, layer)
    if kind == "sd-image-variations":
        image_encoder = _image_encoder() if spec.params.get("conditioning") == "self-image" else None
        return un.sdim_encoder(spec, _vae(), _unet(), alphas, layer, image_encoder)
    if kind == "sdxl-unet":
        unet = _unet(addition_embed_type="text_time", addition_time_embed_dim=4, projection_class_embeddings_input_dim=12 + 6 * 4)
        return un.sdxl_encoder(spec, _vae(), unet, torch.zeros(1, 5, 8), torch.zeros(1, 12), alphas, layer)
    if kind == "dit":
        dit = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, num_layers=2,
                                              sample_size=16, patch_size=2, num_embeds_ada_norm=10)
        return tr.dit_encoder(spec, _vae(), dit, alphas, layer)
    sd3 = diffusers.SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                          attention_head_dim=8, num_attention_heads=2, joint_attention_dim=12,
                                          caption_projection_dim=16, pooled_projection_dim=6, pos_embed_max_size=16)
    return tr.sd3_encoder(spec, _vae(), sd3, torch.zeros(1, 7, 12), torch.zeros(1, 6), layer)


DIFFUSION_FAMILY = ("test-diffusion", _tiny_build, lambda spec: True)
TINY = {k: EncoderSpec(f"test-tiny-{k}", "test-diffusion", k, False, "test", {"kind": kind, "image_size": SIZE, "t": 1} | extra)
        for k, kind, extra in [("sd", "sd-unet", {}), ("sdim", "sd-image-variations", {}), ("sdxl", "sdxl-unet", {}),
                               ("sdim-self", "sd-image-variations", {"conditioning": "self-image", "image_norm": "paper"}),
                               ("dit", "dit", {}), ("dit-paper", "dit", {"class_mode": "none", "merge_order": "paper"}),
                               ("sd3", "sd3", {})]}


@pytest.fixture(autouse=True)
def _tiny_diffusion_encoders():
    with registered(TINY.values(), [DIFFUSION_FAMILY]):
        yield


class _DiffusionConformance(EncoderConformance):
    covers = "diffusion"  # the real family's extractors (unet_encoder, dit_encoder, ...) on tiny random components
    key: ClassVar[str]

    def tiny_spec(self):
        return TINY[self.key]

    def families_to_register(self):
        return [DIFFUSION_FAMILY]


class TestSDConformance(_DiffusionConformance):
    key = "sd"


class TestSDimConformance(_DiffusionConformance):
    key = "sdim"


class TestSDimSelfImageConformance(_DiffusionConformance):
    key = "sdim-self"


class TestSDXLConformance(_DiffusionConformance):
    key = "sdxl"


class TestDiTConformance(_DiffusionConformance):
    key = "dit"


class TestDiTPaperConformance(_DiffusionConformance):
    key = "dit-paper"


class TestSD3Conformance(_DiffusionConformance):
    key = "sd3"


@pytest.mark.parametrize("key, channels, stride, layer", [
    ("sd", 32, 2, "up_blocks.0"), ("sdim", 32, 2, "up_blocks.0"), ("sdxl", 32, 2, "up_blocks.0"),
    ("dit", 4 * 16, 8, "transformer_blocks.1"), ("sd3", 4 * 16, 8, "transformer_blocks.1"),
])
def test_geometry_is_honest(key, channels, stride, layer):
    """UNet: VAE factor 2 x up-block scale; transformers: VAE factor 2 x patch 2 x 2x2 merge = 8."""
    enc = build_encoder(TINY[key].name)
    assert (enc.embed_dim, enc.stride, enc.patch_size, enc.layer) == (channels, stride, stride, layer)


def test_layer_choice_and_bad_indices():
    assert build_encoder(TINY["sd"].name, layer=1).encode(torch.randn(1, 3, SIZE, SIZE)).features.shape == (1, 16, 16, 16)
    assert build_encoder(TINY["dit"].name, layer=0).layer == "transformer_blocks.0"
    assert build_encoder(TINY["sd3"].name, layer=-2).layer == "transformer_blocks.0"
    with pytest.raises(InputError, match="transformer block index"):
        build_encoder(TINY["sd3"].name, layer=5)
    with pytest.raises(InputError, match="up block index"):
        build_encoder(TINY["sdxl"].name, layer="x")


def test_conditioning_reaches_the_features():
    x = torch.randn(2, 3, SIZE, SIZE)
    dit, paper = build_encoder(TINY["dit"].name), build_encoder(TINY["dit-paper"].name)
    assert not torch.allclose(dit.encode(x).features, paper.encode(x).features)
    assert dit.weights_hash() != paper.weights_hash()  # same weights, different conditioning -> different cache key
    sd_a = _tiny_build(TINY["sd"], None)
    sd_b = _tiny_build(replace(TINY["sd"], params=TINY["sd"].params | {"t": 500}), None)
    assert sd_a.weights_hash() != sd_b.weights_hash()
    assert not torch.allclose(sd_a.encode(x).features, sd_b.encode(x).features)


def test_space_to_depth_orders_match_the_released_unfold():
    grid = torch.randn(2, 3, 6, 4)
    b, _c, h, w = grid.shape
    ref = grid.unfold(3, 2, 2).unfold(2, 2, 2).reshape(b, -1, h // 2, w // 2, 4).permute(0, 4, 1, 2, 3).reshape(b, -1, h // 2, w // 2)
    torch.testing.assert_close(space_to_depth(grid, "paper"), ref)
    clean = space_to_depth(grid, "clean")
    assert clean.shape == (2, 12, 3, 2)
    torch.testing.assert_close(clean[:, 4 * 1 + 2 * 1 + 0, 2, 1], grid[:, 1, 5, 2])  # c=1, dy=1, dx=0 at cell (2, 1)
    with pytest.raises(InputError):
        space_to_depth(torch.randn(1, 2, 3, 4))


def test_early_exit_equals_a_full_forward_hook():
    """The capture stops the model after the hooked block; the value equals what a plain hook sees in a full run."""
    enc = build_encoder(TINY["sd"].name)
    module = enc.module
    seen = {}
    module.capture.handle.remove()
    handle = module.unet.up_blocks[0].register_forward_hook(lambda _m, _i, out: seen.setdefault("out", out))
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.inference_mode():
        latents = vae_latents(module.vae, x)
        t = torch.full((1,), 1, dtype=torch.long)
        noisy = ddpm_noisy(latents, module.alphas_cumprod, t)
        module.unet(noisy, t, encoder_hidden_states=module.prompt_embeds)
    handle.remove()
    torch.testing.assert_close(build_encoder(TINY["sd"].name).encode(x).features, seen["out"])


@pytest.mark.parametrize("name", ["SD1.5", "SDim", "SDXL", "DiT", "SD3", "DiT-paper-c"])
def test_paper_diffusion_settings_fail_clearly_offline(name):
    with pytest.raises(NotAvailableError):
        build_encoder(name)


def test_extractors_sharing_components_do_not_interfere():
    from engine.encoders import diffusion_transformer as tr
    from engine.encoders import diffusion_unet as un

    x = torch.randn(2, 3, SIZE, SIZE)
    first = build_encoder(TINY["sd"].name)
    before = first.encode(x).features
    m = first.module
    second = un.unet_encoder(TINY["sd"], m.vae, m.unet, m.prompt_embeds, m.alphas_cumprod, "1")
    assert second.encode(x).features.shape == (2, 16, 16, 16)
    torch.testing.assert_close(first.encode(x).features, before)
    # DiT without class embedding (released code) == null-class DiT whose label tables are zero
    null = build_encoder(TINY["dit"].name)
    none_spec = replace(TINY["dit"], params=TINY["dit"].params | {"class_mode": "none"})
    none = tr.dit_encoder(none_spec, null.module.vae, null.module.transformer, null.module.alphas_cumprod, None)
    expected_null = build_encoder(TINY["dit"].name).encode(x).features
    torch.testing.assert_close(null.encode(x).features, expected_null)
    zeroed = copy.deepcopy(null.module.transformer)
    for block in zeroed.transformer_blocks:
        block.norm1.emb.class_embedder.embedding_table.weight.data.zero_()
    reference = tr.dit_encoder(TINY["dit"], null.module.vae, zeroed, null.module.alphas_cumprod, None)
    torch.testing.assert_close(none.encode(x).features, reference.encode(x).features)
    assert not torch.allclose(none.encode(x).features, expected_null)


def test_sdim_self_image_conditioning_depends_on_the_image():
    """Released-code SDim: each image conditions on its own CLIP embedding (unlike the zero embedding)."""
    enc = build_encoder(TINY["sdim-self"].name)
    x = torch.randn(2, 3, SIZE, SIZE)
    context = enc.module.context
    embeds = context(x)
    assert embeds.shape == (2, 1, 8) and not torch.allclose(embeds[0], embeds[1])
    assert enc.describe()["conditioning"] == "self image embedding (paper)"
    with pytest.raises(InputError, match="self-image"):
        _tiny_build(replace(TINY["sdim"], params=TINY["sdim"].params | {"conditioning": "text"}), None)


def _tokenizer(folder):
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text('{"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2}')
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def _text_encoder(hidden: int, projection: int | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=3, hidden_size=hidden, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                            max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
                            projection_dim=projection or hidden)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _save_tiny_pipeline(kind: str, folder):
    """A tiny random pipeline saved as a local diffusers folder, loaded back by the real hub loaders."""
    torch.manual_seed(0)
    tok = _tokenizer(folder.parent / "tok")
    if kind == "sd-unet":
        pipe = diffusers.StableDiffusionPipeline(vae=_vae(), text_encoder=_text_encoder(8), tokenizer=tok, unet=_unet(),
                                                 scheduler=diffusers.DDPMScheduler(), safety_checker=None,
                                                 feature_extractor=None, requires_safety_checker=False)
    elif kind == "sdxl-unet":
        unet = _unet(addition_embed_type="text_time", addition_time_embed_dim=4, projection_class_embeddings_input_dim=6 + 6 * 4)
        pipe = diffusers.StableDiffusionXLPipeline(vae=_vae(), text_encoder=_text_encoder(4), text_encoder_2=_text_encoder(4, 6),
                                                   tokenizer=tok, tokenizer_2=tok, unet=unet, scheduler=diffusers.EulerDiscreteScheduler())
    elif kind == "dit":
        dit = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                              num_layers=2, sample_size=16, patch_size=2)
        pipe = diffusers.DiTPipeline(transformer=dit, vae=_vae(), scheduler=diffusers.DDIMScheduler())
    elif kind == "sd3":
        sd3 = diffusers.SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                              attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                              caption_projection_dim=16, pooled_projection_dim=10, pos_embed_max_size=16)
        pipe = diffusers.StableDiffusion3Pipeline(transformer=sd3, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=_vae(),
                                                  text_encoder=_text_encoder(4, 4), tokenizer=tok, text_encoder_2=_text_encoder(6, 6),
                                                  tokenizer_2=tok, text_encoder_3=None, tokenizer_3=None)
    else:  # SD image variations: the loader reads only vae/, unet/, scheduler/
        parts = (("vae", _vae()), ("unet", _unet()), ("scheduler", diffusers.PNDMScheduler()), ("image_encoder", _image_encoder()))
        for name, part in parts:
            part.save_pretrained(folder / name)
        (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionImageVariationPipeline"}')
        return
    pipe.save_pretrained(folder)


@pytest.mark.parametrize("kind, channels, extra", [("sd-unet", 32, {}), ("sd-image-variations", 32, {}), ("sdxl-unet", 32, {}),
                                                   ("sd-image-variations", 32, {"conditioning": "self-image"}), ("dit", 64, {}), ("sd3", 64, {})])
def test_hub_loaders_on_local_pipeline_folders(tmp_path, kind, channels, extra):
    from engine.encoders.registry import get_family

    folder = tmp_path / "pipe"
    _save_tiny_pipeline(kind, folder)
    spec = EncoderSpec(f"local-{kind}", "diffusion", "", True, "test", {"repo": str(folder), "kind": kind, "image_size": SIZE, "t": 1} | extra)
    assert spec.offline_available()
    enc = get_family("diffusion").build(spec, None)
    feats = enc.encode(torch.randn(2, 3, SIZE, SIZE)).features
    assert feats.shape[:2] == (2, channels) and torch.isfinite(feats).all()
    assert not EncoderSpec("x", "diffusion", "", True, "test", {"repo": str(tmp_path / "nope"), "kind": kind}).offline_available()


def test_dit_checkpoints_saved_as_legacy_transformer2d_load_the_same_way():
    """facebook/DiT-XL-2-* declare ``Transformer2DModel`` (patched, ada_norm_zero): same blocks, same call."""
    from engine.encoders import diffusion_transformer as tr

    torch.manual_seed(0)
    legacy = diffusers.Transformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
                                          sample_size=16, patch_size=2, norm_type="ada_norm_zero", num_embeds_ada_norm=1000)
    enc = tr.dit_encoder(TINY["dit"], _vae(), legacy, diffusers.DDPMScheduler().alphas_cumprod, None)
    assert enc.encode(torch.randn(1, 3, SIZE, SIZE)).features.shape == (1, 64, 4, 4)
