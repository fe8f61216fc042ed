"""One batch in flight on a CUDA device: the next forward is queued before the host takes the last batch's features."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

Item = TypeVar("Item")
Launched = TypeVar("Launched")
Result = TypeVar("Result")
_END = object()


def one_in_flight(device: torch.device) -> bool:
    """Whether the forwards on ``device`` are pipelined with ``lagged``: on CUDA, where the host would otherwise wait
    for each forward, then leave the GPU idle while it handles the batch; a CPU forward is the host's own work."""
    return device.type == "cuda"


def lagged(items: Iterable[Item], launch: Callable[[Item], Launched], finish: Callable[[Launched], Result]) -> Iterator[Result]:
    """``finish(launch(item))`` for every item, in order, but item k + 1 is taken and launched before item k is
    finished and yielded: one launched item waits at most. An error while taking or launching item k + 1 first
    yields item k (it is whole, as without the lag), then propagates; closing the generator (a cancel, an error of
    the caller) drops the launched item unfinished."""
    iterator = iter(items)
    waiting: list[Launched] = []
    while True:
        try:
            item = next(iterator, _END)
            launched = _END if item is _END else launch(item)
        except Exception:
            if waiting:
                yield finish(waiting.pop())
            raise
        if waiting:
            yield finish(waiting.pop())
        if launched is _END:
            return
        waiting.append(launched)


@dataclass
class CopyOut:
    """A device -> host copy queued into pinned memory and the event recorded after it on the device's stream."""

    host: torch.Tensor
    done: torch.cuda.Event

    def array(self) -> np.ndarray:
        """Waits for the copy (and everything queued before it on that stream), returns it in ordinary memory."""
        self.done.synchronize()
        # a copy: the pinned block goes back to torch's host cache (reused only once its copies are done), and the
        # features kept in memory do not hold page-locked memory
        return self.host.numpy().copy()


@dataclass
class HostCopy:
    """The copy to the host done when asked (``.cpu()``: waits for the device), for the path without a batch in
    flight; on a CPU it is the tensor's own memory, as before."""

    tensor: torch.Tensor

    def array(self) -> np.ndarray:
        return self.tensor.cpu().numpy()


def queue_copy_out(tensor: torch.Tensor) -> CopyOut:
    """Queue the copy of a CUDA tensor to the host without waiting for it (``CopyOut.array`` waits)."""
    stream = torch.cuda.current_stream(tensor.device)
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    done = torch.cuda.Event()
    done.record(stream)
    return CopyOut(host, done)
