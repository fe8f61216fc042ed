"""A tiny random DINOv2 saved with save_pretrained and zipped: the hf-zip upload that tests hand to the app and CLI."""

from __future__ import annotations

import zipfile
from concurrent.futures import wait
from pathlib import Path


def tiny_hf_zip(folder: Path, top: str = "my-model", name: str = "model.zip") -> Path:
    """Write the zip (one top folder ``top`` holding config and safetensors) into ``folder`` and return its path."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                     image_size=28, patch_size=14))
    saved = folder / "hf"
    model.save_pretrained(saved, safe_serialization=True)
    archive = folder / name
    with zipfile.ZipFile(archive, "w") as zf:
        for f in saved.iterdir():
            zf.write(f, f"{top}/{f.name}")
    return archive


def finish_upload(at, timeout_s: float = 300.0):
    """Wait for the Encoders page's background validation (if one is pending) and rerun the page to show its end."""
    key = "encoders_upload_future"
    if key in at.session_state:
        wait([at.session_state[key][1]], timeout=timeout_s)
        at.run()
    return at
