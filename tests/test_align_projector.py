"""Projector import: LLaVA keys and prefixes, shape checks, hostile pickles refused (code never runs), CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.alignment.features import PixelPatchEncoder
from engine.alignment.projector import build_projector, load_projector, save_projector
from engine.errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _llava_state(in_dim: int, out_dim: int, prefix: str = "model.mm_projector.") -> dict[str, torch.Tensor]:
    module = build_projector(in_dim, out_dim)
    return {prefix + k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("prefix", ["model.mm_projector.", "mm_projector.", ""])
def test_import_llava_bin_and_safetensors(tmp_path, prefix):
    state = _llava_state(12, 20, prefix)
    torch.save(state, tmp_path / "mm_projector.bin")
    save_file(state, str(tmp_path / "mm_projector.safetensors"))
    x = torch.randn(3, 5, 12)
    for name in ("mm_projector.bin", "mm_projector.safetensors"):
        proj = load_projector(tmp_path / name, in_dim=12, out_dim=20)
        w0, b0 = state[prefix + "0.weight"], state[prefix + "0.bias"]
        w2, b2 = state[prefix + "2.weight"], state[prefix + "2.bias"]
        expected = torch.nn.functional.gelu(x @ w0.T + b0) @ w2.T + b2
        assert torch.allclose(proj(x), expected, atol=1e-5)
    saved = save_projector(proj, tmp_path / "again.safetensors")
    assert torch.allclose(load_projector(saved)(x), expected, atol=1e-5)


def test_import_wrong_shape_and_missing_keys(tmp_path):
    torch.save(_llava_state(12, 20), tmp_path / "p.bin")
    with pytest.raises(InputError, match="input width 12 does not match the encoder width 16"):
        load_projector(tmp_path / "p.bin", in_dim=16, out_dim=20)
    with pytest.raises(InputError, match="LLM hidden size 32"):
        load_projector(tmp_path / "p.bin", in_dim=12, out_dim=32)
    state = _llava_state(12, 20)
    del state["model.mm_projector.2.bias"]
    torch.save(state, tmp_path / "missing.bin")
    with pytest.raises(InputError, match=r"lack mm_projector\.2\.bias"):
        load_projector(tmp_path / "missing.bin")
    state = _llava_state(12, 20)
    state["model.mm_projector.2.weight"] = torch.randn(20, 7)
    torch.save(state, tmp_path / "bad.bin")
    with pytest.raises(InputError, match="has shape"):
        load_projector(tmp_path / "bad.bin")
    torch.save({"lm_head.weight": torch.randn(2, 2)}, tmp_path / "other.bin")
    with pytest.raises(InputError, match=r"0\.weight"):
        load_projector(tmp_path / "other.bin")


def test_hostile_pickle_refused_and_not_run(tmp_path):
    marker = tmp_path / "code-ran"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    state = _llava_state(4, 4)
    state["model.mm_projector.evil"] = Evil()
    torch.save(state, tmp_path / "mm_projector.bin")
    with pytest.raises(InputError, match="not a safe weights file"):
        load_projector(tmp_path / "mm_projector.bin")
    assert not marker.exists()


def _tiny_llm_dir(tmp_path, hidden: int) -> str:
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=32, hidden_size=hidden, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
    folder = tmp_path / "llm"
    cfg.save_pretrained(folder)
    return str(folder)


def test_cli_import_projector(tmp_path):
    width = PixelPatchEncoder().embed_dim
    llm = _tiny_llm_dir(tmp_path, hidden=16)
    torch.save(_llava_state(width, 16), tmp_path / "good.bin")
    torch.save(_llava_state(width, 24), tmp_path / "wrong.bin")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    base = [sys.executable, "-m", "engine", "alignment", "import-projector"]
    good = subprocess.run([*base, str(tmp_path / "good.bin"), "--encoder", "alignment-pixel-patches", "--llm", llm, "--format", "json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    assert '"out_dim": 16' in good.stdout
    bad = subprocess.run([*base, str(tmp_path / "wrong.bin"), "--encoder", "alignment-pixel-patches", "--llm", llm],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error:") and "hidden size 16" in bad.stderr and "\n" not in bad.stderr.strip()


def test_uncached_llm_fails_fast_offline(tmp_path):
    from engine.alignment.evaluate import import_projector_file
    from engine.alignment.llm import load_llm
    from engine.errors import NotAvailableError

    torch.save(_llava_state(PixelPatchEncoder().embed_dim, 16), tmp_path / "good.bin")
    with pytest.raises(NotAvailableError, match="not in the local Hugging Face cache"):
        import_projector_file(tmp_path / "good.bin", "alignment-pixel-patches", "nobody/not-a-cached-model")
    with pytest.raises(NotAvailableError):
        load_llm("nobody/not-a-cached-model")
    with pytest.raises(InputError, match="not found"):
        load_llm("./no/such/folder")


def test_projected_dump_then_score(tmp_path):
    from PIL import Image

    from engine.alignment.evaluate import image_files, projected_tokens, score_dumps, write_dump

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    enc = PixelPatchEncoder()
    torch.manual_seed(0)
    proj_a = save_projector(build_projector(enc.embed_dim, 16), tmp_path / "a.safetensors")
    proj_b = save_projector(build_projector(enc.embed_dim, 16), tmp_path / "b.safetensors")
    files = image_files(folder)
    assert write_dump(projected_tokens("alignment-pixel-patches", proj_a, files), tmp_path / "setting") == 3
    write_dump(projected_tokens("alignment-pixel-patches", proj_a, files), tmp_path / "same")
    write_dump(projected_tokens("alignment-pixel-patches", proj_b, files), tmp_path / "other")
    same = score_dumps(tmp_path / "setting", [tmp_path / "same"], record=False)
    assert same["A"] == pytest.approx(1.0, abs=1e-5) and same["n_images"] == 3
    other = score_dumps(tmp_path / "setting", [tmp_path / "same", tmp_path / "other"], record=False)
    assert other["per_reference"]["other"] < 1.0
    with pytest.raises(InputError, match="not empty"):
        write_dump(iter([torch.zeros(2, 2)]), tmp_path / "same")


def test_a_v1_job_from_encoders(tmp_path):
    from PIL import Image

    from engine.alignment.evaluate import a_v1_job
    from engine.alignment.jobctx import LocalContext
    from engine.alignment.records import list_a_scores

    rng = np.random.default_rng(1)
    (tmp_path / "imgs").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    enc = PixelPatchEncoder()
    torch.manual_seed(1)
    pa = save_projector(build_projector(enc.embed_dim, 8), tmp_path / "a.safetensors")
    pb = save_projector(build_projector(enc.embed_dim, 8), tmp_path / "b.safetensors")
    params = {
        "target": {"encoder": "alignment-pixel-patches", "projector": str(pa)},
        "references": {"self": {"encoder": "alignment-pixel-patches", "projector": str(pa)},
                       "other": {"encoder": "alignment-pixel-patches", "projector": str(pb)}},
        "images": str(tmp_path / "imgs"), "n": 3, "setting": "job-test",
    }
    result = a_v1_job(params, LocalContext(tmp_path / "w"))
    assert result["n_images"] == 3 and result["per_reference"]["self"] == pytest.approx(1.0, abs=1e-5)
    assert result["per_reference"]["other"] < 1.0
    table = list_a_scores("v1")
    assert "job-test" in set(table["setting"])
