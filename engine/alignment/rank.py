"""The entry point of one rank of a projector training started by ``distributed.launch`` (torchrun, or one child)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from engine.alignment.distributed import RankCancelled, RelayContext, make_accelerator


def rank_main(spec: str) -> int:
    """Run the training loop of the launch spec ``spec`` (a JSON file) in this rank; the main rank relays events."""
    from engine.alignment import train

    params = json.loads(Path(spec).read_text())
    params["num_processes"] = 1  # already launched: the loop runs in this rank
    resolved = train.resolve_params(params)
    if resolved["threads"]:
        torch.set_num_threads(int(resolved["threads"]))
    accelerator = make_accelerator(resolved["device"])
    ctx = RelayContext(Path(params["run_dir"]), main=accelerator.is_main_process)
    try:
        ctx.emit(kind="result", result=train.run_loop(params, ctx, accelerator))
        accelerator.wait_for_everyone()
    except RankCancelled:
        pass  # every rank stops after the same step (the stop decision is all-reduced)
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(rank_main(sys.argv[1]))
