"""AppTest: the app tells the truth about prediction (overview sentence, law page fit vs predict, score page flags)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from engine.law import fit_benchmark
from engine.law.background import evaluation_future
from engine.law.predict import flags_from_notes
from engine.study import load_study, make_study, save_study

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


@pytest.fixture(autouse=True)
def _fresh_store(isolated_home):
    return isolated_home


def _ready(study, *models: str, level: float = 0.8) -> None:
    for model in models:
        evaluation_future(study, model, level).result(timeout=300)


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_overview_quotes_out_of_sample_figures_of_paper_and_auto():
    study = load_study("paper-v3")
    _ready(study, "paper", "auto")
    at = AppTest.from_file(str(ROOT / "pages/overview.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    sentence = next(m.value for m in at.markdown if m.value.startswith("**Out of sample**"))
    vision = np.mean([fit_benchmark(study, b).loo_r2 for b in ("mmbench_en", "mme", "ok_vqa", "seed_image")])
    assert f"{vision:.2f} (vision)" in sentence  # the paper's law, recomputed by the law page's own LOO
    assert "auto" in sentence and "top 3" in sentence and "Spearman" in sentence


def test_overview_warns_about_an_interpolating_fit():
    rng = np.random.default_rng(0)
    names = [f"s{i}" for i in range(5)]
    settings = pd.DataFrame({"setting": names, "A": rng.uniform(-3, -1, 5), "C": rng.uniform(0, 30, 5)})
    save_study(make_study("five", settings, pd.DataFrame({"mme": rng.uniform(800, 1500, 5)}, index=names)))
    at = AppTest.from_file(str(ROOT / "pages/overview.py"), default_timeout=TIMEOUT)
    at.session_state["study_name"] = "five"
    at.run()
    assert not at.exception
    assert any("Interpolating fit on mme" in w.value for w in at.warning)


def test_law_page_fit_vs_predict_for_the_chosen_model():
    study = load_study("paper-v3")
    _ready(study, "paper", "ridge")
    at = AppTest.from_file(str(ROOT / "pages/law.py"), default_timeout=TIMEOUT)
    at.query_params["benchmark"] = "mme"
    at.run()
    assert not at.exception
    assert at.selectbox(key="law_model").value == "paper"
    fit = fit_benchmark(study, "mme")
    assert _metric(at, "R² out of sample") == f"{fit.loo_r2:.3f}"
    assert _metric(at, "R² in-sample (fit on all)") == f"{fit.r2:.3f}"
    assert _metric(at, "Coverage of 80% intervals").endswith("%")
    at.selectbox(key="law_model").set_value("ridge").run()
    assert not at.exception
    from engine.law import evaluate_study

    ridge = evaluate_study(study, "ridge", 0.8).benchmarks["mme"]
    assert _metric(at, "R² out of sample") == f"{ridge.loo_r2:.3f}"
    held = next(df.value for df in at.dataframe if "inside the interval" in df.value.columns)
    lower, predicted = held["80% interval: lower (jackknife+)"], held["predicted while held out ('ridge' law)"]
    assert len(held) == 15 and (lower <= predicted).all()


def test_score_page_separates_an_extrapolated_demo_setting_and_keeps_its_flags(jobs_home):
    at = AppTest.from_file(str(ROOT / "pages/score_encoder.py"), default_timeout=90).run()
    at.radio(key="score_mode").set_value("Enter A and C by hand").run()
    at.text_input(key="score_manual_setting").set_value("tiny")
    at.text_input(key="score_manual_a").set_value("-1.0")
    at.text_input(key="score_manual_c").set_value("30")
    at.radio(key="score_manual_scale").set_value("no: demo / other scale")
    at.run()
    assert not at.exception
    assert any("illustration only" in h.value for h in at.header)
    assert any("Not comparable" in e.value for e in at.error)
    assert any("extrapolation" in w.value for w in at.warning)
    table = at.dataframe[0].value
    predicted = table["predicted score ('paper' law)"]
    assert (predicted <= 100).loc[table["benchmark"] != "MME (perception)"].all()
    assert table["A or C measured differently (not comparable)"].all()
    assert "Best predicted not yet finetuned:** `tiny`" not in " ".join(m.value for m in at.markdown)
    at.button(key="score_add").click().run()
    assert not at.exception
    notes = load_study("paper-v3-demo").settings.set_index("setting").at["tiny", "notes"]
    assert {"method_mismatch", "extrapolated"} <= set(flags_from_notes(notes))


def test_score_page_waits_for_a_slow_fit_without_blocking(jobs_home, monkeypatch):
    import threading

    from engine.law import background

    gate = threading.Event()
    real = background.fitted_study_model

    def slow(study, model):
        gate.wait(30)
        return real(study, model)

    at = AppTest.from_file(str(ROOT / "pages/score_encoder.py"), default_timeout=90).run()
    at.radio(key="score_mode").set_value("Enter A and C by hand").run()
    at.text_input(key="score_manual_a").set_value("-1.95")
    at.text_input(key="score_manual_c").set_value("18")
    at.run()  # the paper law is fitted at once
    assert "predicted score ('paper' law)" in at.dataframe[0].value.columns
    monkeypatch.setattr(background, "fitted_study_model", slow)
    at.selectbox(key="score_model").set_value("multitask")
    at.run()
    assert not at.exception
    assert any("in the background" in i.value for i in at.info) and not at.dataframe
    gate.set()
    assert background.fit_ready(load_study("paper-v3"), "multitask", wait_s=60)
    at.run()
    assert not at.exception and "predicted score ('multitask' law)" in at.dataframe[0].value.columns


def test_overview_leaves_a_large_study_to_the_cli():
    rng = np.random.default_rng(1)
    names = [f"s{i}" for i in range(45)]
    settings = pd.DataFrame({"setting": names, "A": rng.uniform(-3, -1, 45), "C": rng.uniform(0, 30, 45)})
    save_study(make_study("big", settings, pd.DataFrame({"mme": rng.uniform(800, 1500, 45)}, index=names)))
    at = AppTest.from_file(str(ROOT / "pages/overview.py"), default_timeout=TIMEOUT)
    at.session_state["study_name"] = "big"
    at.run()
    assert not at.exception
    assert any("law evaluate --study big --model auto" in c.value for c in at.caption)


def test_law_page_all_benchmarks_shows_held_out_panels_and_means():
    study = load_study("paper-v3")
    _ready(study, "paper")
    at = AppTest.from_file(str(ROOT / "pages/law.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "Mean R² out of sample: vision 0.703, OCR-type 0.457" in text and "paper ×15" in text
    table = next(df.value for df in at.dataframe if "R² out of sample (leave one setting out)" in df.value.columns)
    assert len(table) == 8
    # benchmarks under their labels, every column saying what it measures (no raw field names such as top3_hit)
    assert "MME (perception)" in table["benchmark"].tolist() and "mme" not in table["benchmark"].tolist()
    raw = {"n", "loo_r2", "spearman", "top1_hit", "top3_hit", "coverage", "interval_width", "in_sample_r2"}
    assert not raw & set(table.columns)
    assert {"coverage of the 80% intervals", "true best in predicted top 3 (held out)"} <= set(table.columns)


def _study_with_unscored():
    from dataclasses import replace

    from engine.law.background import fit_ready

    base = load_study("paper-v3").with_setting("new-inside", A=-1.95, C=18.0).with_setting("new-far", A=-1.0, C=30.0)
    study = save_study(replace(base, name="holes"))
    for model in ("paper", "ridge"):
        evaluation_future(study, model, 0.8).result(timeout=300)
        assert fit_ready(study, model, wait_s=300)
    return study


def test_law_page_predicts_unscored_settings_with_the_chosen_models_interval():
    from engine.law import predict_setting

    study = _study_with_unscored()
    at = AppTest.from_file(str(ROOT / "pages/law.py"), default_timeout=TIMEOUT)
    at.session_state["study_name"] = "holes"
    at.query_params["benchmark"] = "ok_vqa"
    at.query_params["model"] = "ridge"
    at.run()
    assert not at.exception
    table = next(df.value for df in at.dataframe if "flags" in df.value.columns)
    predicted = "predicted score ('ridge' law, out of sample)"
    lower, upper = "80% interval: lower (jackknife+)", "80% interval: upper (jackknife+)"
    assert {predicted, lower, upper, "valid range (score units)"} <= set(table.columns)
    assert sorted(table["setting"]) == ["new-far", "new-inside"] and set(table["benchmark"]) == {"OK-VQA"}
    rows = table.set_index("setting")
    for name, (a, c) in {"new-inside": (-1.95, 18.0), "new-far": (-1.0, 30.0)}.items():
        oracle = predict_setting(study, a, c, "ridge", 0.8).table.set_index("benchmark").loc["ok_vqa"]
        got = rows.loc[name]
        assert (got[predicted], got[lower], got[upper]) == pytest.approx((oracle["predicted"], oracle["lower"], oracle["upper"]))
        assert got["valid range (score units)"] == "0–100"
    assert "extrapolation" in rows.loc["new-far", "flags"] and rows.loc["new-inside", "flags"] == ""
    assert any("jackknife+" in c.value and "Out of sample" in c.value for c in at.caption)
    assert any("new-far" in w.value for w in at.warning)
    assert not any("leave-one-out RMSE" in m.value for m in at.markdown)  # the old ± LOO RMSE band is gone
    at.select_slider(key="law_level").set_value(0.9).run()
    assert not at.exception
    table = next(df.value for df in at.dataframe if "flags" in df.value.columns)
    assert "90% interval: lower (jackknife+)" in table.columns


def test_law_page_all_benchmarks_lists_every_unscored_pair():
    _study_with_unscored()
    at = AppTest.from_file(str(ROOT / "pages/law.py"), default_timeout=TIMEOUT)
    at.session_state["study_name"] = "holes"
    at.run()
    assert not at.exception
    table = next(df.value for df in at.dataframe if "flags" in df.value.columns)
    assert len(table) == 2 * 8 and "predicted score ('paper' law, out of sample)" in table.columns
