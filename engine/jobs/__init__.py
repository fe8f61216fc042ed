"""Background jobs: detached, resumable worker processes with progress, logs, metrics and cancellation.

A job function is ``def run(params: dict, ctx: JobContext) -> dict`` in an ``engine.*`` module, addressed by
``"engine.pkg.module:function"``. See docs/jobs.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.jobs.chain import chain, followups
from engine.jobs.context import JobCancelled, JobContext
from engine.jobs.manager import (
    JobRecord,
    JobTimeout,
    cancel,
    forget,
    get_job,
    job_folder,
    list_jobs,
    resume,
    submit,
    wait,
)
from engine.jobs.progress import tqdm_progress
from engine.jobs.runner import resolve_target, run_inline
from engine.jobs.state import ACTIVE, FINISHED, STATUSES

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ACTIVE",
    "FINISHED",
    "STATUSES",
    "JobCancelled",
    "JobContext",
    "JobRecord",
    "JobTimeout",
    "cancel",
    "chain",
    "followups",
    "forget",
    "get_job",
    "job_folder",
    "list_jobs",
    "resolve_target",
    "resume",
    "run_inline",
    "submit",
    "summaries",
    "tqdm_progress",
    "wait",
]


def summaries(target: str | None = None, status: str | None = None) -> pd.DataFrame:
    """Summary rows of finished jobs from the DuckDB ``jobs`` table (a DataFrame)."""
    from engine.jobs.summary import summaries as _summaries

    return _summaries(target=target, status=status)
