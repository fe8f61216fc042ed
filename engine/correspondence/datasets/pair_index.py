"""An on-disk index of parsed keypoint pairs, keyed by a stamp of the files they came from (no JSON re-parsing).

One file per (dataset folder, split, layout) under ``<home>/pair-index/``: a magic line, a one-line JSON header
(format, the stamp key, counts, a BLAKE2b checksum) and a raw little-endian blob (keypoint offsets, source and target
keypoints, boxes, sizes, and the strings as JSON). Read with ``np.frombuffer`` only (never pickle); every count,
size, checksum and the invariants ``SPairDataset._parse`` enforces are checked before a pair is built, so a
truncated, stale or hostile file is ignored (the caller parses again), never trusted. Written atomically.
``LAW_EXPLORER_PAIR_INDEX=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine import config
from engine.atomic import atomic_path
from engine.correspondence.datasets.base import Pair
from engine.hashing import hash_obj

FORMAT_VERSION = 1
MAGIC = b"law-explorer pair index\n"
SUFFIX = ".pairs"
MAX_FILES = 32  # index files kept (least recently used removed): one per dataset folder, split and layout
MAX_HEADER_BYTES = 4096
# A file changed this recently may change again within one timestamp tick unseen (git's "racily clean" entries):
# such a stamp is used but not stored.
RACY_NS = 2_000_000_000
ENV = "LAW_EXPLORER_PAIR_INDEX"
_STRING_FIELDS = ("pair_id", "category", "src_id", "trg_id")


def enabled() -> bool:
    """False when ``LAW_EXPLORER_PAIR_INDEX`` is 0/false/no/off."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def index_folder() -> Path:
    """``<home>/pair-index`` (beside ``<home>/features``); any file in it may be deleted at any time."""
    return config.subdir("pair-index")


def index_path(identity: dict) -> Path:
    """The index file of one (dataset folder, split, layout) identity."""
    return index_folder() / f"{hash_obj(identity, 24)}{SUFFIX}"


def pack(key: str, offsets: np.ndarray, src_kps: np.ndarray, trg_kps: np.ndarray, boxes: np.ndarray,
         sizes: np.ndarray, strings: bytes) -> bytes:  # fmt: skip
    """The file's bytes for these arrays (offsets P+1 int64, keypoints K x 2 float64, boxes P x 8 float64,
    sizes P x 4 int64, strings: UTF-8 JSON of the four string columns)."""
    blob = b"".join([
        np.ascontiguousarray(offsets, dtype="<i8").tobytes(), np.ascontiguousarray(src_kps, dtype="<f8").tobytes(),
        np.ascontiguousarray(trg_kps, dtype="<f8").tobytes(), np.ascontiguousarray(boxes, dtype="<f8").tobytes(),
        np.ascontiguousarray(sizes, dtype="<i8").tobytes(), strings,
    ])  # fmt: skip
    header = {"format": FORMAT_VERSION, "key": key, "pairs": len(offsets) - 1, "points": len(src_kps),
              "strings_bytes": len(strings), "blake2b": hashlib.blake2b(blob, digest_size=20).hexdigest()}  # fmt: skip
    return MAGIC + json.dumps(header, separators=(",", ":")).encode("ascii") + b"\n" + blob


def encode(pairs: list[Pair], key: str) -> bytes | None:
    """The index bytes of pairs as ``SPairDataset._parse`` makes them, or None when a value would not come back
    exactly (a size beyond int64, a string JSON changes): then nothing is stored."""
    n = len(pairs)
    counts = np.fromiter((len(p.src_kps) for p in pairs), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    points = int(offsets[-1])
    try:
        src_kps = np.concatenate([p.src_kps for p in pairs]) if n else np.zeros((0, 2))
        trg_kps = np.concatenate([p.trg_kps for p in pairs]) if n else np.zeros((0, 2))
        visible = np.concatenate([p.visible for p in pairs]) if n else np.zeros(0, dtype=bool)
        boxes = np.array([(*p.src_bbox, *p.trg_bbox) for p in pairs], dtype=np.float64).reshape(n, 8)
        sizes = np.array([(*p.src_size, *p.trg_size) for p in pairs], dtype=np.int64).reshape(n, 4)
    except (ValueError, TypeError, OverflowError):
        return None
    if src_kps.dtype != np.float64 or trg_kps.dtype != np.float64 or src_kps.shape != (points, 2) \
            or trg_kps.shape != (points, 2) or visible.dtype != np.bool_ or visible.shape != (points,) \
            or not visible.all():  # fmt: skip
        return None
    columns = {f: [getattr(p, f) for p in pairs] for f in _STRING_FIELDS}
    strings = json.dumps(columns, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    if json.loads(strings) != columns:  # a string JSON would not give back unchanged
        return None
    return pack(key, offsets, src_kps, trg_kps, boxes, sizes, strings)


def decode(data: bytes, key: str, stems: list[str]) -> list[Pair] | None:
    """The pairs in ``data`` if it is a whole, valid index for ``key`` whose pair ids are ``stems``; else None."""
    if not data.startswith(MAGIC):
        return None
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER_BYTES)
    if end < 0:
        return None
    try:
        header = json.loads(data[len(MAGIC) : end])
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION or header.get("key") != key:
        return None
    n_pairs, n_points, n_strings = header.get("pairs"), header.get("points"), header.get("strings_bytes")
    if not all(type(v) is int and v >= 0 for v in (n_pairs, n_points, n_strings)) or n_pairs != len(stems):
        return None
    blob = memoryview(data)[end + 1 :]
    sizes_in_bytes = [8 * (n_pairs + 1), 16 * n_points, 16 * n_points, 64 * n_pairs, 32 * n_pairs, n_strings]
    if len(blob) != sum(sizes_in_bytes) or header.get("blake2b") != hashlib.blake2b(blob, digest_size=20).hexdigest():
        return None
    parts, start = [], 0
    for size in sizes_in_bytes:
        parts.append(blob[start : start + size])
        start += size
    offsets = np.frombuffer(parts[0], dtype="<i8")
    # one writable, native-order copy: the pairs' keypoints are row slices of it, as parsed ones are writable
    src_all = np.frombuffer(parts[1], dtype="<f8").astype(np.float64).reshape(n_points, 2)
    trg_all = np.frombuffer(parts[2], dtype="<f8").astype(np.float64).reshape(n_points, 2)
    boxes = np.frombuffer(parts[3], dtype="<f8").reshape(n_pairs, 8)
    sizes = np.frombuffer(parts[4], dtype="<i8").reshape(n_pairs, 4)
    if offsets[0] != 0 or offsets[-1] != n_points or (np.diff(offsets) < 0).any():
        return None
    # the checks SPairDataset._parse makes (equal keypoint counts hold by construction)
    if not (np.isfinite(src_all).all() and np.isfinite(trg_all).all() and np.isfinite(boxes).all()):
        return None
    if (boxes[:, 2] <= boxes[:, 0]).any() or (boxes[:, 3] <= boxes[:, 1]).any() or (boxes[:, 6] <= boxes[:, 4]).any() \
            or (boxes[:, 7] <= boxes[:, 5]).any() or (sizes < 1).any():  # fmt: skip
        return None
    try:
        columns = json.loads(bytes(parts[5]))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(columns, dict) or set(columns) != set(_STRING_FIELDS):
        return None
    if any(not isinstance(c, list) or len(c) != n_pairs or not all(type(s) is str for s in c) for c in columns.values()):
        return None
    if columns["pair_id"] != stems:
        return None
    box_rows, size_rows, cuts = boxes.tolist(), sizes.tolist(), offsets.tolist()
    visible = np.ones(n_points, dtype=bool)
    return [
        Pair(pair_id=pid, category=cat, src_id=src, trg_id=trg, src_kps=src_all[a:b], trg_kps=trg_all[a:b],
             visible=visible[a:b], src_bbox=tuple(box[:4]), trg_bbox=tuple(box[4:]),  # type: ignore[arg-type]
             src_size=(size[0], size[1]), trg_size=(size[2], size[3]))
        for pid, cat, src, trg, box, size, a, b in zip(columns["pair_id"], columns["category"], columns["src_id"],
                                                       columns["trg_id"], box_rows, size_rows, cuts[:-1], cuts[1:], strict=True)
    ]  # fmt: skip


@contextlib.contextmanager
def without_gc() -> Iterator[None]:
    """No cyclic garbage collection inside the block: building ~10^5 small acyclic objects (pairs, stamp rows) in a
    process that holds torch otherwise triggers full collections (measured: 2x the index read's own time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load(path: Path, key: str, stems: list[str], max_bytes: int | None = None) -> list[Pair] | None:
    """The indexed pairs, or None when the file is missing, stale, larger than ``max_bytes`` (not read) or invalid
    in any way."""
    try:
        with open(path, "rb") as fh:
            if max_bytes is not None and os.fstat(fh.fileno()).st_size > max_bytes:
                return None
            data = fh.read()
    except OSError:
        return None
    pairs = decode(data, key, stems)
    if pairs is not None:
        with contextlib.suppress(OSError):
            os.utime(path)  # recency for the least-recently-used trim
    return pairs


def save(path: Path, pairs: list[Pair], key: str, max_bytes: int | None = None) -> bool:
    """Store the index whole or not at all; False when the pairs cannot be stored exactly, would take more than
    ``max_bytes`` (``load``'s bound: never written unreadable) or the write failed."""
    data = encode(pairs, key)
    if data is None or (max_bytes is not None and len(data) > max_bytes):
        return False
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError:
        return False  # a full or read-only state folder costs the next run a parse, nothing else
    _trim(path.parent, keep=path.name)
    return True


def _trim(folder: Path, keep: str) -> None:
    """Remove the least recently used index files beyond ``MAX_FILES`` and temporary files of killed writers."""
    files, stale = [], []
    old = time.time_ns() - 3600 * 10**9
    try:
        with os.scandir(folder) as it:
            for entry in it:
                with contextlib.suppress(OSError):
                    if entry.name.endswith(SUFFIX) and entry.name != keep:
                        files.append((entry.stat().st_mtime_ns, entry.path))
                    elif entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.stat().st_mtime_ns < old:
                        stale.append(entry.path)
    except OSError:
        return
    for path in [p for _, p in sorted(files)[: max(0, len(files) + 1 - MAX_FILES)]] + stale:
        with contextlib.suppress(OSError):
            os.unlink(path)
