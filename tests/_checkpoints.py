"""Reading a C evaluation's chunk checkpoints raw, for tests that compare two runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def checkpoint_contents(work: Path) -> list[dict]:
    """Every chunk checkpoint's raw content (pair ids, keypoint counts, predictions), chunk after chunk."""
    out = []
    for path in sorted(work.glob("*-chunk*.npz")):
        with np.load(path, allow_pickle=False) as data:
            out.append({name: data[name].tolist() for name in data.files})
    return out
