"""``auto``: the family with the smallest nested inner leave-one-setting-out error, then its own inner CV."""

from __future__ import annotations

from dataclasses import replace

from engine.law.models.base import Candidate, Family, Prepared


class AutoFamily:
    """Compares families by nested inner CV on the training settings (each family's penalties re-chosen without
    the inner held-out setting, so a family with more to tune gains no optimism); ties go to the earlier family."""

    name = "auto"

    def __init__(self, families: tuple[Family, ...]) -> None:
        self.families = families

    def select(self, prep: Prepared) -> Candidate:
        errors = [family.nested_sse(prep) for family in self.families]
        best = min(range(len(errors)), key=lambda i: errors[i])
        return replace(self.families[best].select(prep), inner_sse=errors[best])
