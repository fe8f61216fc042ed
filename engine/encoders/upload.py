"""Custom checkpoints (HF zip, open_clip, state dict): validated in a temp dir, then stored by content hash.

An uploaded encoder is named ``upload:<hash12>`` (plus a user label), lives in
``config.subdir("uploads")/<hash>/`` and is recorded in the ``encoder_uploads`` table; it then
appears in ``list_encoders()``. Nothing is kept when validation fails: the files are staged in a
temporary folder, the encoder is built from there and run on a tiny input, and only then moved into
place and recorded. Uploads are data, never code: TorchScript is not accepted (a scripted ``forward``
is a program that can write files or never return); an architecture plus a state dict covers the need.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from engine import config, store
from engine.encoders.base import VisionEncoder
from engine.encoders.common import ModuleEncoder
from engine.encoders.params import FamilyParams, check_text
from engine.encoders.registry import (
    EncoderSpec,
    SpecStore,
    get_family,
    get_spec,
    register_family,
    register_spec_store,
)
from engine.encoders.safe_files import (
    is_safetensors,
    load_hub_layout,
    load_state_dict_file,
    safe_extract_zip,
    strict_load,
)
from engine.encoders.staging import (
    STAGING_PREFIX,
    claim_staging,
    release_staging,
    sweep_stale_staging,
)
from engine.errors import InputError, first_line
from engine.hashing import hash_bytes, hash_obj

CODE_VERSION = "upload-v1"
KINDS = ("hf-zip", "open-clip", "state-dict")
FAMILY = "upload"

store.register_schema(
    "encoder_uploads",
    """CREATE TABLE IF NOT EXISTS encoder_uploads (
        hash VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, label VARCHAR, kind VARCHAR NOT NULL,
        params VARCHAR NOT NULL, description VARCHAR, size_bytes BIGINT,
        created_at TIMESTAMP DEFAULT current_timestamp)""",
)


@dataclass(frozen=True)
class UploadParams(FamilyParams):
    """Where an upload's payload lies in its folder (``subdir`` of an HF zip, or ``file``), the architecture or
    open_clip model name it was loaded into, its content ``hash``, ``kind`` and the label a person gave it."""

    family = FAMILY
    always = ("label",)
    subdir: str | None = None
    file: str | None = None
    arch: str | None = None
    model_name: str | None = None
    hash: str | None = None
    kind: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        for name in ("subdir", "file", "arch", "model_name", "hash", "kind"):
            check_text(self.family, name, getattr(self, name))
        if not self.hash or not self.kind:
            raise InputError(f"{self.family} encoder parameters need the upload's hash and kind")
        if self.label is not None and not isinstance(self.label, str):
            raise InputError(f"{self.family} encoder parameter label must be text, got {self.label!r}")

    def shown_label(self) -> str | None:
        return self.label


@dataclass
class UploadResult:
    name: str
    hash: str
    label: str | None
    kind: str
    describe: dict
    existed: bool = False


def _spec_from_row(hash_: str, name: str, label: str | None, kind: str, params: str, description: str | None) -> EncoderSpec:
    p = json.loads(params) | {"hash": hash_, "kind": kind, "label": label}
    return EncoderSpec(name, FAMILY, description or f"uploaded {kind}", True, f"upload:{kind}", p)


_COLUMNS = "hash, name, label, kind, params, description"


def uploaded_specs() -> list[EncoderSpec]:
    with store.connect(read_only=True) as con:
        rows = con.execute(f"SELECT {_COLUMNS} FROM encoder_uploads ORDER BY created_at, hash").fetchall()
    return [_spec_from_row(*row) for row in rows]


def _one(where: str, value: str) -> EncoderSpec | None:
    with store.connect(read_only=True) as con:
        row = con.execute(f"SELECT {_COLUMNS} FROM encoder_uploads WHERE {where} = ? ORDER BY created_at, hash LIMIT 1",
                          [value]).fetchone()
    return None if row is None else _spec_from_row(*row)


register_spec_store(SpecStore(uploaded_specs, lambda name: _one("name", name), lambda label: _one("label", label)))


# --- building an uploaded encoder from its folder -------------------------------------------------


def _hf_zip(spec: EncoderSpec, base: Path, layer: str | None) -> VisionEncoder:
    inner = replace(spec, family="hf-transformers", params={"path": str(base / UploadParams.of(spec.params).subdir)})
    return get_family("hf-transformers").build(inner, layer)


def _open_clip(spec: EncoderSpec, base: Path, layer: str | None) -> VisionEncoder:
    own = UploadParams.of(spec.params)
    params = {"model_name": own.model_name, "checkpoint": str(base / own.file)}
    return get_family("open-clip").build(replace(spec, family="open-clip", params=params), layer)


def _state_dict(spec: EncoderSpec, base: Path, layer: str | None) -> VisionEncoder:
    own = UploadParams.of(spec.params)
    arch = get_spec(own.arch)
    if arch.family in (FAMILY, "combined"):
        raise InputError("a state dict needs a registered single architecture as --arch, not an upload or combination")
    params = arch.params | ({"seed": 0} if "seed" in {f.name for f in fields(arch.params)} else {})
    encoder = get_family(arch.family).build(replace(arch, name=spec.name, pretrained=False, params=params), layer)
    if not isinstance(encoder, ModuleEncoder):
        raise InputError(f"architecture {arch.name!r} cannot take a state dict")
    state = load_state_dict_file(base / own.file)
    what = f"state dict for {arch.name}"
    try:
        strict_load(encoder.module, state, what=what)
    except InputError as direct:
        if not hasattr(encoder.module, "config") or not hasattr(type(encoder.module), "from_pretrained"):
            raise
        # a registered transformers architecture: the hub layout (save_pretrained keys) loads through its own mapping
        try:
            load_hub_layout(encoder.module, state, what="as a hub layout")
        except InputError as hub:
            raise InputError(f"{direct}; {hub}") from None
    encoder.weights_changed()
    encoder.info["arch"] = arch.name
    return encoder


_BUILDERS = {"hf-zip": _hf_zip, "open-clip": _open_clip, "state-dict": _state_dict}


def _build_from(spec: EncoderSpec, base: Path, layer: str | None) -> VisionEncoder:
    own = UploadParams.of(spec.params)
    kind = own.kind
    if kind not in _BUILDERS:  # e.g. a TorchScript upload stored by an older version: never loaded
        raise InputError(f"{spec.name}: uploads of kind {kind!r} are no longer loaded (code, not data); delete it and "
                         "upload a state dict for a registered architecture instead")
    encoder = _BUILDERS[kind](spec, base, layer)
    encoder.name, encoder.family = spec.name, FAMILY
    if isinstance(encoder, ModuleEncoder):
        encoder.info.update({"upload_kind": kind, "label": own.label, "hash": own.hash})
    return encoder


def _build(spec: EncoderSpec, layer: str | None) -> VisionEncoder:
    return _build_from(spec, config.subdir("uploads") / UploadParams.of(spec.params).hash, layer)


register_family(FAMILY, _build, lambda spec: (config.subdir("uploads") / UploadParams.of(spec.params).hash).is_dir(),
                UploadParams)


# --- staging and validation -----------------------------------------------------------------------

def _stage(src: Path, kind: str, stage: Path) -> dict:
    """Put the payload into ``stage``; returns the params that locate it."""
    if kind == "hf-zip":
        files = safe_extract_zip(src, stage / "model")
        configs = [f for f in files if f.name == "config.json"]
        if len(configs) != 1:
            raise InputError(f"the zip must contain exactly one config.json (found {len(configs)})")
        folder = configs[0].parent
        weights = list(folder.glob("*.safetensors"))
        if not weights:
            raise InputError("the zip holds no .safetensors weights next to config.json (pickled .bin files are not accepted)")
        for f in files:
            if f.suffix in {".bin", ".pt", ".pth", ".pkl", ".py"}:
                f.unlink()  # never loaded; keep only data files
        return {"subdir": str(folder.relative_to(stage))}
    name = "weights.safetensors" if is_safetensors(src) else "checkpoint.pt"
    shutil.copyfile(src, stage / name)
    return {"file": name}


def _validate(encoder: VisionEncoder) -> dict:
    size = encoder.preprocessing.input_size
    pixels = torch.zeros(1, 3, *size)
    feats = encoder.encode(pixels).features
    if feats.ndim != 4 or not torch.isfinite(feats).all():
        raise InputError("the uploaded encoder did not produce finite B x C x h x w features")
    out = encoder.describe()
    out["grid"] = list(feats.shape[-2:])
    out["weights_hash"] = encoder.weights_hash()
    return out


def upload_file(
    path: str | Path, kind: str, arch: str | None = None, model_name: str | None = None, label: str | None = None,
    display_name: str | None = None,
) -> UploadResult:
    """Validate and store a checkpoint file; idempotent (same content + options -> same name)."""
    path = Path(path)
    if kind not in KINDS:
        raise InputError(f"unknown upload kind {kind!r} (use one of {', '.join(KINDS)})")
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    if kind == "state-dict" and not arch:
        raise InputError("a state-dict upload needs --arch NAME (a registered architecture, e.g. dinov2-s14-random)")
    if kind == "open-clip" and not model_name:
        raise InputError("an open-clip upload needs --model-name (an open_clip model name, e.g. ViT-B-32)")
    if arch:
        get_spec(arch)  # unknown arch -> InputError with close matches
    from engine.hashing import hash_file

    options = {"kind": kind, "arch": arch, "model_name": model_name}
    digest = hash_obj([CODE_VERSION, hash_file(path, length=64), options], length=32)
    name = f"upload:{digest[:12]}"
    uploads = config.subdir("uploads")
    final = uploads / digest
    existing = [s for s in uploaded_specs() if s.params.hash == digest]
    if existing and final.is_dir():
        spec = existing[0]
        return UploadResult(spec.name, digest, spec.label, kind, {}, existed=True)
    sweep_stale_staging()
    stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=uploads))
    claim_staging(stage)
    shown = display_name or path.name
    try:
        params = _stage(path, kind, stage) | {k: v for k, v in options.items() if v is not None and k != "kind"}
        description = f"uploaded {kind}" + (f" ({arch})" if arch else "") + (f" ({model_name})" if model_name else "")
        spec = EncoderSpec(name, FAMILY, description, True, f"upload:{kind}", params | {"hash": digest, "kind": kind, "label": label})
        info = _validate(_build_from(spec, stage, None))
        release_staging(stage)
        if final.exists():
            shutil.rmtree(final)
        stage.rename(final)
    except InputError as exc:
        raise InputError(f"{shown}: {exc}") from exc
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{shown}: the encoder could not be built or run ({first_line(exc, 160)})") from exc
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    try:
        with store.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO encoder_uploads (hash, name, label, kind, params, description, size_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [digest, name, label, kind, json.dumps(params), description, path.stat().st_size],
            )
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
    return UploadResult(name, digest, label, kind, info)


def upload_bytes(data: bytes, filename: str, kind: str, **options) -> UploadResult:
    """Same as ``upload_file`` for bytes received by the app (written to a private temp file first)."""
    suffix = Path(filename).suffix[:16]
    with tempfile.TemporaryDirectory(prefix="law-upload-") as tmp:
        path = Path(tmp) / f"payload-{hash_bytes(data, 8)}{suffix}"
        path.write_bytes(data)
        return upload_file(path, kind, display_name=Path(filename).name, **options)


def delete_upload(name: str) -> None:
    """Remove an uploaded encoder (store row and folder)."""
    spec = get_spec(name)
    if spec.family != FAMILY:
        raise InputError(f"{name!r} is a built-in encoder, not an upload")
    with store.connect() as con:
        con.execute("DELETE FROM encoder_uploads WHERE hash = ?", [spec.params.hash])
    shutil.rmtree(config.subdir("uploads") / spec.params.hash, ignore_errors=True)
