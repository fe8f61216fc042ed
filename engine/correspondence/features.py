"""Features of dataset images through the cache: batch forwards of the misses, fp16 everywhere, usage counters."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from engine.correspondence import cache
from engine.correspondence.datasets import Dataset
from engine.correspondence.protocols import Protocol
from engine.encoders.base import Preprocessing, VisionEncoder

_MEMORY_LIMIT_BYTES = 1 << 30  # in-process reuse across chunks of one evaluation


def protocol_preprocessing(encoder: VisionEncoder, protocol: Protocol) -> Preprocessing:
    """The encoder's own preprocessing, or a square stretch at its longest input side (``stretch_square``)."""
    pre = encoder.preprocessing
    if protocol.resize == "stretch_square":
        side = max(pre.input_size)
        return replace(pre, input_size=(side, side), resize="stretch")
    return pre


@dataclass
class FeatureStats:
    images_encoded: int = 0
    cache_hits: int = 0
    forwards: int = 0


class FeatureProvider:
    """Hands out C x h x w fp16 features per image id; encodes only cache misses, in batches."""

    def __init__(
        self,
        encoder: VisionEncoder,
        dataset: Dataset,
        preprocessing: Preprocessing,
        batch_size: int = 16,
        use_cache: bool = True,
    ) -> None:
        self.encoder = encoder
        self.dataset = dataset
        self.preprocessing = preprocessing
        self.batch_size = max(1, int(batch_size))
        self.use_cache = use_cache
        self.stats = FeatureStats()
        self.weights_hash = encoder.weights_hash()
        self._memory: dict[str, cache.CachedFeatures] = {}
        self._memory_bytes = 0
        self._hit_ids: set[str] = set()
        self._unit: dict[str, torch.Tensor] = {}
        self._unit_bytes = 0
        self.used_keys: set[str] = set()
        self._keys: dict[str, str] = {}
        self._index: dict[str, tuple[str, float, float]] = {}
        self._indexed: set[str] = set()  # keys whose index state is known (found or known missing)
        self._to_touch: set[str] = set()

    def key(self, image_id: str) -> str:
        if image_id not in self._keys:
            self._keys[image_id] = cache.feature_key(
                self.encoder.name,
                self.weights_hash,
                self.preprocessing.key(),
                str(getattr(self.encoder, "layer", "default")),
                self.dataset.image_key(image_id),
            )
        return self._keys[image_id]

    def prefetch(self, image_ids: list[str]) -> None:
        """Read the cache index for many images in one query (an evaluation calls this once)."""
        keys = [self.key(i) for i in dict.fromkeys(image_ids)]
        todo = [k for k in keys if k not in self._indexed]
        if self.use_cache and todo:
            self._index.update(cache.lookup(todo))
        self._indexed.update(todo)

    def flush(self) -> None:
        """Record the use of every cache hit (LRU order) in one transaction."""
        if self.use_cache and self._to_touch:
            cache.touch(sorted(self._to_touch))
        self._to_touch.clear()

    def _remember(self, image_id: str, feats: cache.CachedFeatures) -> None:
        if self._memory_bytes > _MEMORY_LIMIT_BYTES:
            self._memory.clear()
            self._memory_bytes = 0
        self._memory[image_id] = feats
        self._memory_bytes += feats.features.nbytes

    def unit(self, image_id: str, feats: cache.CachedFeatures) -> torch.Tensor:
        """Channel-L2-normalised float32 C x h x w features of one image, converted once per evaluation."""
        if image_id not in self._unit:
            if self._unit_bytes > _MEMORY_LIMIT_BYTES:
                self._unit.clear()
                self._unit_bytes = 0
            t = torch.from_numpy(feats.features.astype(np.float32))
            t /= t.norm(dim=0, keepdim=True).clamp_min(1e-8)
            self._unit[image_id] = t
            self._unit_bytes += t.numel() * 4
        return self._unit[image_id]

    def get(self, image_ids: list[str], cancelled=None) -> dict[str, cache.CachedFeatures]:
        """Features for every id (unique ids only are looked up / encoded)."""
        wanted = list(dict.fromkeys(image_ids))
        out = {i: self._memory[i] for i in wanted if i in self._memory}
        missing = [i for i in wanted if i not in out]
        if not missing:
            return out
        keys = {i: self.key(i) for i in missing}
        self.used_keys.update(keys.values())
        self.prefetch(missing)
        found = {keys[i]: self._index[keys[i]] for i in missing if keys[i] in self._index}
        hits = []
        for image_id in missing:
            if keys[image_id] not in found:
                continue
            path, patch, stride = found[keys[image_id]]
            try:
                feats = cache.load(path, patch, stride)
            except (OSError, ValueError):  # evicted by another process meanwhile, or a torn file: re-encode
                found.pop(keys[image_id])
                self._index.pop(keys[image_id], None)
                continue
            hits.append(image_id)
            out[image_id] = feats
            self._remember(image_id, feats)
            if image_id not in self._hit_ids:
                self._hit_ids.add(image_id)
                self.stats.cache_hits += 1
        self._to_touch.update(keys[i] for i in hits)
        misses = [i for i in missing if keys[i] not in found]
        for start in range(0, len(misses), self.batch_size):
            if cancelled is not None and cancelled():
                from engine.jobs.context import JobCancelled

                raise JobCancelled("correspondence evaluation cancelled")
            batch = misses[start : start + self.batch_size]
            encoded = self._encode(batch)
            entries = []
            for image_id, feats in zip(batch, encoded, strict=True):
                out[image_id] = feats
                self._remember(image_id, feats)
                entries.append(
                    (keys[image_id], feats.features, feats.patch_size, feats.stride, self.encoder.name,
                     self.weights_hash, self.dataset.image_key(image_id))
                )
            if self.use_cache:
                cache.save_many(entries)
                folder = cache.features_folder()
                for key, _array, patch, stride, *_ in entries:
                    self._index[key] = (str(folder / key[:2] / f"{key}.npy"), patch, stride)
        return out

    def _encode(self, image_ids: list[str]) -> list[cache.CachedFeatures]:
        from engine.encoders.preprocess import prepare

        images = [self.dataset.load_image(i) for i in image_ids]
        before = torch.get_num_threads()
        torch.set_num_threads(1)  # per-image resizes are small ops: thread hand-offs dominate on a loaded machine
        try:
            pixels, _ = prepare(images, self.preprocessing)
        finally:
            torch.set_num_threads(before)
        dense = self.encoder.encode(pixels)
        self.stats.forwards += 1
        self.stats.images_encoded += len(image_ids)
        feats = dense.features.detach().to("cpu", torch.float16).numpy()
        return [cache.CachedFeatures(np.ascontiguousarray(f), float(dense.patch_size), float(dense.stride)) for f in feats]
