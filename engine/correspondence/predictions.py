"""One chunk's keypoint predictions in columns: built from its pairs, scored for PCK, as records, as checkpoint files."""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.atomic import atomic_path
from engine.correspondence.datasets import Pair
from engine.correspondence.pck import PairScores, as_points, longest_side, score_points
from engine.errors import InputError

CHECKPOINT_FORMAT = 1  # the ``format`` entry of a chunk's .npz checkpoint
_CHECKPOINT_ENTRIES = {"format", "pair_ids", "counts", "pred"}


@dataclass(frozen=True, eq=False)  # arrays: compare fields explicitly
class ChunkPredictions:
    """Predicted target keypoints of some pairs with what PCK needs, one array per field: pair ``k``'s keypoints are
    rows ``offsets[k]:offsets[k + 1]`` of ``pred`` (rounded to 3 decimals, original pixels), ``gt`` and ``visible``.
    ``scores``: its PCK counts once ``scored``."""

    pair_ids: tuple[str, ...]
    categories: tuple[str, ...]
    offsets: np.ndarray  # n + 1, int64
    pred: np.ndarray  # K x 2, float64
    gt: np.ndarray  # K x 2, float64
    visible: np.ndarray  # K, bool
    trg_bndbox: np.ndarray  # n x 4, float64
    trg_imsize: np.ndarray  # n x 2, int64
    scores: PairScores | None = None

    @classmethod
    def of_pairs(cls, pairs: Sequence[Pair], pred: np.ndarray) -> ChunkPredictions:
        """``pred``: every pair's predictions (as many as its source keypoints) after each other, kept as given."""
        counts = np.asarray([len(p.src_kps) for p in pairs], dtype=np.int64)
        pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
        if len(pred) != counts.sum():
            raise InputError(f"{len(pred)} predicted keypoints for {int(counts.sum())} source keypoints")
        for p, n in zip(pairs, counts, strict=True):
            if len(p.trg_kps) != n or len(p.visible) != n:
                raise InputError(f"pair {p.pair_id}: {n} source keypoints but {len(p.trg_kps)} target keypoints "
                                 f"and {len(p.visible)} visibility flags")  # fmt: skip
        gt = [np.asarray(p.trg_kps, dtype=np.float64).reshape(-1, 2) for p in pairs]
        return cls(
            pair_ids=tuple(p.pair_id for p in pairs),
            categories=tuple(p.category for p in pairs),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            pred=pred,
            gt=np.concatenate(gt) if gt else np.zeros((0, 2)),
            visible=np.concatenate([np.asarray(p.visible, dtype=bool).reshape(-1) for p in pairs] or [np.zeros(0, bool)]),
            trg_bndbox=np.asarray([[float(v) for v in p.trg_bbox] for p in pairs], dtype=np.float64).reshape(-1, 4),
            trg_imsize=np.asarray([[int(v) for v in p.trg_size] for p in pairs], dtype=np.int64).reshape(-1, 2),
        )

    def __len__(self) -> int:
        return len(self.pair_ids)

    def scored(self, alphas: Sequence[float], normalizer: str, comparison: str) -> ChunkPredictions:
        """This chunk with its PCK counts (``scores``), every keypoint at once (``pck.score_points``; an error names
        the pair by its id)."""
        boxes = self.trg_bndbox if normalizer == "bbox" else self.trg_imsize
        lengths = longest_side(boxes, normalizer)
        scores = score_points(self.categories, np.diff(self.offsets), self.pred, self.gt, self.visible, lengths,
                              alphas, comparison, normalizer, names=self.pair_ids)  # fmt: skip
        return replace(self, scores=scores)

    def records(self) -> list[dict[str, Any]]:
        """The per-pair JSON records (``pair_id``, ``category``, ``pred_kps``, ``gt_kps``, ``visible``,
        ``trg_bndbox``, ``trg_imsize``) that ``pck.pck_from_predictions`` reads."""
        out = []
        for k, (a, b) in enumerate(zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist(), strict=True)):
            out.append(
                {
                    "pair_id": self.pair_ids[k],
                    "category": self.categories[k],
                    "pred_kps": self.pred[a:b].tolist(),
                    "gt_kps": self.gt[a:b].tolist(),
                    "visible": self.visible[a:b].tolist(),
                    "trg_bndbox": self.trg_bndbox[k].tolist(),
                    "trg_imsize": self.trg_imsize[k].tolist(),
                }
            )
        return out


def checkpoint_path(run_dir: Path, key: str, index: int) -> Path:
    """Where chunk ``index`` of evaluation ``key`` is checkpointed."""
    return Path(run_dir) / f"{key}-chunk{index:05d}.npz"


def _legacy_path(path: Path) -> Path:
    """The JSON records file that earlier versions wrote for the same chunk."""
    return path.with_suffix(".json")


def has_checkpoint(path: Path) -> bool:
    """Whether a checkpoint (this version's or an earlier version's JSON) exists for the chunk; it may be malformed."""
    return path.exists() or _legacy_path(path).exists()


def write_checkpoint(path: Path, predictions: ChunkPredictions) -> None:
    """The chunk's pair ids, keypoint counts and predictions as an uncompressed .npz, whole or not at all (the
    rest comes from the pairs when it is read)."""
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            format=np.asarray(CHECKPOINT_FORMAT, dtype=np.int64),
            pair_ids=np.asarray(predictions.pair_ids, dtype=np.str_),
            counts=np.diff(predictions.offsets),
            pred=predictions.pred,
        )


def read_checkpoint(path: Path, pairs: Sequence[Pair]) -> ChunkPredictions | None:
    """The chunk's predictions from its checkpoint (or from an earlier version's JSON records), or None when there
    is none or it does not hold exactly these pairs with their keypoint counts (malformed, truncated, another
    chunk's): the chunk is then matched again. Never unpickles."""
    pred = None
    if path.is_file():
        pred = _read_npz(path, pairs)
    if pred is None and _legacy_path(path).is_file():
        pred = _read_legacy_json(_legacy_path(path), pairs)
    if pred is None:
        return None
    return ChunkPredictions.of_pairs(pairs, pred)


def _read_npz(path: Path, pairs: Sequence[Pair]) -> np.ndarray | None:
    counts = np.asarray([len(p.src_kps) for p in pairs], dtype=np.int64)
    try:
        with np.load(path, allow_pickle=False) as data:
            if set(data.files) != _CHECKPOINT_ENTRIES:
                return None
            fmt, ids, stored, pred = data["format"], data["pair_ids"], data["counts"], data["pred"]
    except (OSError, ValueError, KeyError, EOFError, AttributeError, TypeError, MemoryError, zipfile.BadZipFile,
            zlib.error):  # fmt: skip
        # AttributeError/TypeError: a lone .npy is an array, not an archive (no ``files``, no context manager)
        return None
    if fmt.shape != () or fmt.dtype.kind not in "iu" or int(fmt) != CHECKPOINT_FORMAT:
        return None
    if ids.dtype.kind != "U" or ids.shape != (len(pairs),) or ids.tolist() != [p.pair_id for p in pairs]:
        return None
    if stored.dtype.kind not in "iu" or stored.shape != counts.shape or not np.array_equal(stored, counts):
        return None
    if pred.dtype != np.float64 or pred.shape != (int(counts.sum()), 2):
        return None
    return pred


def _read_legacy_json(path: Path, pairs: Sequence[Pair]) -> np.ndarray | None:
    """Predictions from the JSON records of earlier versions (``pair_id`` and ``pred_kps`` are what is read)."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(records, list) or len(records) != len(pairs):
        return None
    preds = []
    for index, (record, pair) in enumerate(zip(records, pairs, strict=True)):
        if not isinstance(record, dict) or record.get("pair_id") != pair.pair_id:
            return None
        try:
            pred = as_points(record.get("pred_kps"), "pred_kps", index)
        except InputError:
            return None
        if pred.shape != (len(pair.src_kps), 2):
            return None
        preds.append(pred)
    return np.concatenate(preds) if preds else np.zeros((0, 2))
