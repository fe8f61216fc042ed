"""The score-an-encoder page under Streamlit's AppTest: first launch, manual A/C, bad values, launching a job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine import jobs, pipeline
from engine.study import BUNDLED_NAME, load_study

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "score_encoder.py")


@pytest.fixture(autouse=True)
def _stop_workers_left_running(jobs_home):
    """A failing test must not leave workers running on the shared machine."""


def _page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    return at


def _manual(at: AppTest, a: str, c: str, setting: str = "my-encoder") -> AppTest:
    at.radio(key="score_mode").set_value("Enter A and C by hand").run()
    at.text_input(key="score_manual_setting").set_value(setting)
    at.text_input(key="score_manual_a").set_value(a)
    at.text_input(key="score_manual_c").set_value(c)
    at.run()
    assert not at.exception, at.exception
    return at


def test_first_launch_shows_the_plan_and_its_scale(isolated_home):
    at = _page()
    assert at.title[0].value == "Score an encoder"
    assert not at.error
    steps = " ".join(m.value for m in at.markdown)
    assert "C: PCK@0.10 on builtin" in steps and "missing" in steps and "waiting" in steps
    assert any("demo-scale" in w.value for w in at.warning)
    assert at.button(key="score_launch").label.startswith("Launch 3 missing job")
    assert not jobs.list_jobs()  # nothing runs until the button is pressed


def test_manual_entry_shows_predictions_of_the_law(isolated_home):
    at = _manual(_page(), "-1.9", "20")
    assert not at.error
    assert [m.value for m in at.metric] == ["-1.9", "20", "paper"]
    shown = at.dataframe[0].value
    expected = pipeline.place_on_law(load_study(BUNDLED_NAME), "my-encoder", -1.9, 20.0)
    assert shown["predicted score ('paper' law)"].tolist() == pytest.approx(expected["predicted"].tolist())
    # labels a researcher reads: benchmark names, the interval's level and method, no raw field names
    assert shown["benchmark"].tolist() == expected["label"].tolist()
    assert shown["80% interval: lower (jackknife+, out of sample)"].tolist() == pytest.approx(expected["lower"].tolist())
    assert not {"predicted", "lower", "upper", "actual", "method_mismatch", "range_low", "level"} & set(shown.columns)
    assert shown["valid range"].iloc[0] == "0–100"
    assert len(at.get("plotly_chart")) == 2
    assert "Next by the AC region rule" in " ".join(m.value for m in at.markdown)

    at.button(key="score_add").click().run()
    assert not at.exception and not at.error
    assert any("paper-v3-user" in s.value for s in at.success)
    assert "my-encoder" in load_study("paper-v3-user").setting_names


def test_bad_value_is_one_error_line(isolated_home):
    at = _manual(_page(), "-1.9", "abc")
    assert [e.value for e in at.error] == ["C is not a number: 'abc'"]
    assert not at.dataframe
    at = _manual(at, "inf", "20")
    assert [e.value for e in at.error] == ["A must be a finite number, got 'inf'"]


def test_launch_button_starts_the_missing_job_in_the_background(isolated_home):
    at = _page()
    at.selectbox(key="score_encoder").set_value("pixels-8")
    at.selectbox(key="score_a_definition").set_value("v1-clip-ref")
    at.number_input(key="score_limit").set_value(4)
    at.run()
    assert at.button(key="score_launch").label.startswith("Launch 1 missing job")
    at.button(key="score_launch").click().run()
    assert not at.exception, at.exception
    [record] = jobs.list_jobs()
    assert record.target == pipeline.C_TARGET and record.params["encoder"] == "pixels-8"
    assert jobs.wait(record.id, timeout=120).status == "done"
    at.run()
    assert not at.exception and not at.error
    assert "stored" in " ".join(m.value for m in at.markdown)
    assert not [b for b in at.button if b.key == "score_launch"]
    assert len(jobs.list_jobs()) == 1


def test_bad_dataset_is_one_error_line(isolated_home):
    at = _page()
    at.text_input(key="score_dataset").set_value("imagenet").run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["unknown dataset 'imagenet' (use builtin or spair:/path/to/SPair-71k)"]


def test_exports_of_the_placement_record_the_a_method_and_c_protocol(isolated_home, monkeypatch):
    from pages import _ui

    shown = []
    monkeypatch.setattr(_ui, "_register_export", lambda *item: shown.append(item))
    at = AppTest.from_file(PAGE, default_timeout=240).run()
    at.radio(key="score_mode").set_value("Enter A and C by hand").run()
    at.text_input(key="score_manual_a").input("-1.95").run()
    at.text_input(key="score_manual_c").input("18.4").run()
    assert not at.exception
    records = [json.loads(item[3])["extra"] for item in shown]
    assert records, "the placement shows exportable figures"
    for record in records:
        assert record["a_method"] == "caption log-likelihood (v3)"  # the study's, from its settings
        assert record["c_protocol"] == "SPair-71k test PCK@0.10 per image, bbox"
        assert record["candidate_a_method"] == "entered by hand"
