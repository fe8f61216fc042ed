"""What the keypoint viewer needs: one pair's predictions with images and features, and joint-PCA colourings."""

from __future__ import annotations

import numpy as np
import torch

from engine.correspondence.datasets import Dataset, open_dataset
from engine.correspondence.evaluate import _grid_map, predict_pairs, resolve_encoder
from engine.correspondence.features import FeatureProvider, protocol_preprocessing
from engine.correspondence.pck import pair_correct
from engine.correspondence.protocols import Protocol, alpha_key, get_protocol
from engine.correspondence.result_types import PairPrediction
from engine.encoders.base import VisionEncoder
from engine.errors import InputError


def predict_pair(
    encoder_name: str | VisionEncoder,
    dataset_spec: str | Dataset,
    pair_id: str,
    protocol: str | Protocol | dict = "default",
    split: str = "test",
) -> PairPrediction:
    """One pair through the same code path as ``evaluate`` (features from the cache), as a ``PairPrediction``."""
    proto = get_protocol(protocol)
    dataset = dataset_spec if isinstance(dataset_spec, Dataset) else open_dataset(dataset_spec, split)
    matches = [p for p in dataset.pairs(split) if p.pair_id == pair_id]
    if not matches:
        raise InputError(f"no pair {pair_id!r} in {dataset.name} ({split})")
    pair = matches[0]
    encoder = resolve_encoder(encoder_name)
    provider = FeatureProvider(encoder, dataset, protocol_preprocessing(encoder, proto))
    record = predict_pairs([pair], provider, proto).records()[0]
    feats = provider.get([pair.src_id, pair.trg_id])
    provider.flush()
    visible = np.asarray(pair.visible, dtype=bool)
    correct_vis = pair_correct(record, proto.alphas, proto.normalizer, proto.comparison)
    correct: dict[str, list[bool]] = {}
    pck: dict[str, float | None] = {}
    for row, alpha in enumerate(proto.alphas):
        full = np.zeros(len(visible), dtype=bool)
        full[visible & np.isfinite(np.asarray(pair.trg_kps)).all(axis=1)] = correct_vis[row]
        correct[alpha_key(alpha)] = full.tolist()
        pck[alpha_key(alpha)] = float(correct_vis[row].mean()) if correct_vis.shape[1] else None
    return PairPrediction(
        pair_id=pair.pair_id,
        category=pair.category,
        src_image=dataset.load_image(pair.src_id),
        trg_image=dataset.load_image(pair.trg_id),
        src_kps=np.asarray(pair.src_kps, dtype=np.float64),
        gt_kps=np.asarray(pair.trg_kps, dtype=np.float64),
        pred_kps=np.asarray(record["pred_kps"], dtype=np.float64),
        visible=visible,
        src_bbox=[float(v) for v in pair.src_bbox],
        trg_bbox=[float(v) for v in pair.trg_bbox],
        correct=correct,
        pck=pck,
        src_features=feats[pair.src_id].features.astype(np.float32),
        trg_features=feats[pair.trg_id].features.astype(np.float32),
        src_map=_grid_map(pair.src_size, feats[pair.src_id], provider.preprocessing, proto),
        trg_map=_grid_map(pair.trg_size, feats[pair.trg_id], provider.preprocessing, proto),
        protocol=proto.describe(),
    )


def feature_pca_rgb(features_src: np.ndarray, features_trg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joint PCA of two C x h x w feature maps to 3 components -> two h x w x 3 uint8 images (shared colour axes)."""
    src = torch.as_tensor(np.asarray(features_src, dtype=np.float32))
    trg = torch.as_tensor(np.asarray(features_trg, dtype=np.float32))
    if src.ndim != 3 or trg.ndim != 3 or src.shape[0] != trg.shape[0]:
        raise InputError("feature_pca_rgb expects two C x h x w arrays with the same C")
    c = src.shape[0]
    rows = torch.cat([src.reshape(c, -1).T, trg.reshape(c, -1).T])
    rows = rows - rows.mean(dim=0, keepdim=True)
    k = min(3, rows.shape[0], rows.shape[1])
    _, _, v = torch.linalg.svd(rows, full_matrices=False)
    proj = rows @ v[:k].T
    if k < 3:
        proj = torch.cat([proj, torch.zeros(proj.shape[0], 3 - k)], dim=1)
    lo = proj.quantile(0.01, dim=0, keepdim=True)
    hi = proj.quantile(0.99, dim=0, keepdim=True)
    scaled = ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    rgb = (scaled * 255).round().to(torch.uint8).numpy()
    n_src = src.shape[1] * src.shape[2]
    return rgb[:n_src].reshape(src.shape[1], src.shape[2], 3), rgb[n_src:].reshape(trg.shape[1], trg.shape[2], 3)
