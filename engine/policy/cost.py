"""What the AC policy saves: trainable parameters (projector vs LLM) and GPU-hours of finetuning."""

from __future__ import annotations

from typing import Any

from engine.errors import InputError

# Rough LLaVA-1.5-7B costs in A100 GPU-hours (8 GPUs x wall hours), overridable: stage 1 trains the
# projector only, stage 2 the projector and the LLM.
DEFAULT_STAGE1_GPU_HOURS = 8 * 2.0
DEFAULT_STAGE2_GPU_HOURS = 8 * 10.0


def projector_params(encoder_width: int, llm_hidden: int) -> int:
    """Parameters of LLaVA's ``mlp2x_gelu`` projector: Linear(w, h) + GELU + Linear(h, h) = w*h + h + h*h + h."""
    w, h = int(encoder_width), int(llm_hidden)
    if w <= 0 or h <= 0:
        raise InputError(f"encoder width and LLM hidden size must be positive, got {w} and {h}")
    return w * h + h + h * h + h


def cost_comparison(
    encoder_width: int = 1024,
    llm_hidden: int = 4096,
    llm_params: float = 6.74e9,
    n_candidates: int = 15,
    budget: int = 3,
    stage1_gpu_hours: float = DEFAULT_STAGE1_GPU_HOURS,
    stage2_gpu_hours: float = DEFAULT_STAGE2_GPU_HOURS,
) -> dict[str, Any]:
    """Trainable parameters of computing A (projector only) vs a full finetune (projector + LLM), and GPU-hours
    of finetuning every candidate vs stage 1 for every candidate plus stage 2 for ``budget`` of them."""
    if not 1 <= int(budget) <= int(n_candidates):
        raise InputError(f"budget must be between 1 and n_candidates ({n_candidates}), got {budget}")
    if llm_params <= 0 or stage1_gpu_hours < 0 or stage2_gpu_hours < 0:
        raise InputError("llm_params must be positive and GPU-hours non-negative")
    proj = projector_params(encoder_width, llm_hidden)
    full = proj + float(llm_params)
    all_full = n_candidates * (stage1_gpu_hours + stage2_gpu_hours)
    policy = n_candidates * stage1_gpu_hours + budget * stage2_gpu_hours
    return {
        "encoder_width": int(encoder_width), "llm_hidden": int(llm_hidden), "llm_params": float(llm_params),
        "projector_params": proj,
        "full_finetune_params": full,
        "trainable_ratio": proj / full,
        "trainable_savings": 1.0 - proj / full,
        "n_candidates": int(n_candidates), "budget": int(budget),
        "stage1_gpu_hours": float(stage1_gpu_hours), "stage2_gpu_hours": float(stage2_gpu_hours),
        "gpu_hours_all_full": all_full,
        "gpu_hours_policy": policy,
        "gpu_hours_savings": 1.0 - policy / all_full if all_full else 0.0,
    }
