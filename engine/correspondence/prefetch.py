"""Overlap of image decoding / preprocessing with the forward pass, and the forward precision (fp32, tf32, bf16)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from engine.encoders.base import Preprocessing
from engine.errors import InputError

PRECISIONS = ("fp32", "tf32", "bf16")
AHEAD_BATCHES = 2  # batches decoded ahead of the one being encoded (bounds memory: (1 + AHEAD) x batch pixels)
# held while a tf32 forward is queued: torch's matmul precision is one setting for the whole process, so the matching
# thread's products must not be queued meanwhile (they would run in TF32 too: ``fp32_matmuls``)
_MATMUL_PRECISION = threading.RLock()


def effective_precision(precision: str, device: str | torch.device) -> str:
    """Validate ``precision``; tf32 only exists on CUDA, elsewhere it is plain fp32 (same features, same cache key)."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
    if precision == "tf32" and torch.device(device).type != "cuda":
        return "fp32"
    return precision


@contextlib.contextmanager
def forward_precision(precision: str, device: str | torch.device) -> Iterator[None]:
    """Context for an encoder forward: bf16 autocast, TF32 matmuls (CUDA), or nothing (fp32)."""
    kind = torch.device(device).type
    if precision == "bf16":
        with torch.autocast(device_type=kind, dtype=torch.bfloat16):
            yield
    elif precision == "tf32" and kind == "cuda":
        with _MATMUL_PRECISION:
            before = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision("high")
            try:
                yield
            finally:
                torch.set_float32_matmul_precision(before)
    else:
        yield


@contextlib.contextmanager
def fp32_matmuls() -> Iterator[None]:
    """Context for matrix products on a thread beside the encoding: waits while another thread queues a tf32 forward
    (``forward_precision``), whose process-wide setting would otherwise make these products TF32 too."""
    with _MATMUL_PRECISION:
        yield


def default_workers(device: str | torch.device) -> int:
    """Decode threads: one on CPU (the forward needs the cores), up to 8 beside a GPU (they only decode there)."""
    if torch.device(device).type == "cpu":
        return 1
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def _one_torch_thread() -> None:
    # per-thread (OpenMP) setting: per-image resizes are small ops, thread hand-offs would dominate
    torch.set_num_threads(1)


def prepare_one(load: Callable[[str], object], image_id: str, pre: Preprocessing) -> torch.Tensor:
    """3 x H x W normalised input of one image (exactly what ``prepare`` puts in its batch)."""
    from engine.encoders.preprocess import prepare

    pixels, _ = prepare([load(image_id)], pre)
    return pixels[0]


def decode_one(load: Callable[[str], object], image_id: str) -> object:
    """H x W x 3 uint8 RGB of one image (what the threads do when the resize runs on a GPU)."""
    from engine.encoders.base import to_uint8_rgb

    return to_uint8_rgb(load(image_id))


def prepared_batches(
    batches: Sequence[list[str]],
    load: Callable[[str], object],
    pre: Preprocessing,
    workers: int,
    device: str | torch.device | None = None,
) -> Iterator[tuple[list[str], torch.Tensor]]:
    """Yield ``(ids, B x 3 x H x W pixels)`` in order; with ``workers > 0`` a thread pool decodes and resizes images
    of the next ``AHEAD_BATCHES`` batches while the caller encodes the current one (same pixels as sequential).

    With a CUDA ``device`` the threads only decode; the resize and normalisation run on that device in the
    caller's thread (``prepare(..., device)``): on the CPU they cost 10x the decode.
    """
    on_gpu = device is not None and torch.device(device).type == "cuda"
    if workers <= 0:
        for batch in batches:
            if on_gpu:
                from engine.encoders.preprocess import prepare

                yield batch, prepare([decode_one(load, i) for i in batch], pre, device)[0]
                continue
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                pixels = torch.stack([prepare_one(load, i, pre) for i in batch])
            finally:
                torch.set_num_threads(before)
            yield batch, pixels
        return
    main_threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(max_workers=workers, initializer=_one_torch_thread, thread_name_prefix="corr-decode")
    pending: deque[list[Future]] = deque()
    upcoming = iter(batches)

    def submit_next() -> bool:
        batch = next(upcoming, None)
        if batch is None:
            return False
        if on_gpu:
            pending.append([pool.submit(decode_one, load, i) for i in batch])
        else:
            pending.append([pool.submit(prepare_one, load, i, pre) for i in batch])
        return True

    try:
        for _ in range(1 + AHEAD_BATCHES):
            if not submit_next():
                break
        for batch in batches:
            futures = pending.popleft()
            submit_next()
            if on_gpu:
                from engine.encoders.preprocess import prepare

                yield batch, prepare([f.result() for f in futures], pre, device)[0]
            else:
                yield batch, torch.stack([f.result() for f in futures])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(main_threads)  # torch also keeps a process-wide default that new threads start from


def load_many(paths: Sequence[str], load: Callable[[str], object], workers: int) -> list:
    """``[load(p) for p in paths]``, read by a few threads when ``workers > 0`` (file reads release the GIL);
    an exception is returned in place of its result."""

    def safe(path: str):
        try:
            return load(path)
        except (OSError, ValueError) as exc:
            return exc

    if workers <= 0 or len(paths) < 2:
        return [safe(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(workers, 8), thread_name_prefix="corr-load") as pool:
        return list(pool.map(safe, paths))
