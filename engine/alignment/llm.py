"""Frozen causal LMs for alignment: load from a local dir or the local HF cache (offline by default), fail fast."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from engine.errors import InputError, NotAvailableError
from engine.hashing import hash_file, hash_obj


def downloads_allowed() -> bool:
    """Hub downloads happen only when LAW_EXPLORER_ALLOW_DOWNLOAD=1 and the HF offline flags are unset."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        return False
    return os.environ.get("LAW_EXPLORER_ALLOW_DOWNLOAD") == "1"


def _source(id_or_path: str) -> tuple[str, bool]:
    path = Path(id_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise InputError(f"{path} is not a Hugging Face model folder (no config.json)")
        return str(path), True
    if id_or_path.startswith((".", "/", "~")):
        raise InputError(f"LLM folder not found: {id_or_path}")
    return id_or_path, not downloads_allowed()


def _not_cached(id_or_path: str, exc: Exception) -> NotAvailableError:
    return NotAvailableError(
        f"LLM {id_or_path!r} is not in the local Hugging Face cache and downloads are off "
        f"(set LAW_EXPLORER_ALLOW_DOWNLOAD=1 with network, or pass a local folder): {type(exc).__name__}"
    )


def llm_hidden_size(id_or_path: str) -> int:
    """The LLM's hidden size from its config only (no weights loaded)."""
    from transformers import AutoConfig

    source, local_only = _source(id_or_path)
    try:
        cfg = AutoConfig.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise _not_cached(id_or_path, exc) from exc
    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return int(text_cfg.hidden_size)


def load_llm(id_or_path: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> tuple[nn.Module, object]:
    """(frozen model in eval mode, tokenizer) from a local folder or the local cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    source, local_only = _source(id_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=local_only, dtype=dtype or torch.float32)
    except (OSError, ValueError) as exc:
        raise _not_cached(id_or_path, exc) from exc
    model.to(device).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model, tokenizer


def llm_fingerprint(id_or_path: str) -> str:
    """Identity of an LLM for cache keys and records: weight-file hashes of a local folder, else the id."""
    path = Path(id_or_path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in {".safetensors", ".bin", ".json"})
        return hash_obj([[p.name, hash_file(p)] for p in files])
    return hash_obj(id_or_path)


def caption_ids(tokenizer, caption: str) -> list[int]:
    """Caption tokens as LLaVA ``plain`` scores them: the caption, then EOS when the tokenizer has one."""
    ids = list(tokenizer(caption, add_special_tokens=False)["input_ids"])
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.append(int(tokenizer.eos_token_id))
    if not ids:
        raise InputError(f"caption {caption[:40]!r} tokenises to nothing")
    return ids


def prefix_ids(tokenizer) -> list[int]:
    """Tokens before the image in LLaVA ``plain``: BOS when the tokenizer has one."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return [int(bos)] if bos is not None else []
