"""Untrusted checkpoint files: weights-only loading, guarded zip extraction and strict key/shape checks.

Nothing here ever runs code from a file: safetensors is plain data; ``torch.load(weights_only=True)``
refuses any pickle that references something other than tensors and primitive containers; zip members
are checked for path traversal, absolute paths, symlinks, member count and (declared and actual)
uncompressed size and compression ratio (per member and for the whole archive) before and while
they are written; a member whose stored data contradicts its header is refused, never half-trusted.
"""

from __future__ import annotations

import pickle
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import torch

from engine import config
from engine.errors import InputError, first_line

MAX_MEMBERS = 2000
MAX_TOTAL_BYTES: int | None = None  # None: LAW_EXPLORER_UPLOAD_MAX_GB (default 8), read when a zip is extracted
MAX_RATIO = 200.0  # uncompressed / compressed, for members over RATIO_MIN_BYTES
RATIO_MIN_BYTES = 1 << 20
# the whole archive: many small members of zeros pass the per-member test but not this one
ARCHIVE_RATIO_MIN_BYTES = 16 << 20
SAFETENSORS_SUFFIXES = (".safetensors",)


def is_safetensors(path: Path) -> bool:
    """Sniff the safetensors layout: 8-byte little-endian header length, then a JSON object."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < size <= path.stat().st_size - 8


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A flat name -> tensor dict from a safetensors file or a weights-only torch checkpoint."""
    path = Path(path)
    if is_safetensors(path):
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise InputError(f"not a valid safetensors file: {first_line(exc)}") from exc
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "global" in line.lower() or "unsupported" in line.lower()), first[0] if first else "")
        raise InputError(f"refused: not a weights-only checkpoint ({detail.strip()[:160]})") from exc
    except Exception as exc:
        raise InputError(f"neither safetensors nor a torch checkpoint: {first_line(exc, 160)}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("the checkpoint does not hold a flat state dict of tensors")
    return state


def strict_load(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str = "checkpoint") -> None:
    """Load with every key and shape checked first; mismatches -> InputError naming a few keys."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (e.g. {'; '.join(wrong[:3])})")
    if problems:
        raise InputError(f"{what} does not fit the architecture: " + "; ".join(problems))
    cast = {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    module.load_state_dict(cast, strict=True)


def load_hub_layout(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str = "checkpoint") -> None:
    """Load a ``save_pretrained`` state dict into a transformers model through its class's own ``from_pretrained``.

    transformers renames keys of older releases (e.g. DINOv2's ``attention.attention.query`` ->
    ``attention.q_proj``) and strips a task head's ``base_model_prefix`` only in ``from_pretrained``; the
    weights are written with the *architecture's* config (never the upload's) to a private temp folder, loaded
    there with safetensors and no remote code, and every missing, unexpected or reshaped key is refused.
    """
    import tempfile

    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="law-hub-layout-") as tmp:
        module.config.save_pretrained(tmp)
        save_file({k: v.contiguous() for k, v in state.items()}, str(Path(tmp) / "model.safetensors"))
        try:
            loaded, info = type(module).from_pretrained(tmp, output_loading_info=True, use_safetensors=True,
                                                       dtype=torch.float32)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise InputError(f"{what} it does not load either ({first_line(exc)})") from None
    missing, unexpected = list(info.get("missing_keys") or []), list(info.get("unexpected_keys") or [])
    wrong = [str(m) for m in info.get("mismatched_keys") or []]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(sorted(missing)[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(sorted(unexpected)[:3])})")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (e.g. {'; '.join(wrong[:3])})")
    if problems:
        raise InputError(f"{what} it does not fit either: " + "; ".join(problems))
    module.load_state_dict(loaded.state_dict(), strict=True)


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise InputError(f"refused archive: member {info.filename!r} has an absolute path")
    if ".." in path.parts:
        raise InputError(f"refused archive: member {info.filename!r} escapes the archive folder ('..')")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise InputError(f"refused archive: member {info.filename!r} is a symbolic link")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise InputError(f"refused archive: member {info.filename!r} is not a regular file")
    return path


def safe_extract_zip(archive: Path, dest: Path) -> list[Path]:
    """Extract a zip into ``dest`` after checking every member; returns the written files."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise InputError("not a zip archive") from exc
    max_total = MAX_TOTAL_BYTES if MAX_TOTAL_BYTES is not None else int(config.env_float("LAW_EXPLORER_UPLOAD_MAX_GB", 8.0) * 1024**3)
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise InputError(f"refused archive: {len(infos)} members (limit {MAX_MEMBERS})")
        declared = sum(i.file_size for i in infos)
        if declared > max_total:
            raise InputError(f"refused archive: {declared / 1e9:.2f} GB uncompressed (limit {max_total / 1e9:.2f} GB)")
        archive_bytes = max(Path(archive).stat().st_size, 1)
        if declared > ARCHIVE_RATIO_MIN_BYTES and declared > MAX_RATIO * archive_bytes:
            raise InputError(f"refused archive: {declared / 1e6:.0f} MB uncompressed from {archive_bytes / 1e6:.1f} MB "
                             f"(ratio {declared / archive_bytes:.0f} > {MAX_RATIO:.0f}; zip bomb?)")
        planned = []
        for info in infos:
            path = _member_path(info)
            if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise InputError(f"refused archive: member {info.filename!r} has a suspicious compression ratio (zip bomb?)")
            planned.append((info, path))
        written, total = [], 0
        for info, path in planned:
            target = dest.joinpath(*path.parts)
            if not target.resolve().is_relative_to(dest.resolve()):
                raise InputError(f"refused archive: member {info.filename!r} escapes the archive folder")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    remaining = info.file_size
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        remaining -= len(chunk)
                        if remaining < 0 or total > max_total:
                            raise InputError(f"refused archive: member {info.filename!r} inflates beyond its declared size")
                        out.write(chunk)
                if remaining:
                    raise InputError(f"refused archive: member {info.filename!r} is shorter than its declared size")
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                # a lying size header, a bad CRC, truncated data, encryption or an unknown compression
                raise InputError(f"refused archive: member {info.filename!r} is corrupt or does not match its header "
                                 f"({first_line(exc, 120)})") from None
            written.append(target)
    return written
