"""Region-based sampling of the AC policy: grid cells of the normalised A-C square, coarse to fine."""

from __future__ import annotations

import numpy as np

MAX_LEVEL = 24
START_LEVEL = 1

Level = tuple[list[int], list[int], dict[int, list[int]]]  # cell of each point, sorted cells, members per cell


def cell_ids(a_norm: np.ndarray, c_norm: np.ndarray, level: int) -> np.ndarray:
    """Cell index of each point in the 2^level x 2^level grid over [0, 1]² (the upper edge joins the last cell)."""
    m = 2**level
    ia = np.clip(np.floor(np.asarray(a_norm) * m).astype(np.int64), 0, m - 1)
    ic = np.clip(np.floor(np.asarray(c_norm) * m).astype(np.int64), 0, m - 1)
    return ia * m + ic


def level_cells(a_norm: np.ndarray, c_norm: np.ndarray) -> list[Level]:
    """Per level START_LEVEL..MAX_LEVEL: cell of each point, the non-empty cells, and their members."""
    levels = []
    for j in range(START_LEVEL, MAX_LEVEL + 1):
        ids = cell_ids(a_norm, c_norm, j).tolist()
        members: dict[int, list[int]] = {}
        for i, cell in enumerate(ids):
            members.setdefault(cell, []).append(i)
        levels.append((ids, sorted(members), members))
        if len(members) == len(ids):
            break  # every point has its own cell: finer levels add nothing
    return levels


def region_sequence(levels: list[Level], length: int, rng: np.random.Generator, picked: list[int] | None = None) -> list[int]:
    """Indices to finetune next, in order: at each level visit the non-empty cells that hold no finetuned
    setting in random order, one random setting per cell; refine the grid when such cells run out.
    Settings at identical A, C that never separate are taken at random after the finest level."""
    n = len(levels[0][0])
    chosen = list(picked or [])
    taken = set(chosen)
    target = min(length + len(chosen), n)
    for ids, cells, members in levels:
        if len(chosen) >= target:
            break
        blocked = {ids[i] for i in taken}
        free = [cell for cell in cells if cell not in blocked]
        if not free:
            continue
        keys = rng.random(2 * len(free))
        for k in np.argsort(keys[: len(free)], kind="stable").tolist():
            if len(chosen) >= target:
                break
            group = members[free[k]]
            pick = group[int(keys[len(free) + k] * len(group))]
            chosen.append(pick)
            taken.add(pick)
    if len(chosen) < target:
        rest = [i for i in range(n) if i not in taken]
        chosen.extend(rest[i] for i in rng.permutation(len(rest))[: target - len(chosen)])
    return chosen[len(picked or []):]


def next_region_pick(levels: list[Level], finetuned: list[int], rng: np.random.Generator) -> tuple[int | None, int]:
    """The next setting by the region rule given a finetuned set: the coarsest level with a free non-empty cell."""
    (pick,) = region_sequence(levels, 1, rng, picked=finetuned) or (None,)
    if pick is None:
        return None, -1
    taken = set(finetuned)
    for offset, (ids, _, _) in enumerate(levels):
        if ids[pick] not in {ids[i] for i in taken}:
            return pick, START_LEVEL + offset
    return pick, MAX_LEVEL + 1
