"""The registry of law models: names -> ``LawModel`` (paper, linear, ridge, multitask, auto)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.errors import InputError
from engine.law.models.auto import AutoFamily
from engine.law.models.base import Family, LawModel
from engine.law.models.multitask import MultitaskFamily
from engine.law.models.paper import LINEAR, PAPER
from engine.law.models.ridge import RidgeFamily

DESCRIPTIONS: dict[str, str] = {
    "paper": "the paper's OLS quadratic in A and C, unchanged",
    "linear": "OLS on A and C only (3 parameters: for studies with few settings)",
    "ridge": "the paper's quadratic with an L2 penalty per benchmark, chosen by inner leave-one-out CV",
    "multitask": "per-benchmark quadratics shrunk toward one shared by the study's benchmarks (penalties by inner CV)",
    "auto": "a convex mix of the models above, weights minimising the nested inner leave-one-setting-out error",
}

_FACTORIES: dict[str, Callable[..., Family]] = {
    "paper": lambda: PAPER,
    "linear": lambda: LINEAR,
    "ridge": lambda **kw: RidgeFamily(**kw),
    "multitask": lambda **kw: MultitaskFamily(**kw),
    "auto": lambda: AutoFamily((PAPER, LINEAR, RidgeFamily(), MultitaskFamily())),
}
LAW_MODELS: tuple[str, ...] = tuple(_FACTORIES)


def get_law_model(name: str, **params: Any) -> LawModel:
    """The law model registered as ``name``; ``params`` override its penalty grids (ridge: penalties; multitask: shared, deviation)."""
    if name not in _FACTORIES:
        raise InputError(f"unknown law model '{name}' (choose from {', '.join(LAW_MODELS)})")
    try:
        family = _FACTORIES[name](**params)
    except TypeError:
        raise InputError(f"law model '{name}' does not take parameters {sorted(params)}") from None
    return LawModel(name, family)
