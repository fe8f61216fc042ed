"""The scoring flow does not mislead: flags travel with a kept setting, flagged settings never lead a
recommendation, small fits are labelled and the linear law is offered."""

from __future__ import annotations

import numpy as np
import pytest

from engine import pipeline
from engine.law import predict_setting
from engine.law.fit import features
from engine.law.ols import ols_fit
from engine.law.predict import flags_from_notes, flags_note
from engine.policy import recommend
from engine.study import load_study

BUNDLED = "paper-v3"


def test_flags_note_round_trip():
    assert flags_from_notes("paper-scale; " + flags_note(["extrapolated", "clipped"])) == ["extrapolated", "clipped"]
    assert flags_from_notes("nothing here") == [] and flags_note([]) == ""


def test_extrapolated_setting_keeps_its_flags_after_keep_it(isolated_home):
    written = pipeline.add_to_study(BUNDLED, "far-out", -1.0, 30.0, {"notes": "paper-scale"})
    stored = load_study(written).settings.set_index("setting").at["far-out", "notes"]
    expected = pipeline.placement_flags(pipeline.place_on_law(BUNDLED, "far-out", -1.0, 30.0))
    assert "extrapolated" in expected and flags_from_notes(stored) == expected


def test_demo_setting_is_flagged_as_a_method_mismatch(isolated_home):
    written = pipeline.add_to_study(BUNDLED, "tiny", -1.95, 18.0, demo_scale=True)
    assert written == "paper-v3-demo"
    notes = load_study(written).settings.set_index("setting").at["tiny", "notes"]
    assert "method_mismatch" in flags_from_notes(notes)


def test_flagged_candidate_never_leads_the_recommendation():
    study = load_study(BUNDLED)
    table = study.table("mmbench_en").dropna(subset=["score"])
    finetuned = dict(zip(table["setting"], table["score"], strict=True))
    # A far better A than any setting: the quadratic predicts the candidate best, but it is extrapolated
    placed = pipeline.place_on_law(study, "wild", -1.0, 30.0)
    flags = pipeline.placement_flags(placed)
    plain = pipeline.recommend_next(study, "mmbench_en", finetuned, "wild", -1.0, 30.0)
    assert plain.alternative == "wild"  # without flags the extrapolation would lead
    rec = pipeline.recommend_next(study, "mmbench_en", finetuned, "wild", -1.0, 30.0, flags=flags)
    assert rec.alternative is None and rec.next_setting is None  # every other setting is finetuned already
    assert rec.ranking.set_index("setting").at["wild", "flags"] == ", ".join(flags)
    few = {k: finetuned[k] for k in ("CLIP336", "DINOv2", "SD3")}
    rec = pipeline.recommend_next(study, "mmbench_en", few, "wild", -1.0, 30.0, flags=flags)
    assert rec.next_setting != "wild" and rec.alternative != "wild" and rec.alternative is not None


def test_small_finetuned_set_warns_and_offers_the_linear_law():
    study = load_study(BUNDLED)
    table = study.table("mme").set_index("setting")
    done = {s: float(table.at[s, "score"]) for s in ("CLIP336", "DINOv2", "SD3")}
    rec = recommend(study, "mme", done)
    assert rec.interpolating and "linear law" in rec.warning
    linear = recommend(study, "mme", done, feature_set="ac_linear")
    assert linear.interpolating  # 3 points, 3 parameters: still exact, still labelled
    # the linear ranking is OLS on [A, C] of the finetuned settings (normalised over all candidates)
    ranked = linear.ranking.set_index("setting")
    A, C = table["A"].to_numpy(), table["C"].to_numpy()
    an, cn = (A - A.min()) / np.ptp(A), (C - C.min()) / np.ptp(C)
    X = features(an, cn, "ac_linear")
    idx = [list(table.index).index(s) for s in done]
    coef, icpt = ols_fit(X[idx], np.array(list(done.values())))
    for s, x in zip(table.index, X, strict=True):
        assert ranked.at[s, "predicted"] == pytest.approx(icpt + x @ coef)
    many = {s: float(table.at[s, "score"]) for s in table.index[:10]}
    assert not recommend(study, "mme", many).interpolating and recommend(study, "mme", many).warning is None


def test_predict_setting_flags_every_kind():
    study = load_study(BUNDLED)
    assert predict_setting(study, -1.95, 18.0).flags == []
    far = predict_setting(study, -1.0, 30.0, a_method="demo")
    assert set(far.flags) == {"method_mismatch", "extrapolated", "clipped"}
