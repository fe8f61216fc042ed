"""AppTest of the law pages (overview, law, policy, data) and of app.py on the bundled study and stored ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from engine.export import read_provenance
from engine.law import fit_benchmark, fit_study
from engine.plots import tables
from engine.policy import recommend
from engine.study import list_studies, load_study

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def _run(page: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    _assert_clean(at)
    return at


def _assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.fixture(autouse=True)
def _fresh_store(isolated_home):
    return isolated_home


def test_overview_shows_reproduced_headline_against_printed_numbers():
    at = _run("pages/overview.py")
    assert at.title[0].value == "Law of Vision Representation"
    assert at.latex and "beta_4 A C" in at.latex[0].value
    report = fit_study(load_study("paper-v3"))
    vision = _metric(at, "Mean R² ×100, vision benchmarks (in-sample)")
    assert vision == f"{100 * report.mean_r2['vision']['ac_poly']:.2f}"
    assert abs(float(vision) - 94.06) < 0.5  # the paper's printed v3 headline
    assert float(_metric(at, "Mean R² ×100, OCR-type benchmarks (in-sample)")) == pytest.approx(83.85, abs=0.5)
    deltas = [m.delta for m in at.metric]
    assert any("94.06 printed" in d for d in deltas), deltas
    assert _metric(at, "Settings") == "15"
    assert not at.error


def test_law_page_all_then_one_benchmark_and_feature_set():
    at = _run("pages/law.py")
    assert at.selectbox(key="law_benchmark").value == "all"
    at.selectbox(key="law_benchmark").set_value("mme").run()
    _assert_clean(at)
    study = load_study("paper-v3")
    fit = fit_benchmark(study, "mme")
    assert _metric(at, "R² (in-sample)") == f"{fit.r2:.3f}"
    assert _metric(at, "R² out of sample (leave one out)") == f"{fit.loo_r2:.3f}"
    assert at.query_params["benchmark"] in ("mme", ["mme"])
    coef_table = next(df.value for df in at.dataframe if "raw units" in df.value.columns)
    assert coef_table["normalised"].iloc[0] == pytest.approx(fit.coef_normalized["intercept"])
    at.selectbox(key="law_feature_set").set_value("c_poly").run()
    _assert_clean(at)
    assert _metric(at, "R² (in-sample)") == f"{fit_benchmark(study, 'mme', 'c_poly').r2:.3f}"


def test_law_page_deep_link_opens_the_benchmark():
    at = _run("pages/law.py", benchmark="textvqa_val")
    assert at.selectbox(key="law_benchmark").value == "textvqa_val"
    assert _metric(at, "R² (in-sample)") == f"{fit_benchmark(load_study('paper-v3'), 'textvqa_val').r2:.3f}"


def test_law_page_predicts_unscored_settings_of_a_stored_study():
    from engine.study import copy_study, save_study

    study = copy_study("paper-v3", "partial")
    study = study.with_setting("SD3", scores={"mme": float("nan")})
    save_study(study, overwrite=True)
    at = AppTest.from_file(str(ROOT / "pages/law.py"), default_timeout=TIMEOUT)
    at.session_state["study_name"] = "partial"
    at.query_params["benchmark"] = "mme"
    at.run()
    _assert_clean(at)
    fit = fit_benchmark(study, "mme")
    unscored = next(df.value for df in at.dataframe if "flags" in df.value.columns)
    assert unscored["setting"].tolist() == ["SD3"]
    assert unscored["predicted score ('paper' law, out of sample)"].iloc[0] == pytest.approx(float(fit.predict(-4.13, 3.09)))
    lower, upper = _sklearn_jackknife_plus(study.table("mme").dropna(subset=["score"]), -4.13, 3.09, 0.8)
    assert unscored["80% interval: lower (jackknife+)"].iloc[0] == pytest.approx(lower)
    assert unscored["80% interval: upper (jackknife+)"].iloc[0] == pytest.approx(upper)
    assert _metric(at, "Settings fitted") == "14"


def _sklearn_jackknife_plus(table, a, c, level):
    """Jackknife+ interval (Barber et al. 2021) of the paper's law at (a, c) from sklearn leave-one-out refits."""
    import math
    from fractions import Fraction

    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import PolynomialFeatures

    def fit(rows):
        part = table.iloc[rows]
        lo = part[["A", "C", "score"]].min()
        span = part[["A", "C", "score"]].max() - lo
        poly = PolynomialFeatures(2)
        model = LinearRegression().fit(poly.fit_transform((part[["A", "C"]] - lo[["A", "C"]]) / span[["A", "C"]]),
                                       (part["score"] - lo["score"]) / span["score"])
        return lambda x: lo["score"] + span["score"] * model.predict(
            poly.transform((np.atleast_2d(x) - lo[["A", "C"]].to_numpy()) / span[["A", "C"]].to_numpy()))[0]

    n = len(table)
    lows, highs = [], []
    for i in range(n):
        f = fit([r for r in range(n) if r != i])
        resid = abs(table["score"].iloc[i] - f(table[["A", "C"]].iloc[i].to_numpy()))
        lows.append(f([a, c]) - resid)
        highs.append(f([a, c]) + resid)
    level = Fraction(str(level))  # exact: (1 - 0.8) * 15 is 2.9999999999999996 in floating point
    return sorted(lows)[math.floor((1 - level) * (n + 1)) - 1], sorted(highs)[math.ceil(level * (n + 1)) - 1]


def test_policy_page_controls_and_recommender():
    at = _run("pages/policy.py")
    assert at.number_input(key="policy_trials").value == 400
    at.number_input(key="policy_trials").set_value(50)
    at.number_input(key="policy_top").set_value(2)
    at.selectbox(key="policy_benchmark").set_value("mme")
    at.run()
    _assert_clean(at)
    recall = next(df.value for df in at.dataframe if "Recall@T (simulated)" in df.value.columns)
    assert set(recall["benchmark"]) == {"MME (perception)"}
    assert set(recall["finetune order"]) == {"region sampling (the paper's AC policy)", "random order",
                                             "greedy (best predicted next)"}
    assert recall["Recall@T (simulated)"].between(0, 1).all()
    at.multiselect(key="policy_finetuned_mme").set_value(["CLIP336", "DINOv2", "SD3"]).run()
    _assert_clean(at)
    study = load_study("paper-v3")
    scores = study.table("mme").set_index("setting")["score"]
    expected = recommend(study, "mme", {s: float(scores[s]) for s in ["CLIP336", "DINOv2", "SD3"]}, top=2)
    assert _metric(at, "Next finetune (region rule)") == expected.next_setting
    assert _metric(at, "Best predicted, not finetuned") == expected.alternative
    ranking = next(df.value for df in at.dataframe if "measured score" in df.value.columns)
    predicted = "predicted score (OLS quadratic refitted on the finetuned settings)"
    assert predicted in ranking.columns and "± RMSE out of sample (leave one finetuned setting out)" in ranking.columns
    best = ranking.set_index("setting").loc[expected.alternative, predicted]
    assert best == pytest.approx(expected.alternative_predicted)
    assert any("refitted on the 3 finetuned settings" in c.value and "out of sample" in c.value and "MME" in c.value
               for c in at.caption)
    at.number_input(key="cost_budget").set_value(5).run()
    _assert_clean(at)
    cost = next(df.value for df in at.dataframe if "GPU-hours (estimate)" in df.value.columns)
    assert cost["GPU-hours (estimate)"].tolist() == [15 * 96.0, 15 * 16.0 + 5 * 80.0]
    assert not {"gpu_hours", "trainable_params_per_candidate"} & set(cost.columns)  # labels, not field names


def _data_page() -> AppTest:
    return _run("pages/data.py")


def test_data_page_imports_a_good_csv_and_rejects_a_bad_one():
    good = tables.study_tidy(load_study("paper-v3"))
    good = good[good["setting"].isin(["CLIP336", "DINOv2", "SD3", "SDXL", "DiT"])]
    at = _data_page()
    at.text_input(key="data_import_name").set_value("five")
    at.file_uploader(key="data_import_file").upload("five.csv", good.to_csv(index=False).encode(), "text/csv")
    at.button[[b.label for b in at.button].index("Import")].click().run()
    _assert_clean(at)
    assert [s["name"] for s in list_studies()] == ["paper-v3", "five"]
    assert at.success and "Imported five" in at.success[0].value
    assert at.session_state["study_name"] == "five"

    at = _data_page()
    at.text_input(key="data_import_name").set_value("broken")
    bad = b"setting,benchmark,A,C,score\nCLIP336,mme,abc,15.66,1502.7\n"
    at.file_uploader(key="data_import_file").upload("bad.csv", bad, "text/csv")
    at.button[[b.label for b in at.button].index("Import")].click().run()
    _assert_clean(at)
    assert len(at.error) == 1 and "\n" not in at.error[0].value and "abc" in at.error[0].value
    assert [s["name"] for s in list_studies()] == ["paper-v3", "five"]  # nothing half-written


def test_data_page_download_is_reimportable_with_provenance():
    at = _data_page()
    button = next(b for b in at.get("download_button") if "Download the current study" in b.proto.label)
    assert button.proto.label
    study = load_study("paper-v3")
    from engine.export import strip_provenance, table_to_csv
    from engine.study import parse_study_file

    data = table_to_csv(tables.study_tidy(study), __import__("pages._ui", fromlist=["provenance"]).provenance(study))
    assert read_provenance(data, "csv")["study_hash"] == study.content_hash()
    assert parse_study_file(strip_provenance(data), "again").content_hash() == study.content_hash()


def test_data_editor_saves_only_a_valid_table():
    at = AppTest.from_file(str(ROOT / "pages/data.py"), default_timeout=TIMEOUT)
    at.session_state["data_editor_paper-v3"] = {"edited_rows": {1: {"setting": "CLIP336"}}, "added_rows": [],
                                                "deleted_rows": []}
    at.run()
    at.text_input(key="data_editor_name_paper-v3").set_value("edited")
    at.button(key="data_editor_save").click().run()
    _assert_clean(at)
    assert len(at.error) == 1 and "CLIP336" in at.error[0].value and "\n" not in at.error[0].value
    assert [s["name"] for s in list_studies()] == ["paper-v3"]

    at = AppTest.from_file(str(ROOT / "pages/data.py"), default_timeout=TIMEOUT)
    at.session_state["data_editor_paper-v3"] = {"edited_rows": {0: {"mme": 1600.0}}, "added_rows": [],
                                                "deleted_rows": [2]}
    at.run()
    at.text_input(key="data_editor_name_paper-v3").set_value("edited")
    at.button(key="data_editor_save").click().run()
    _assert_clean(at)
    assert not at.error
    saved = load_study("edited")
    assert len(saved.setting_names) == 14 and "OpenCLIP" not in saved.setting_names
    assert saved.table("mme").set_index("setting").at["CLIP336", "score"] == 1600.0
    assert at.success and "Saved edited" in at.success[0].value


def test_copy_and_delete_with_one_line_errors():
    at = _data_page()
    at.text_input(key="data_copy_name").set_value("mine")
    at.button[[b.label for b in at.button].index("Copy")].click().run()
    _assert_clean(at)
    assert at.session_state["study_name"] == "mine"
    at.button[[b.label for b in at.button].index("Delete")].click().run()
    assert len(at.error) == 1 and "confirm" in at.error[0].value
    at.checkbox(key="data_delete_confirm").check()
    at.button[[b.label for b in at.button].index("Delete")].click().run()
    _assert_clean(at)
    assert [s["name"] for s in list_studies()] == ["paper-v3"]
    at.text_input(key="data_copy_name").set_value("")
    at.button[[b.label for b in at.button].index("Copy")].click().run()
    assert len(at.error) == 1 and "\n" not in at.error[0].value
    assert [s["name"] for s in list_studies()] == ["paper-v3"]


def test_app_navigation_study_picker_and_switching_pages():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    _assert_clean(at)
    assert at.sidebar.selectbox(key="study_name").value == "paper-v3"
    assert at.title[0].value == "Law of Vision Representation"
    at.switch_page(str(ROOT / "pages/law.py")).run()
    _assert_clean(at)
    assert at.title[0].value == "The law, per benchmark"
    assert at.sidebar.selectbox(key="study_name").value == "paper-v3"


def test_unknown_study_in_the_url_falls_back_to_the_bundled_one():
    at = _run("pages/overview.py", study="no-such-study")
    assert at.warning and "no-such-study" in at.warning[0].value
    assert _metric(at, "Settings") == "15"


def test_export_button_bytes_carry_the_page_provenance():
    import json
    import xml.etree.ElementTree as ET

    from engine.plots import overview
    from pages import _ui

    study = load_study("paper-v3")
    fig = overview.r2_by_benchmark(tables.r2_by_benchmark(fit_study(study)))
    prov = _ui.provenance(study, "ac_poly", benchmark="all")
    prov_json = json.dumps({**prov.__dict__, "extra": dict(prov.extra)}, sort_keys=True)
    html = _ui._static_bytes(fig.to_json(), "html", prov_json)  # what the HTML button downloads
    record = read_provenance(html, "html")
    assert record["study"] == "paper-v3" and record["study_hash"] == study.content_hash()
    assert record["feature_set"] == "ac_poly" and record["benchmark"] == "all" and record["law_version"]
    svg = _ui._static_bytes(fig.to_json(), "svg", prov_json)
    ET.fromstring(svg)
    assert read_provenance(svg, "svg")["study_hash"] == study.content_hash()


def test_policy_page_deep_link_selects_the_benchmark():
    at = _run("pages/policy.py", benchmark="seed_image")
    assert at.selectbox(key="policy_benchmark").value == "seed_image"
    assert at.multiselect(key="policy_finetuned_seed_image") is not None
