"""Sweeps: one C evaluation per encoder (local or on Ray), resumable, each result attached to a study setting."""

from engine.sweep.run import (
    JOB_TARGET,
    EncoderStatus,
    SweepSpec,
    attached_count,
    cancel_sweep,
    list_sweeps,
    progress_text,
    run_sweep,
    submit_sweep,
    sweep_status,
)

__all__ = ["JOB_TARGET", "EncoderStatus", "SweepSpec", "attached_count", "cancel_sweep", "list_sweeps", "progress_text",
           "run_sweep", "submit_sweep", "sweep_status"]
