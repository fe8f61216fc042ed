"""Typed results of the correspondence package: one C evaluation (``evaluate``) and one predicted pair (``predict_pair``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.correspondence.matching import GridMap


@dataclass(frozen=True)
class EvalStats:
    """What one evaluation did: pairs (computed or resumed from checkpoints), images, forwards, cache, time, where."""

    pairs: int
    pairs_computed: int
    pairs_resumed: int
    images: int
    images_encoded: int
    forwards: int
    cache_hits: int
    cache_evicted: int
    seconds: float
    encode_seconds: float  # setup + encoding the missing features
    device: str
    precision: str
    backend: str


@dataclass(frozen=True)
class EvalEncoder:
    """The encoder an evaluation ran: registry name, weights hash, layer and precision."""

    name: str
    weights_hash: str | None
    layer: str
    precision: str


@dataclass(frozen=True)
class EvalDataset:
    """The pairs an evaluation ran on: dataset spec, its content key, split and pair limit."""

    spec: str
    key: str
    split: str
    limit: int | None


@dataclass(frozen=True)
class CEvaluation:
    """One C evaluation: PCK (fractions; ``per_image``, ``per_point``, ``per_category``, ...), the protocol's
    description, run statistics, the encoder and dataset it ran on, and the result id (its inputs' hash).

    ``to_dict()`` is the JSON of ``correspondence evaluate`` and of a C job's result; ``from_dict`` reads it back.
    """

    pck: dict[str, Any]
    protocol: dict[str, Any]
    stats: EvalStats
    encoder: EvalEncoder
    dataset: EvalDataset
    result_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CEvaluation:
        return cls(pck=dict(data["pck"]), protocol=dict(data["protocol"]), stats=EvalStats(**data["stats"]),
                   encoder=EvalEncoder(**data["encoder"]), dataset=EvalDataset(**data["dataset"]),
                   result_id=str(data["result_id"]))  # fmt: skip


@dataclass(frozen=True, eq=False)
class PairPrediction:
    """One pair through the evaluation's code path, with what the keypoint viewer draws.

    Images are uint8 RGB; keypoints N x 2 in original pixels; ``visible`` N bools; ``correct`` {alpha: N bools,
    False where not visible}; ``pck`` {alpha: fraction, None without visible keypoints}; features C x h x w
    float32; ``src_map``/``trg_map`` the grid maps (for ``similarity_map``); ``protocol`` its description.
    """

    pair_id: str
    category: str
    src_image: np.ndarray
    trg_image: np.ndarray
    src_kps: np.ndarray
    gt_kps: np.ndarray
    pred_kps: np.ndarray
    visible: np.ndarray
    src_bbox: list[float]
    trg_bbox: list[float]
    correct: dict[str, list[bool]]
    pck: dict[str, float | None]
    src_features: np.ndarray
    trg_features: np.ndarray
    src_map: GridMap
    trg_map: GridMap
    protocol: dict[str, Any]
