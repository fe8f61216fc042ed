"""PCK (percentage of correct keypoints) from predicted and ground-truth target keypoints, every knob explicit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.correspondence.protocols import alpha_key
from engine.errors import InputError, first_line


def _numbers(value: Any, what: str, index: int) -> np.ndarray:
    """JSON numbers only: text, booleans, nested objects and integers beyond float range are refused."""
    if isinstance(value, str | bytes | dict) or value is None:
        raise InputError(f"pair {index}: {what} must be a list of numbers, got {str(value)[:40]!r}")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"pair {index}: {what} is not a list of numbers ({first_line(exc, 80)})") from None
    if arr.size and arr.dtype.kind not in "iuf":
        raise InputError(f"pair {index}: {what} must hold only numbers, got {str(value)[:60]!r}")
    return arr.astype(np.float64)


def as_points(value: Any, what: str, index: int) -> np.ndarray:
    """An N x 2 array of [x, y] JSON numbers (``_numbers``); errors name the pair and the field."""
    arr = _numbers(value, what, index)
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputError(f"pair {index}: {what} must be N x 2 [x, y], got shape {list(arr.shape)}")
    return arr


def _visible(value: Any, n: int, index: int) -> np.ndarray:
    """``visible``: absent/null (all visible) or a list of JSON booleans (0/1 accepted), one per keypoint."""
    if value is None:
        return np.ones(n, dtype=bool)
    if not isinstance(value, list) or not all(isinstance(v, bool) or (isinstance(v, int) and v in (0, 1)) for v in value):
        raise InputError(f"pair {index}: visible must be a list of true/false, got {str(value)[:60]!r}")
    if len(value) != n:
        raise InputError(f"pair {index}: visible has {len(value)} entries for {n} keypoints")
    return np.asarray(value, dtype=bool).reshape(-1)


def check_alphas(alphas: Sequence[float]) -> list[float]:
    """PCK thresholds: at least one, each a fraction in (0, 1) (as in a protocol)."""
    out = []
    for a in alphas:
        if isinstance(a, bool) or not isinstance(a, int | float | np.floating) or not np.isfinite(a) or not 0 < a < 1:
            raise InputError(f"alpha {a!r} is not a threshold in (0, 1) (e.g. 0.05,0.1,0.15)")
        out.append(float(a))
    if not out:
        raise InputError("give at least one alpha (e.g. 0.05,0.1,0.15)")
    return out


def normalizer_length(record: dict, normalizer: str, index: int = 0) -> float:
    """The length alpha is multiplied by: longest side of the target bbox or of the target image."""
    if normalizer == "bbox":
        box = record.get("trg_bndbox")
        if box is None:
            raise InputError(f"pair {index}: trg_bndbox [x1, y1, x2, y2] is required for the bbox normaliser")
        values = _numbers(box, "trg_bndbox", index)
        if values.shape != (4,):
            raise InputError(f"pair {index}: trg_bndbox must be [x1, y1, x2, y2], got {str(box)[:60]}")
        x1, y1, x2, y2 = (float(v) for v in values)
        length = max(x2 - x1, y2 - y1)
    elif normalizer == "image":
        size = record.get("trg_imsize")
        if size is None:
            raise InputError(f"pair {index}: trg_imsize [w, h] is required for the image normaliser")
        values = _numbers(size, "trg_imsize", index)
        if values.ndim != 1 or len(values) < 2:
            raise InputError(f"pair {index}: trg_imsize must be [w, h], got {str(size)[:60]}")
        length = max(float(values[0]), float(values[1]))
    else:
        raise InputError(f"unknown normalizer {normalizer!r} (use bbox or image)")
    if not np.isfinite(length) or length <= 0:
        raise InputError(f"pair {index}: the {normalizer} normaliser length is not positive ({length})")
    return length


def pair_correct(record: dict, alphas: Sequence[float], normalizer: str, comparison: str, index: int = 0) -> np.ndarray:
    """A x V boolean array: is each visible keypoint of one pair correct at each alpha (V may be 0)."""
    pred = as_points(record.get("pred_kps"), "pred_kps", index)
    gt = as_points(record.get("gt_kps"), "gt_kps", index)
    if pred.shape != gt.shape:
        raise InputError(f"pair {index}: pred_kps has {len(pred)} points but gt_kps has {len(gt)}")
    vis = _visible(record.get("visible"), len(gt), index)
    vis = vis & np.isfinite(gt).all(axis=1)
    if not vis.any():
        return np.zeros((len(alphas), 0), dtype=bool)
    length = normalizer_length(record, normalizer, index)
    err = np.linalg.norm(pred[vis] - gt[vis], axis=1)
    err = np.where(np.isfinite(err), err, np.inf)
    thresholds = np.asarray(alphas, dtype=np.float64)[:, None] * length
    if comparison == "<=":
        return err[None, :] <= thresholds
    if comparison == "<":
        return err[None, :] < thresholds
    raise InputError(f"unknown comparison {comparison!r} (use <= or <)")


@dataclass(frozen=True, eq=False)  # arrays: compare fields explicitly
class PairScores:
    """PCK counts of some pairs, in order: ``scored[k]`` visible keypoints with finite ground truth (0: the pair is
    skipped), ``correct[k, a]`` of them within alpha ``a``; ``categories[k]`` its category."""

    categories: tuple[str, ...]
    scored: np.ndarray  # n, int64
    correct: np.ndarray  # n x A, int64


def longest_side(boxes_or_sizes: np.ndarray, normalizer: str) -> np.ndarray:
    """Per pair, the normaliser length: ``max(x2 - x1, y2 - y1)`` of n x 4 target boxes (``bbox``) or ``max(w, h)``
    of n x 2 target sizes (``image``), with Python's ``max`` (a NaN first side wins, a NaN second side loses)."""
    values = np.asarray(boxes_or_sizes, dtype=np.float64)
    if normalizer == "bbox":
        a, b = values[:, 2] - values[:, 0], values[:, 3] - values[:, 1]
    elif normalizer == "image":
        a, b = values[:, 0], values[:, 1]
    else:
        raise InputError(f"unknown normalizer {normalizer!r} (use bbox or image)")
    return np.where(b > a, b, a)


def score_points(
    categories: Sequence[str], counts: np.ndarray, pred: np.ndarray, gt: np.ndarray, visible: np.ndarray,
    lengths: np.ndarray, alphas: Sequence[float], comparison: str, normalizer: str = "bbox", first_index: int = 0,
    names: Sequence[str] | None = None,
) -> PairScores:  # fmt: skip
    """PCK counts of n pairs at once: ``counts[k]`` keypoints each, their rows of the K x 2 ``pred`` / ``gt`` and K
    ``visible`` one pair after the other; ``lengths`` the n normaliser lengths (checked only for pairs with a visible
    keypoint; errors name a pair by ``names[k]`` when given, else by its number from ``first_index``). A keypoint is scored when visible with finite ground
    truth; correct when its error is within ``alpha * length`` (a non-finite error never is)."""
    if comparison not in ("<=", "<"):
        raise InputError(f"unknown comparison {comparison!r} (use <= or <)")
    counts = np.asarray(counts, dtype=np.int64)
    n = len(counts)
    pair_of = np.repeat(np.arange(n), counts)
    vis = np.asarray(visible, dtype=bool) & np.isfinite(gt).all(axis=1)
    rows = pair_of[vis]
    scored = np.bincount(rows, minlength=n).astype(np.int64)
    lengths = np.asarray(lengths, dtype=np.float64)
    bad = (scored > 0) & ~(np.isfinite(lengths) & (lengths > 0))
    if bad.any():
        k = int(np.argmax(bad))
        which = first_index + k if names is None else names[k]
        raise InputError(f"pair {which}: the {normalizer} normaliser length is not positive ({lengths[k]})")
    err = np.linalg.norm(pred[vis] - gt[vis], axis=1)
    err = np.where(np.isfinite(err), err, np.inf)
    thresholds = lengths[rows][:, None] * np.asarray(alphas, dtype=np.float64)[None, :]
    hits = err[:, None] <= thresholds if comparison == "<=" else err[:, None] < thresholds
    correct = np.stack([np.bincount(rows, weights=hits[:, a], minlength=n) for a in range(hits.shape[1])], axis=1)
    return PairScores(tuple(str(c) for c in categories), scored, correct.astype(np.int64).reshape(n, len(alphas)))


def summarise_scores(parts: Sequence[PairScores], alphas: Sequence[float], primary: str = "per_image") -> dict[str, Any]:
    """The PCK report of the pairs of ``parts`` (in order): see ``pck_from_predictions``."""
    if primary not in ("per_image", "per_point"):
        raise InputError(f"unknown averaging {primary!r} (use per_image or per_point)")
    keys = [alpha_key(a) for a in alphas]
    categories = np.asarray([c for part in parts for c in part.categories], dtype=object)
    scored = np.concatenate([part.scored for part in parts]) if parts else np.zeros(0, dtype=np.int64)
    correct = np.concatenate([part.correct for part in parts]) if parts else np.zeros((0, len(keys)), dtype=np.int64)
    kept = scored > 0
    categories, scored, correct = categories[kept], scored[kept], correct[kept]
    fractions = correct / scored[:, None]  # per pair; exactly a boolean row's mean
    n_points = int(scored.sum())

    def as_dict(values: np.ndarray | None) -> dict[str, float | None]:
        if values is None:
            return {k: None for k in keys}
        return {k: float(v) for k, v in zip(keys, values, strict=True)}

    per_category: dict[str, dict[str, float | None]] = {}
    per_category_pairs: dict[str, int] = {}
    for category in sorted(set(categories.tolist())):
        mine = categories == category
        per_category_pairs[category] = int(mine.sum())
        if primary == "per_image":
            per_category[category] = as_dict(np.mean(fractions[mine], axis=0))
        else:
            per_category[category] = as_dict(correct[mine].sum(axis=0) / scored[mine].sum())
    return {
        "per_image": as_dict(np.mean(fractions, axis=0) if len(fractions) else None),
        "per_point": as_dict(correct.sum(axis=0) / n_points if n_points else None),
        "per_category": per_category,
        "per_category_pairs": per_category_pairs,
        "primary": primary,
        "pairs": len(fractions),
        "points": n_points,
        "skipped_pairs": int((~kept).sum()),
    }


def pck_from_predictions(
    pairs_records: Iterable[dict],
    alphas: Sequence[float] = (0.05, 0.10, 0.15),
    normalizer: str = "bbox",
    comparison: str = "<=",
    primary: str = "per_image",
) -> dict[str, Any]:
    """PCK of a list of per-pair records.

    Each record: ``category``, ``pred_kps`` (N x 2), ``gt_kps`` (N x 2), optional ``visible`` (N bools),
    ``trg_bndbox`` [x1, y1, x2, y2] and/or ``trg_imsize`` [w, h]. Pairs without a visible keypoint are skipped.
    Returns ``{"per_image": {alpha: f}, "per_point": {...}, "per_category": {cat: {alpha: f}},
    "per_category_pairs": {cat: pairs scored}, "primary", "pairs", "points", "skipped_pairs"}``; ``per_category`` uses
    the ``primary`` averaging. Values are in [0, 1]. Each record is read strictly (errors name the pair), then every
    keypoint is scored at once (``score_points``).
    """
    if primary not in ("per_image", "per_point"):
        raise InputError(f"unknown averaging {primary!r} (use per_image or per_point)")
    alphas = check_alphas(alphas)
    if comparison not in ("<=", "<"):
        raise InputError(f"unknown comparison {comparison!r} (use <= or <)")
    categories: list[str] = []
    preds: list[np.ndarray] = []
    gts: list[np.ndarray] = []
    visibles: list[np.ndarray] = []
    lengths: list[float] = []
    for index, record in enumerate(pairs_records):
        if not isinstance(record, dict):
            raise InputError(f"pair {index} is not a JSON object")
        pred = as_points(record.get("pred_kps"), "pred_kps", index)
        gt = as_points(record.get("gt_kps"), "gt_kps", index)
        if pred.shape != gt.shape:
            raise InputError(f"pair {index}: pred_kps has {len(pred)} points but gt_kps has {len(gt)}")
        vis = _visible(record.get("visible"), len(gt), index)
        seen = (vis & np.isfinite(gt).all(axis=1)).any()
        lengths.append(normalizer_length(record, normalizer, index) if seen else 1.0)
        categories.append(str(record.get("category", "all")))
        preds.append(pred)
        gts.append(gt)
        visibles.append(vis)
    counts = np.asarray([len(p) for p in preds], dtype=np.int64)

    def stacked(arrays: list[np.ndarray], shape: tuple[int, ...], dtype) -> np.ndarray:
        return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(shape, dtype=dtype)

    scores = score_points(categories, counts, stacked(preds, (0, 2), np.float64), stacked(gts, (0, 2), np.float64),
                          stacked(visibles, (0,), bool), np.asarray(lengths), alphas, comparison, normalizer)  # fmt: skip
    return summarise_scores([scores], alphas, primary)
