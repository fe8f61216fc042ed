"""SPair-71k (and PF-PASCAL/PF-WILLOW style folders) from disk; annotations are used as given."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from engine.correspondence.datasets import pair_index
from engine.correspondence.datasets.base import SPLITS, Dataset, Pair, normalise_split, read_rgb
from engine.errors import InputError
from engine.hashing import hash_obj

# Bump whenever _parse or _pair_files changes what a folder yields: every stored pair index is then parsed again.
PARSE_VERSION = 1


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError as exc:
        raise InputError(f"missing annotation file {path}") from exc
    except OSError as exc:  # a folder named like a pair file, no permission
        raise InputError(f"cannot read annotation file {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed JSON in {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"malformed annotation {path}: expected a JSON object")
    return data


def _listing(folder: Path) -> dict[str, os.DirEntry] | None:
    """The entries of a split folder by name (one ``os.scandir``); None when it cannot be listed."""
    try:
        with os.scandir(folder) as it:
            return {entry.name: entry for entry in it}
    except OSError:
        return None


def _stat_row(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class SPairDataset(Dataset):
    """SPair-71k in its standard layout.

    ``<root>/JPEGImages/<cat>/<im>.jpg``, ``ImageAnnotation/<cat>/<im>.json`` (``kps``: {"0": [x, y] | null, ...},
    ``bndbox``, ``image_width``/``image_height``), ``PairAnnotation/{trn,val,test}/<id>-<src>-<trg>:<cat>.json``
    with ``src_imname``, ``trg_imname``, ``category``, ``src_kps``/``trg_kps`` (corresponding keypoints visible in
    both images), ``kps_ids``, ``src_bndbox``/``trg_bndbox`` [x1, y1, x2, y2], ``src_imsize``/``trg_imsize``
    [w, h, c]; optional ``Layout/{large,small}/{trn,val,test}.txt`` (pair file stems, one per line).
    """

    def __init__(self, root: str | Path, layout: str = "large") -> None:
        self.root = Path(root).expanduser()
        self.name = f"spair:{self.root}"
        for sub in ("JPEGImages", "PairAnnotation"):
            if not (self.root / sub).is_dir():
                raise InputError(f"not an SPair-71k folder: {self.root / sub} is missing")
        self.layout = layout
        self.categories = sorted(p.name for p in (self.root / "JPEGImages").iterdir() if p.is_dir())
        stamp = []
        for split in SPLITS:
            folder = self.root / "PairAnnotation" / split
            if folder.is_dir():
                stamp.append((split, len(os.listdir(folder)), folder.stat().st_mtime_ns))
        self.key = hash_obj({"kind": "spair", "root": str(self.root.resolve()), "stamp": stamp})
        self._pairs: dict[str, list[Pair]] = {}

    def _layout_stems(self, split: str) -> list[str] | None:
        """The pair file stems ``Layout/<layout>/<split>.txt`` lists in order (None without that file)."""
        layout_file = self.root / "Layout" / self.layout / f"{split}.txt"
        if not layout_file.is_file():
            return None
        try:
            text = layout_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {layout_file}: {exc}") from exc
        return [line.strip() for line in text.splitlines() if line.strip()]

    def _pair_files(self, split: str, listing: dict[str, os.DirEntry] | None = None) -> list[Path]:
        folder = self.root / "PairAnnotation" / split
        stems = self._layout_stems(split)
        if stems is not None:
            inside = folder.resolve()
            files = []
            for i, stem in enumerate(stems, start=1):
                entry = listing.get(f"{stem}.json") if listing is not None else None
                if entry is not None and not entry.is_symlink():
                    files.append(inside / entry.name)  # what resolve() gives for a plain file listed in the folder
                    continue
                path = (folder / f"{stem}.json").resolve()
                if path.parent != inside:  # a stem is a file name in the split folder, never a path
                    layout_file = self.root / "Layout" / self.layout / f"{split}.txt"
                    raise InputError(f"{layout_file}: line {i}: pair stem {stem!r} leaves {folder}")
                files.append(path)
            return files
        if not folder.is_dir():
            raise InputError(f"SPair split {split!r} not found: {folder} is missing")
        return sorted(folder.glob("*.json"))

    def _pair_ids(self, split: str, listing: dict[str, os.DirEntry]) -> list[str]:
        """``[p.stem for p in self._pair_files(split, listing)]`` (same checks and errors), without building a path
        per pair when the Layout file names only plain files of the listing (the stem is then the pair id)."""
        stems = self._layout_stems(split)
        if stems is not None and all((e := listing.get(f"{s}.json")) is not None and not e.is_symlink() for s in stems):
            return stems
        return [p.stem for p in self._pair_files(split, listing)]

    def _parse(self, path: Path) -> Pair:
        data = _read_json(path)
        try:
            category = str(data["category"])
            src, trg = str(data["src_imname"]), str(data["trg_imname"])
            src_kps = np.asarray(data["src_kps"], dtype=np.float64).reshape(-1, 2)
            trg_kps = np.asarray(data["trg_kps"], dtype=np.float64).reshape(-1, 2)
            src_bbox = tuple(float(v) for v in data["src_bndbox"])
            trg_bbox = tuple(float(v) for v in data["trg_bndbox"])
            src_size = (int(data["src_imsize"][0]), int(data["src_imsize"][1]))
            trg_size = (int(data["trg_imsize"][0]), int(data["trg_imsize"][1]))
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise InputError(f"malformed SPair pair annotation {path}: {type(exc).__name__}: {exc}") from exc
        if len(src_kps) != len(trg_kps) or len(src_bbox) != 4 or len(trg_bbox) != 4:
            raise InputError(f"malformed SPair pair annotation {path}: keypoint counts or bboxes do not match")
        for field, size in (("src_imsize", src_size), ("trg_imsize", trg_size)):
            if min(size) < 1:
                raise InputError(f"malformed SPair pair annotation {path}: {field} {list(size)} is not a positive image size")
        for field, box in (("src_bndbox", src_bbox), ("trg_bndbox", trg_bbox)):
            if not all(math.isfinite(v) for v in box) or box[2] <= box[0] or box[3] <= box[1]:
                raise InputError(f"malformed SPair pair annotation {path}: {field} {list(box)} is not an [x1, y1, x2, y2] box")
        if not (np.isfinite(src_kps).all() and np.isfinite(trg_kps).all()):
            raise InputError(f"malformed SPair pair annotation {path}: non-finite keypoint coordinates")
        return Pair(
            pair_id=path.stem,
            category=category,
            src_id=f"{category}/{src}",
            trg_id=f"{category}/{trg}",
            src_kps=src_kps,
            trg_kps=trg_kps,
            visible=np.ones(len(src_kps), dtype=bool),
            src_bbox=src_bbox,  # type: ignore[arg-type]
            trg_bbox=trg_bbox,  # type: ignore[arg-type]
            src_size=src_size,
            trg_size=trg_size,
        )

    def _stamp(self, split: str, listing: dict[str, os.DirEntry]) -> tuple[Path, str, int, int]:
        """The split's index file, its content key, the newest mtime and the bytes stamped (stat only, no file
        opened). The key covers the name, size, mtime, ctime and inode of every entry of the split folder (a
        symlink's target path too), the Layout file's, the resolved folder, split, layout and ``PARSE_VERSION``."""
        rows, newest, total = [], 0, 0
        for name in sorted(listing):
            entry = listing[name]
            try:
                st = entry.stat()
            except OSError:  # a dangling symlink
                rows.append([name, None])
                continue
            kind = os.path.realpath(entry.path) if entry.is_symlink() else ("d" if entry.is_dir() else "f")
            rows.append([name, kind, *_stat_row(st)])
            newest = max(newest, st.st_mtime_ns)
            total += st.st_size
        try:
            st = (self.root / "Layout" / self.layout / f"{split}.txt").stat()
            layout_row: list[int] | None = _stat_row(st)
            newest = max(newest, st.st_mtime_ns)
        except OSError:
            layout_row = None
        identity = {"root": str(self.root.resolve()), "split": split, "layout": self.layout}
        key = hash_obj({"identity": identity, "entries": rows, "layout_file": layout_row, "parse": PARSE_VERSION,
                        "format": pair_index.FORMAT_VERSION}, length=32)  # fmt: skip
        return pair_index.index_path(identity), key, newest, total

    def _parse_all(self, files: list[Path]) -> list[Pair]:
        # One thread: json holds the GIL, and 2-8 reader threads measured 1.3x slower than one on 2 cores.
        return [self._parse(p) for p in files]

    def _read_pairs(self, split: str) -> list[Pair]:
        """Every pair of a split: from the pair index when its stamp still matches, else parsed (and indexed)."""
        listing = _listing(self.root / "PairAnnotation" / split)
        if listing is None or not pair_index.enabled():
            return self._parse_all(self._pair_files(split, listing))
        try:
            path, key, newest, total = self._stamp(split, listing)  # first: an edit after it changes the next stamp
        except OSError:  # no state folder to keep the index in
            return self._parse_all(self._pair_files(split, listing))
        # an index is kept only up to 4x the bytes of the files it came from (the synthetic SPair set's: 0.8x), and is
        # never read past that
        bound = 4 * total + 2**20
        pairs = pair_index.load(path, key, self._pair_ids(split, listing), max_bytes=bound)
        if pairs is None:
            pairs = self._parse_all(self._pair_files(split, listing))
            if newest < time.time_ns() - pair_index.RACY_NS:
                pair_index.save(path, pairs, key, max_bytes=bound)
        return pairs

    def pairs(self, split: str = "test", limit: int | None = None) -> list[Pair]:
        split = normalise_split(split)
        if split not in self._pairs:
            with pair_index.without_gc():  # ~10^5 acyclic objects
                self._pairs[split] = self._read_pairs(split)
        pairs = self._pairs[split]
        return pairs if limit is None else pairs[: max(0, int(limit))]

    def _image_path(self, image_id: str) -> Path:
        path = (self.root / "JPEGImages" / image_id).resolve()
        if self.root.resolve() not in path.parents:
            raise InputError(f"image id {image_id!r} escapes the dataset folder")
        return path

    def load_image(self, image_id: str) -> np.ndarray:
        return read_rgb(self._image_path(image_id))

    def image_key(self, image_id: str) -> str:
        path = self._image_path(image_id)
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise InputError(f"missing image file {path}") from exc
        return f"spair:{self.key}:{image_id}:{st.st_size}:{st.st_mtime_ns}"
