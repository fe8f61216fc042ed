"""Job targets are named once (engine.jobs.targets) and each one resolves to the function that runs it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.jobs import resolve_target, targets

ENGINE = Path(__file__).resolve().parent.parent / "engine"


@pytest.mark.parametrize("target", targets.ALL)
def test_every_target_resolves_to_a_function(target):
    assert callable(resolve_target(target))


def _is_module(dotted: str) -> bool:
    path = ENGINE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_no_module_spells_a_target_of_its_own():
    literal = re.compile(r"[\"'](engine(?:\.\w+)+):\w+[\"']")  # examples in messages name no real module
    spelled = [f"{p.relative_to(ENGINE)}: {m.group(0)}" for p in ENGINE.rglob("*.py") if p.name != "targets.py"
               for m in literal.finditer(p.read_text(encoding="utf-8")) if _is_module(m.group(1))]
    assert spelled == []
