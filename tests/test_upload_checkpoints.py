"""Uploads: every checkpoint kind is accepted; hostile or mismatched files are refused and leave nothing behind."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
import torch
from _uploads import tiny_hf_zip
from safetensors.torch import save_file

from engine import config, store
from engine.encoders import safe_files
from engine.encoders.registry import build_encoder, get_family, get_spec, list_encoders
from engine.encoders.upload import delete_upload, upload_bytes, upload_file
from engine.errors import InputError

pytestmark = pytest.mark.usefixtures("tiny_encoders")  # uploads of the tiny test architectures


def _tiny_dinov2_state(seed: int = 3) -> dict[str, torch.Tensor]:
    spec = get_spec("test-tiny-dinov2")
    enc = get_family(spec.family).build(spec.__class__(**{**spec.__dict__, "params": spec.params | {"seed": seed}}), None)
    return {k: v.clone() for k, v in enc.module.state_dict().items()}


def _nothing_left() -> None:
    uploads = config.subdir("uploads")
    assert list(uploads.iterdir()) == []
    with store.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM encoder_uploads").fetchone()[0] == 0


def test_state_dict_upload_roundtrip(isolated_home, tmp_path):
    state = _tiny_dinov2_state()
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    result = upload_file(path, "state-dict", arch="test-tiny-dinov2", label="my dino")
    assert result.name.startswith("upload:") and len(result.name) == len("upload:") + 12
    assert result.describe["grid"] == [3, 3]
    names = {s.name: s for s in list_encoders()}
    assert names[result.name].params["label"] == "my dino" and names[result.name].offline_available()
    enc = build_encoder(result.name)
    torch.testing.assert_close(enc.module.state_dict()["embeddings.cls_token"], state["embeddings.cls_token"])
    assert build_encoder("my dino").weights_hash() == enc.weights_hash() != build_encoder("test-tiny-dinov2").weights_hash()
    assert upload_file(path, "state-dict", arch="test-tiny-dinov2").existed
    assert (isolated_home / "uploads" / result.hash).is_dir()
    delete_upload("my dino")
    _nothing_left()
    with pytest.raises(InputError, match="built-in"):
        delete_upload("pixels-8")


def test_weights_only_torch_checkpoint_is_accepted(isolated_home, tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"state_dict": _tiny_dinov2_state()}, path)
    result = upload_bytes(path.read_bytes(), "w.pt", "state-dict", arch="test-tiny-dinov2")
    assert build_encoder(result.name).embed_dim == 32


def test_hf_zip_upload(isolated_home, tmp_path):
    result = upload_file(tiny_hf_zip(tmp_path), "hf-zip", label="zip dino")
    enc = build_encoder(result.name)
    assert enc.prefix_tokens == 1 and enc.patch_size == 14
    assert enc.encode(torch.zeros(2, 3, 28, 28)).features.shape == (2, 32, 2, 2)


def test_open_clip_upload(isolated_home, tmp_path, monkeypatch, tiny_encoders):
    import open_clip
    from open_clip import factory

    cfg = tiny_encoders["test-tiny-openclip"].params["model_cfg"]
    monkeypatch.setitem(factory._MODEL_CONFIGS, "test-tiny-openclip", cfg)
    torch.manual_seed(1)
    model = open_clip.model.CLIP(**cfg)
    path = tmp_path / "oc.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    result = upload_file(path, "open-clip", model_name="test-tiny-openclip")
    enc = build_encoder(result.name)
    torch.testing.assert_close(enc.module.state_dict()["conv1.weight"], model.visual.state_dict()["conv1.weight"])


def test_torchscript_is_not_an_upload_kind_and_never_runs(isolated_home, tmp_path):
    """A scripted forward is code (it could write files or loop forever): the kind is refused before any load."""

    path = tmp_path / "m.pt"
    torch.jit.script(torch.nn.Conv2d(3, 6, kernel_size=16, stride=16)).save(str(path))
    with pytest.raises(InputError, match="unknown upload kind 'torchscript'"):
        upload_file(path, "torchscript")
    _nothing_left()


def test_no_torchscript_loading_anywhere_in_engine():
    engine = Path(__file__).resolve().parent.parent / "engine"
    offenders = [str(p) for p in engine.rglob("*.py") if "jit.load" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_stored_torchscript_row_is_refused_not_loaded(isolated_home, tmp_path):
    """An upload row of the retired kind (from an older version) is never loaded: a clear message instead."""
    import json

    torch.jit.script(torch.nn.Conv2d(3, 6, kernel_size=16, stride=16)).save(str(tmp_path / "m.pt"))
    folder = config.subdir("uploads") / ("ab" * 16)
    folder.mkdir()
    (folder / "module.pt").write_bytes((tmp_path / "m.pt").read_bytes())
    with store.connect() as con:
        con.execute("INSERT INTO encoder_uploads (hash, name, label, kind, params) VALUES (?, ?, ?, ?, ?)",
                    ["ab" * 16, "upload:abababababab", None, "torchscript", json.dumps({"file": "module.pt"})])
    with pytest.raises(InputError, match="no longer loaded"):
        build_encoder("upload:abababababab")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_and_never_runs(isolated_home, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weights": _Evil(marker)}, path)
    with pytest.raises(InputError, match=r"evil\.pt: refused: not a weights-only") as info:
        upload_file(path, "state-dict", arch="test-tiny-dinov2")
    assert "\n" not in str(info.value)
    assert not marker.exists()
    _nothing_left()


def _zip_with(tmp_path: Path, name: str, data: bytes = b"x", symlink: bool = False) -> Path:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", "{}")
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        if symlink:
            info.external_attr = (0o120777 << 16)
        zf.writestr(info, data)
    return archive


@pytest.mark.parametrize(
    ("member", "symlink", "message"),
    [("../../escape.txt", False, r"'\.\.'"), ("/etc/passwd", False, "absolute"), ("link", True, "symbolic link")],
)
def test_hostile_zip_members_are_refused(isolated_home, tmp_path, member, symlink, message):
    with pytest.raises(InputError, match=message):
        upload_file(_zip_with(tmp_path, member, b"/etc/passwd", symlink), "hf-zip")
    assert not (tmp_path.parent / "escape.txt").exists()
    _nothing_left()


def test_zip_bombs_are_refused(isolated_home, tmp_path, monkeypatch):
    with pytest.raises(InputError, match="compression ratio"):
        upload_file(_zip_with(tmp_path, "big.bin", b"\0" * (4 << 20)), "hf-zip")
    monkeypatch.setattr(safe_files, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(InputError, match="uncompressed"):
        upload_file(_zip_with(tmp_path, "big.bin", os.urandom(5000)), "hf-zip")
    monkeypatch.setattr(safe_files, "MAX_MEMBERS", 1)
    with pytest.raises(InputError, match="members"):
        upload_file(_zip_with(tmp_path, "a.txt"), "hf-zip")
    _nothing_left()


def test_wrong_keys_and_shapes_are_named(isolated_home, tmp_path):
    state = _tiny_dinov2_state()
    state.pop("embeddings.cls_token")
    state["embeddings.patch_embeddings.projection.weight"] = torch.zeros(5, 3, 14, 14)
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(InputError) as info:
        upload_file(path, "state-dict", arch="test-tiny-dinov2")
    message = str(info.value)
    assert "embeddings.cls_token" in message and "extra.weight" in message and "projection.weight" in message
    _nothing_left()


def test_bad_options_and_files(isolated_home, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="arch"):
        upload_file(junk, "state-dict")
    with pytest.raises(InputError, match=r"junk\.bin: (neither safetensors|refused)"):
        upload_file(junk, "state-dict", arch="test-tiny-dinov2")
    with pytest.raises(InputError, match="not a zip"):
        upload_file(junk, "hf-zip")
    with pytest.raises(InputError, match="unknown upload kind"):
        upload_file(junk, "torchscript")
    with pytest.raises(InputError, match="unknown upload kind"):
        upload_file(junk, "onnx")
    _nothing_left()


def _hub_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys an older transformers' ``Dinov2Model.save_pretrained`` writes (hand-written, not transformers' table)."""
    renames = [("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
               ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense")]
    out = {}
    for key, value in state.items():
        for new, old in renames:
            key = key.replace(new, old)
        out[key] = value
    return out


def test_hub_layout_state_dict_loads_through_from_pretrained(isolated_home, tmp_path):
    state = _tiny_dinov2_state(seed=5)
    hub = _hub_layout(state)
    assert any("attention.attention.query" in k for k in hub) and not any("q_proj" in k for k in hub)
    path = tmp_path / "hub.safetensors"
    save_file(hub, str(path))
    result = upload_file(path, "state-dict", arch="test-tiny-dinov2", label="hub dino")
    loaded = build_encoder(result.name).module.state_dict()
    for key, value in state.items():  # every tensor landed under its current name, values untouched
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    hub.pop("encoder.layer.0.attention.attention.query.weight")
    save_file(hub, str(path))
    with pytest.raises(InputError, match=r"as a hub layout it does not fit either: 1 missing keys \(e\.g\. .*q_proj\.weight"):
        upload_file(path, "state-dict", arch="test-tiny-dinov2")
