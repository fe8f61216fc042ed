"""Torch device names from users (``--device``): checked once, with one clear message for unknown or absent devices."""

from __future__ import annotations

import torch

from engine.errors import InputError, NotAvailableError


def check_device(device: str | torch.device) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as a torch.device; unknown names and absent GPUs raise."""
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(str(device).strip())
        except (RuntimeError, TypeError, ValueError):
            raise InputError(f"unknown device {str(device)[:40]!r} (use cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise NotAvailableError(f"device {str(device)!r}: no CUDA GPU is available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= count:
            raise NotAvailableError(f"device {str(device)!r}: this machine has {count} CUDA GPU(s) (cuda:0 .. cuda:{count - 1})")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise NotAvailableError(f"device {str(device)!r}: Apple MPS is not available on this machine (use --device cpu)")
    elif dev.type != "cpu":
        raise InputError(f"unsupported device {str(device)!r} (use cpu, cuda, cuda:N or mps)")
    return dev
