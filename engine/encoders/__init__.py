"""Vision encoders behind one dense-feature contract: the package face (list, spec, build, probe, upload, delete).

Pages and the CLI use these names; the registry, adapters, preprocessing and the upload store behind them load
on first use (they import torch and the model libraries).
"""

from __future__ import annotations

import importlib
from typing import Any

_FACE: dict[str, str | tuple[str, str]] = {  # name -> module (and the name there when it differs)
    "EncoderSpec": "registry",
    "build_encoder": "registry",
    "get_spec": "registry",
    "list_encoders": "registry",
    "display_name": "registry",
    "display_names": "registry",
    "ProbeResult": "probe",
    "probe_encoder": ("probe", "probe"),  # not "probe": that name is the submodule
    "probe_image": "probe",
    "sweep_stale_staging": "staging",
    "VisionEncoder": "base",
    "Preprocessing": "base",
    "prepare": "preprocess",
    "UploadResult": "upload",
    "delete_upload": "upload",
    "upload_bytes": "upload",
    "upload_file": "upload",
    "submit_upload": "upload_background",
    "UPLOAD_KINDS": ("upload", "KINDS"),
}
__all__ = sorted(_FACE)


def __getattr__(name: str) -> Any:
    if name not in _FACE:
        raise AttributeError(f"module 'engine.encoders' has no attribute {name!r}")
    module, attr = _FACE[name] if isinstance(_FACE[name], tuple) else (_FACE[name], name)
    return getattr(importlib.import_module(f"engine.encoders.{module}"), attr)
