"""PCK (percentage of correct keypoints) from predicted and ground-truth target keypoints, every knob explicit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
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


def _as_points(value: Any, what: str, index: int) -> np.ndarray:
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
    pred = _as_points(record.get("pred_kps"), "pred_kps", index)
    gt = _as_points(record.get("gt_kps"), "gt_kps", index)
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
    "per_category_pairs": {cat: pairs scored}, "primary", "pairs", "points", "skipped_pairs"}``; ``per_category`` uses the ``primary`` averaging. Values are in [0, 1].
    """
    if primary not in ("per_image", "per_point"):
        raise InputError(f"unknown averaging {primary!r} (use per_image or per_point)")
    alphas = check_alphas(alphas)
    keys = [alpha_key(a) for a in alphas]
    image_scores: list[np.ndarray] = []
    point_correct = np.zeros(len(alphas))
    n_points = 0
    skipped = 0
    by_cat_image: dict[str, list[np.ndarray]] = defaultdict(list)
    by_cat_point: dict[str, list[np.ndarray]] = defaultdict(list)
    for index, record in enumerate(pairs_records):
        if not isinstance(record, dict):
            raise InputError(f"pair {index} is not a JSON object")
        correct = pair_correct(record, alphas, normalizer, comparison, index)
        if correct.shape[1] == 0:
            skipped += 1
            continue
        category = str(record.get("category", "all"))
        frac = correct.mean(axis=1)
        image_scores.append(frac)
        point_correct += correct.sum(axis=1)
        n_points += correct.shape[1]
        by_cat_image[category].append(frac)
        by_cat_point[category].append(correct)

    def as_dict(values: np.ndarray | None) -> dict[str, float | None]:
        if values is None:
            return {k: None for k in keys}
        return {k: float(v) for k, v in zip(keys, values, strict=True)}

    per_image = as_dict(np.mean(image_scores, axis=0) if image_scores else None)
    per_point = as_dict(point_correct / n_points if n_points else None)
    per_category: dict[str, dict[str, float | None]] = {}
    for category in sorted(by_cat_image):
        if primary == "per_image":
            per_category[category] = as_dict(np.mean(by_cat_image[category], axis=0))
        else:
            stacked = np.concatenate(by_cat_point[category], axis=1)
            per_category[category] = as_dict(stacked.mean(axis=1))
    return {
        "per_image": per_image,
        "per_point": per_point,
        "per_category": per_category,
        "per_category_pairs": {category: len(by_cat_image[category]) for category in sorted(by_cat_image)},
        "primary": primary,
        "pairs": len(image_scores),
        "points": int(n_points),
        "skipped_pairs": skipped,
    }
