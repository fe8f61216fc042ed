"""Uploads validated off the caller's thread: the app submits the bytes and polls, its script thread stays free."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from engine.encoders.upload import UploadResult, upload_bytes

# One worker: validations build and run a model each, and run one after another rather than competing for the cores.
_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-validate")


def submit_upload(data: bytes, filename: str, kind: str, **options: Any) -> Future[UploadResult]:
    """Start ``upload_bytes`` in the background; the future's result is the ``UploadResult`` or its error."""
    return _EXECUTOR.submit(upload_bytes, data, filename, kind, **options)
