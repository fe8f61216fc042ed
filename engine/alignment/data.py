"""LLaVA-Pretrain-format caption data: a JSON list of {id, image, conversations} plus an image folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.userfiles import read_json_file

MAX_JSON_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class Pair:
    """One image-caption pair; ``image`` is a resolved path inside the image folder."""

    id: str
    image: Path
    caption: str


def _caption(entry: dict, where: str) -> str:
    turns = entry.get("conversations")
    if not isinstance(turns, list):
        raise InputError(f"{where}: 'conversations' must be a list")
    for turn in turns:
        if isinstance(turn, dict) and turn.get("from") == "gpt" and isinstance(turn.get("value"), str):
            return turn["value"].strip()
    raise InputError(f"{where}: no 'gpt' turn with the caption")


def load_pairs(data_json: str | Path, image_dir: str | Path, check_files: bool = True) -> list[Pair]:
    """Parse and validate the JSON; image paths must stay inside ``image_dir`` (no traversal, no symlinks out)."""
    data_json, image_dir = Path(data_json), Path(image_dir)
    entries = read_json_file(data_json, "caption data file", MAX_JSON_BYTES)
    if not image_dir.is_dir():
        raise InputError(f"image folder not found: {image_dir}")
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{data_json.name} must hold a non-empty JSON list of samples")
    root = image_dir.resolve()
    pairs = []
    for n, entry in enumerate(entries):
        where = f"{data_json.name}[{n}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise InputError(f"{where}: each sample needs an 'image' path")
        image = (root / entry["image"]).resolve()
        if not image.is_relative_to(root):
            raise InputError(f"{where}: image path {entry['image']!r} leaves the image folder")
        if check_files and not image.is_file():
            raise InputError(f"{where}: image {entry['image']!r} not found in {image_dir}")
        pairs.append(Pair(id=str(entry.get("id", n)), image=image, caption=_caption(entry, where)))
    return pairs


def write_pairs(pairs: list[tuple[str, str, str]], data_json: Path) -> None:
    """Write (id, relative image path, caption) triples as LLaVA-Pretrain JSON."""
    entries = [
        {
            "id": pid,
            "image": rel,
            "conversations": [{"from": "human", "value": "<image>\n"}, {"from": "gpt", "value": caption}],
        }
        for pid, rel, caption in pairs
    ]
    data_json.write_text(json.dumps(entries, indent=1), encoding="utf-8")
