"""Runs ``python -m MODULE ARGS`` in a process Linux ends (SIGTERM) when the process that launched it dies.

A training's launcher (``torch.distributed.run``, which then stops its ranks, or the one rank of a child-process run)
must not outlive a job worker or a Ray task that was killed (``ray.cancel(force=True)``, kill -9, OOM): left running,
its ranks would hold their GPUs until a collective timed out.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def guarded_argv(module: str, args: list[str], parent: int | None = None) -> list[str]:
    """The command line that runs ``python -m module args`` ended with ``parent`` (default: this process)."""
    return [sys.executable, "-m", "engine.alignment.guard", str(os.getpid() if parent is None else parent), module, *args]


def die_with_parent(parent: int) -> bool:
    """Ask for SIGTERM when the parent dies; False where the system offers no such request (not Linux)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    if prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def main(argv: list[str]) -> None:
    parent, module, *args = argv
    die_with_parent(int(parent))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
