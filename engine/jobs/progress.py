"""A tqdm progress bar on stderr as a ``run_inline`` progress callback, for foreground CLI runs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from engine.jobs.context import ProgressCallback


@contextmanager
def tqdm_progress(description: str = "", disable: bool | None = None) -> Iterator[ProgressCallback]:
    """Yield a ``(done, total, message)`` callback that drives one tqdm bar (stderr, so JSON on stdout stays clean).

    ``disable=None`` hides the bar when stderr is not a terminal.
    """
    from tqdm import tqdm

    bar = tqdm(desc=description, file=sys.stderr, disable=(not sys.stderr.isatty()) if disable is None else disable,
               dynamic_ncols=True, leave=False)

    def update(done: int, total: int, message: str = "") -> None:
        if total and bar.total != total:
            bar.total = total
            bar.refresh()
        bar.n = done
        if message:
            bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()
