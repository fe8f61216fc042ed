"""Matching each chunk of pairs as soon as its images are encoded, beside the next forwards (on a thread and CUDA
stream of its own beside a GPU, between batches on a CPU)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import torch

from engine.correspondence import cache
from engine.correspondence.datasets import Pair
from engine.correspondence.features import FeatureGeometry, unit_of_array
from engine.correspondence.predictions import ChunkPredictions, write_checkpoint
from engine.correspondence.prefetch import fp32_matmuls

MAX_READY_CHUNKS = 2  # chunks encoded but not matched yet before the encoding waits (bounds the features held)


def threaded_matching(device: torch.device) -> bool:
    """Match on a thread of its own beside a GPU (the CPU is mostly idle during the forward); on a CPU, matching and
    forward share the same cores, so chunks are matched in the encoding thread between batches (on 2 shared cores
    a matching thread made the forward and the matrix products 1.6-4x slower: bench/bench_pipeline_overhead.py)."""
    return device.type == "cuda"


class ChunkMatcher:
    """Matches the given chunks (every image encoded in this run) while the encoding goes on.

    The encoding thread calls :meth:`encoded` after each batch, then :meth:`finish` for the predictions of every
    chunk matched (each one's checkpoint is written first), or :meth:`stop` on an error. ``threaded`` (default
    ``threaded_matching(device)``): a matching thread takes each chunk as soon as its last image arrives (the
    encoding waits in ``encoded`` while ``MAX_READY_CHUNKS`` chunks are ready and unmatched); else ``encoded``
    matches them itself before it returns. A chunk none of whose images came (cached meanwhile, say) is left
    out of ``finish``'s answer for the caller to match the usual way. Features are held only while a chunk still
    needs them; ``match(pairs, units, geometry)`` turns one chunk into its predictions.
    """

    def __init__(
        self,
        chunks: dict[int, list[Pair]],
        paths: dict[int, Path],
        match: Callable[[list[Pair], dict[str, torch.Tensor], dict[str, FeatureGeometry]], ChunkPredictions],
        device: torch.device,
        cancelled: Callable[[], bool] | None = None,
        threaded: bool | None = None,
    ) -> None:
        self._chunks = chunks
        self._paths = paths
        self._match = match
        self._device = device
        self._cancelled = cancelled
        self._missing: dict[int, set[str]] = {}
        self._chunks_of: dict[str, list[int]] = {}
        self._users: dict[str, int] = {}
        for k, pairs in chunks.items():
            ids = set(chunk_image_ids(pairs))
            self._missing[k] = ids
            for image_id in ids:
                self._chunks_of.setdefault(image_id, []).append(k)
                self._users[image_id] = self._users.get(image_id, 0) + 1
        self._held: dict[str, tuple[cache.CachedFeatures, torch.Tensor | None]] = {}
        self._units: dict[str, torch.Tensor] = {}
        self._ready: deque[int] = deque()
        self._records: dict[int, ChunkPredictions] = {}
        self._lock = threading.Condition()
        self._closed = False  # no more batches will come
        self._stopped = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stream: torch.cuda.Stream | None = None
        if threaded_matching(device) if threaded is None else threaded:
            self._thread = threading.Thread(target=self._run, name="corr-match", daemon=True)
            self._thread.start()

    def encoded(self, ids: list[str], feats: list[cache.CachedFeatures], units: list | None = None) -> None:
        """One encoded batch (features as cached; ``units``: their normalised copies on the matching device, if any)."""
        with self._lock:
            self._raise_error()
            for k, image_id in enumerate(ids):
                if not self._users.get(image_id):
                    continue
                self._held[image_id] = (feats[k], None if units is None else units[k])
                for chunk in self._chunks_of[image_id]:
                    missing = self._missing[chunk]
                    if image_id in missing:
                        missing.discard(image_id)
                        if not missing:
                            self._ready.append(chunk)
            self._lock.notify_all()
            while self._thread is not None and len(self._ready) > MAX_READY_CHUNKS and self._error is None:
                self._lock.wait()
            self._raise_error()
        if self._thread is None:
            self._closed = True
            self._run()
            self._closed = False
            self._raise_error()

    def finish(self) -> dict[int, ChunkPredictions]:
        """Wait for every ready chunk to be matched; returns {chunk index: predictions}; raises the matcher's error."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._raise_error()
        return dict(self._records)

    def stop(self) -> None:
        """Stop after the chunk being matched (its checkpoint is not written) and wait for the thread."""
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        """Match ready chunks until none is left and no more will come (inline: until none is ready); an error is
        kept for the encoding thread, which raises it."""
        try:
            if self._thread is not None:
                torch.set_num_threads(1)  # per-thread setting: many small products (evaluate.single_torch_thread)
            if self._thread is not None and self._device.type == "cuda":
                # a stream of its own: its copies and syncs never wait for the forward queued on the default stream
                self._stream = torch.cuda.Stream(self._device)
                with torch.cuda.stream(self._stream):
                    self._match_ready()
            else:
                self._match_ready()
        except BaseException as exc:
            with self._lock:
                self._error = exc
                self._lock.notify_all()

    def _match_ready(self) -> None:
        while True:
            with self._lock:
                while not self._ready and not self._closed and not self._stopped:
                    self._lock.wait()
                if self._stopped or not self._ready:
                    return
                chunk = self._ready[0]  # stays counted as ready until matched: the back-pressure sees it
            self._check_cancel()
            pairs = self._chunks[chunk]
            ids = chunk_image_ids(pairs)
            units = {i: self._unit(i) for i in ids}
            geometry = {i: _geometry(self._held[i][0]) for i in ids}
            with fp32_matmuls():  # never inside a tf32 forward of the encoding thread: the same products as cached
                records = self._match(pairs, units, geometry)
            self._check_cancel()
            with self._lock:
                if self._stopped:
                    return
            write_checkpoint(self._paths[chunk], records)
            with self._lock:
                self._ready.popleft()
                self._records[chunk] = records
                for image_id in ids:
                    self._users[image_id] -= 1
                    if not self._users[image_id]:
                        self._held.pop(image_id, None)
                        self._units.pop(image_id, None)
                self._lock.notify_all()

    def _check_cancel(self) -> None:
        if self._cancelled is not None and self._cancelled():
            from engine.jobs.context import JobCancelled

            raise JobCancelled("correspondence evaluation cancelled")

    def _unit(self, image_id: str) -> torch.Tensor:
        if image_id not in self._units:
            feats, unit = self._held[image_id]
            if unit is None:
                unit = unit_of_array(feats.features, self._device)
            elif self._stream is not None:
                # made on the default stream (complete: the batch was copied to the host after it); read on this one,
                # so its memory must not be reused before this stream is done with it
                unit.record_stream(self._stream)
            self._units[image_id] = unit
        return self._units[image_id]


def chunk_image_ids(pairs: list[Pair]) -> list[str]:
    """The images of some pairs, once each, sources first (the order they are encoded in)."""
    return list(dict.fromkeys([p.src_id for p in pairs] + [p.trg_id for p in pairs]))


def _geometry(feats: cache.CachedFeatures) -> FeatureGeometry:
    return FeatureGeometry((int(feats.features.shape[-2]), int(feats.features.shape[-1])), feats.patch_size, feats.stride)
