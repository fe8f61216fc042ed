"""Vision encoders behind one dense-feature contract: the package face (list, spec, build, probe, upload, delete).

Importing the package imports every adapter named in ``catalog.ADAPTERS`` (each registers its family and the type
of its parameters), then registers the catalog's table of built-in specs: whoever reaches the registry, through
this face or ``engine.encoders.registry``, finds it complete.
"""

from __future__ import annotations

import importlib

from engine.encoders import catalog, registry
from engine.encoders.base import Preprocessing, VisionEncoder
from engine.encoders.preprocess import prepare
from engine.encoders.probe import ProbeResult, probe_image
from engine.encoders.probe import probe as probe_encoder  # not "probe": that name is the submodule
from engine.encoders.registry import (
    EncoderSpec,
    build_encoder,
    display_name,
    display_names,
    get_spec,
    list_encoders,
)
from engine.encoders.staging import sweep_stale_staging
from engine.encoders.upload import KINDS as UPLOAD_KINDS
from engine.encoders.upload import UploadResult, delete_upload, upload_bytes, upload_file
from engine.encoders.upload_background import submit_upload

for _module in catalog.ADAPTERS.values():
    importlib.import_module(f"engine.encoders.{_module}")
registry.load_builtins()

__all__ = [
    "UPLOAD_KINDS",
    "EncoderSpec",
    "Preprocessing",
    "ProbeResult",
    "UploadResult",
    "VisionEncoder",
    "build_encoder",
    "delete_upload",
    "display_name",
    "display_names",
    "get_spec",
    "list_encoders",
    "prepare",
    "probe_encoder",
    "probe_image",
    "submit_upload",
    "sweep_stale_staging",
    "upload_bytes",
    "upload_file",
]
