"""Which backend runs jobs: an explicit choice, else ``LAW_EXPLORER_BACKEND`` / ``RAY_ADDRESS``, else the Jobs page's."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from engine import config
from engine.atomic import write_json_atomic
from engine.errors import InputError, NotAvailableError

BACKENDS = ("local", "ray")
_SAVED = "backend.json"


@dataclass(frozen=True)
class BackendChoice:
    """``name`` is local or ray; ``address`` is the Ray cluster (None: start a local Ray instance)."""

    name: str
    address: str | None = None

    def job_params(self) -> dict:
        """What a job's params carry for this backend (nothing for local, so local jobs keep their ids)."""
        if self.name == "local":
            return {}
        return {"backend": self.name, **({"ray_address": self.address} if self.address else {})}


def _check_name(name: str) -> str:
    value = str(name).strip().lower()
    if value not in BACKENDS:
        raise InputError(f"unknown backend {name!r} (use {' or '.join(BACKENDS)})")
    return value


def _check_address(address: str | None) -> str | None:
    if address is None:
        return None
    value = str(address).strip()
    if not value:
        return None
    if len(value) > 300 or any(c.isspace() or ord(c) < 32 for c in value):
        raise InputError(f"malformed Ray address {address!r} (use HOST:PORT, e.g. 10.0.0.5:6379)")
    return value


def check_remote_device(device: str) -> str:
    """The actors' device on the ray backend: ``cpu`` or ``cuda`` (Ray gives each actor one GPU of its own)."""
    value = str(device).strip().lower()
    if value == "cpu" or value == "cuda":
        return value
    if value.startswith("cuda:"):
        raise InputError(f"device {device!r}: on the ray backend use cuda (each actor gets one GPU of its own)")
    raise InputError(f"unsupported device {str(device)[:40]!r} on the ray backend (use cpu or cuda)")


def saved_default_backend() -> BackendChoice:
    """The default chosen on the Jobs page (``<home>/backend.json``); local when none or unreadable."""
    try:
        data = json.loads((config.home() / _SAVED).read_text(encoding="utf-8"))
        return BackendChoice(_check_name(data.get("backend", "local")), _check_address(data.get("ray_address")))
    except (OSError, ValueError, AttributeError, InputError):
        return BackendChoice("local")


def save_default_backend(name: str, address: str | None = None) -> BackendChoice:
    """Store the default backend for jobs submitted from the app (the Jobs page's selector)."""
    choice = BackendChoice(_check_name(name), _check_address(address))
    path = config.home() / _SAVED
    write_json_atomic(path, {"backend": choice.name, "ray_address": choice.address})
    return choice


def unreachable(address: str | None, timeout: float = 1.0) -> str | None:
    """Why nothing answers at a Ray address now (one line), or None when it answers or no address is given (a local
    instance): the Jobs page says so when the address is saved, rather than at the first job sent there."""
    from engine.scale.cluster import check_reachable

    if not address:
        return None
    try:
        check_reachable(address, timeout=timeout)
    except NotAvailableError as exc:
        return str(exc)
    return None


def resolve_backend(backend: str | None = None, address: str | None = None) -> BackendChoice:
    """The backend for a job: ``backend``/``address`` when given (CLI), else ``LAW_EXPLORER_BACKEND`` and
    ``RAY_ADDRESS``, else the Jobs page's saved choice, else local. An address with the local backend is an error."""
    saved = saved_default_backend()
    env_backend = os.environ.get("LAW_EXPLORER_BACKEND", "").strip()
    if backend is not None and str(backend).strip():
        name = _check_name(backend)
    elif env_backend:
        name = _check_name(env_backend)
    else:
        name = saved.name
    explicit = _check_address(address)
    if name == "local":
        if explicit is not None:
            raise InputError("--ray-address needs --backend ray (the local backend runs on this machine)")
        return BackendChoice("local")
    chosen = explicit or _check_address(os.environ.get("RAY_ADDRESS")) or (saved.address if saved.name == "ray" else None)
    return BackendChoice(name, chosen)
