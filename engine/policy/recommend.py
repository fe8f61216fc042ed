"""Recommend the next setting to finetune, given the settings finetuned so far and their measured scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import InputError
from engine.law.fit import FEATURE_SETS, features, loo_predictions, minmax
from engine.law.ols import ols_fit
from engine.law.predict import flags_from_notes
from engine.policy.sampling import level_cells, next_region_pick
from engine.study.model import Study


@dataclass
class Recommendation:
    """Next finetune by the region rule, the best-predicted alternative, and the current ranking."""

    benchmark: str
    next_setting: str | None
    level: int
    alternative: str | None
    alternative_predicted: float | None
    ranking: pd.DataFrame
    loo_rmse: float | None
    top: int
    feature_set: str = "ac_poly"
    flagged: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_params(self) -> int:
        return len(FEATURE_SETS[self.feature_set]) + 1

    @property
    def interpolating(self) -> bool:
        """Fewer finetuned settings than the law has parameters: the ranking comes from an interpolating fit."""
        return int(self.ranking["finetuned"].sum()) <= self.n_params

    @property
    def warning(self) -> str | None:
        """One sentence for the user when the fit behind the ranking cannot be trusted."""
        if "predicted" not in self.ranking or not self.interpolating:
            return None
        k = int(self.ranking["finetuned"].sum())
        hint = " Use the linear law (A, C: 3 parameters) until more settings are finetuned." if self.feature_set != "ac_linear" else ""
        return (f"Only {k} finetuned settings for a law with {self.n_params} parameters: the fit interpolates them, "
                f"so its predictions and ± band are not reliable.{hint}")

    @property
    def top_settings(self) -> list[str]:
        return self.ranking["setting"].head(self.top).tolist() if "predicted" in self.ranking else []

    def to_dict(self) -> dict[str, Any]:
        """The CLI JSON of ``policy recommend``."""
        return {"benchmark": self.benchmark, "next": self.next_setting, "grid_level": self.level,
                "alternative": self.alternative, "alternative_predicted": self.alternative_predicted,
                "top": self.top_settings, "loo_rmse": self.loo_rmse, "feature_set": self.feature_set,
                "interpolating": self.interpolating, "warning": self.warning, "flagged": self.flagged,
                "ranking": self.ranking.astype(object).where(self.ranking.notna(), None).to_dict(orient="records")}


def recommend(
    study: Study, benchmark: str, finetuned: dict[str, float], top: int = 3, seed: int = 0,
    flagged: Mapping[str, Sequence[str]] | None = None, feature_set: str = "ac_poly",
) -> Recommendation:
    """Which setting to finetune next on ``benchmark`` (candidates: the study's settings with A and C).

    ``finetuned`` maps setting -> measured score. The region rule is deterministic given ``seed``; with at
    least 2 finetuned settings the law (``feature_set``: the paper's ``ac_poly`` or ``ac_linear`` for few
    settings; minimum-norm when underdetermined) ranks all candidates, finetuned ones by their measured score,
    with the leave-one-out RMSE of the fit as ± band. Flagged settings (``flagged`` plus the law flags recorded
    in a setting's notes: extrapolated, demo or mismatched A/C) are ranked but never recommended.
    """
    if feature_set not in ("ac_poly", "ac_linear"):
        raise InputError(f"feature_set must be ac_poly or ac_linear, got {feature_set!r}")
    table = study.table(benchmark)
    table = table[np.isfinite(table[["A", "C"]].to_numpy(float)).all(axis=1)].reset_index(drop=True)
    names = table["setting"].tolist()
    unknown = [s for s in finetuned if s not in names]
    if unknown:
        raise InputError(f"finetuned setting '{unknown[0]}' is not a setting with A and C in study '{study.name}'")
    if len(names) < 2:
        raise InputError(f"study '{study.name}' has fewer than 2 settings with A and C")
    if top < 1:
        raise InputError(f"top must be at least 1, got {top}")
    A, C = table["A"].to_numpy(float), table["C"].to_numpy(float)
    a_n, c_n = minmax(A, A.min(), A.max()), minmax(C, C.min(), C.max())
    done = [names.index(s) for s in finetuned]
    measured = np.array([float(finetuned[names[i]]) for i in done])
    if not np.isfinite(measured).all():
        raise InputError("every finetuned score must be a finite number")
    notes = dict(zip(study.settings["setting"], study.settings["notes"], strict=True))
    flags = {s: list(f) for s in names if (f := [*flags_from_notes(notes.get(s, "")), *(flagged or {}).get(s, [])])}
    eligible = [i for i in range(len(names)) if names[i] not in flags or i in done]
    sub_done = [eligible.index(i) for i in done if i in eligible]
    sub_pick, level = next_region_pick(level_cells(a_n[eligible], c_n[eligible]), sub_done, np.random.default_rng(seed))
    pick = None if sub_pick is None else eligible[sub_pick]
    ranking = pd.DataFrame({"setting": names, "A": A, "C": C, "finetuned": [i in done for i in range(len(names))],
                            "measured": [finetuned.get(s, np.nan) for s in names],
                            "flags": [", ".join(flags.get(s, [])) for s in names]})
    alternative, alt_pred, loo_rmse = None, None, None
    if len(done) >= 2:
        X = features(a_n, c_n, feature_set)
        coef, intercept = ols_fit(X[done], measured)
        predicted = intercept + X @ coef
        loo = loo_predictions(A[done], C[done], measured, feature_set)
        loo_rmse = float(np.sqrt(np.mean((measured - loo) ** 2)))
        ranking["predicted"] = predicted
        ranking["plus_minus"] = loo_rmse
        ranking["rank_score"] = np.where(ranking["finetuned"], ranking["measured"], predicted)
        ranking = ranking.sort_values("rank_score", ascending=False, kind="stable").reset_index(drop=True)
        pending = ranking[~ranking["finetuned"] & (ranking["flags"] == "")]
        if len(pending):
            alternative, alt_pred = str(pending["setting"].iat[0]), float(pending["predicted"].iat[0])
    return Recommendation(benchmark, None if pick is None else names[pick], level, alternative, alt_pred, ranking,
                          loo_rmse, int(top), feature_set, flags)
