"""The jobs page under Streamlit's AppTest: empty state, demo button, details of done and failed jobs, cancel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine import jobs
from engine.jobs import demo


@pytest.fixture(autouse=True)
def _stop_workers_left_running(jobs_home):
    """A failing test must not leave workers running on the shared machine."""


PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "jobs.py")


def _page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_empty_page_offers_the_demo(isolated_home):
    at = _page()
    assert at.title[0].value == "Jobs"
    assert any("No jobs yet" in info.value for info in at.info)
    assert not at.error


def test_demo_button_starts_a_background_job_and_details_show_it(isolated_home):
    at = _page()
    at.number_input(key="demo_n").set_value(3)
    at.number_input(key="demo_sleep").set_value(0.0)
    at.button(key="demo_start").click()
    at.run()
    assert not at.exception, at.exception
    [record] = jobs.list_jobs()
    assert record.target == demo.TARGET and record.params == {"n": 3, "sleep": 0.0}
    jobs.wait(record.id, timeout=60)
    at.run()
    assert not at.exception and not at.error
    assert at.selectbox(key="jobs_selected").value == record.id
    assert at.subheader[0].value.startswith(":material/check_circle:")
    assert any('"sum_of_squares"' in j.value and "5" in j.value for j in at.json)  # 0 + 1 + 4
    assert any("counted to 3" in code.value for code in at.code)
    assert len(at.get("plotly_chart")) == 1  # the metrics chart (value and loss series)
    assert {b.label for b in at.get("download_button")} >= {"PNG", "SVG", "HTML", "CSV", "result.json"}
    assert not [b for b in at.button if b.key == "job_cancel"]  # a finished job has no cancel button


def test_failed_job_shows_one_line_error_and_resume(isolated_home):
    job_id = jobs.submit(demo.TARGET, {"n": 3, "sleep": 0, "fail_at": 1}, title="will fail")
    jobs.wait(job_id, timeout=60)
    at = _page()
    assert [e.value for e in at.error] == ["ValueError: demo failure at step 1"]
    assert at.button(key="job_resume")


def test_a_finished_job_can_be_deleted_from_the_page(isolated_home):
    job_id = jobs.submit(demo.TARGET, {"n": 1, "sleep": 0})
    jobs.wait(job_id, timeout=60)
    at = _page()
    at.button(key="job_delete").click()
    at.run()
    assert not at.exception, at.exception
    assert jobs.list_jobs() == []
    assert any("No jobs yet" in info.value for info in at.info)


def test_running_job_can_be_cancelled_from_the_page(isolated_home):
    job_id = jobs.submit(demo.TARGET, {"n": 200, "sleep": 0.05}, title="long")
    deadline = time.monotonic() + 60
    while jobs.get_job(job_id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    at = _page()
    at.button(key="job_cancel").click()
    at.run()
    assert not at.exception, at.exception
    assert jobs.wait(job_id, timeout=30).status == "cancelled"
