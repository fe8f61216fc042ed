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


def test_backend_selector_saves_the_default_and_a_sweep_shows_its_encoders(jobs_home):
    from engine.scale.backend import saved_default_backend
    from engine.sweep import SweepSpec, submit_sweep

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert at.radio(key="backend_name").value == "local"
    at.radio(key="backend_name").set_value("ray")
    at.text_input(key="backend_address").set_value("10.0.0.5:6379")
    at.button[[b.label for b in at.button].index("Save")].click().run()
    assert not at.exception
    assert saved_default_backend().name == "ray" and saved_default_backend().address == "10.0.0.5:6379"
    at.radio(key="backend_name").set_value("local")
    at.button[[b.label for b in at.button].index("Save")].click().run()
    assert saved_default_backend().name == "local"

    job_id = submit_sweep(SweepSpec(encoders=("pixels-8",), dataset="builtin", limit=2))
    assert jobs.wait(job_id, timeout=120).status == "done"
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    frames = [df.value for df in at.dataframe]
    sweep = [f for f in frames if "encoder" in f.columns]
    assert sweep and sweep[0]["encoder"].tolist() == ["pixels-8"] and sweep[0]["status"].tolist() == ["done"]
    assert "backend" in frames[0].columns


def test_saving_a_ray_address_nothing_answers_at_warns_at_once_and_a_listening_one_does_not(jobs_home):
    import socket

    with socket.socket() as closed:  # a port nothing listens on once this socket is closed
        closed.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{closed.getsockname()[1]}"
    with socket.socket() as head:
        head.bind(("127.0.0.1", 0))
        head.listen()
        alive = f"127.0.0.1:{head.getsockname()[1]}"
        at = AppTest.from_file(PAGE, default_timeout=60).run()
        at.radio(key="backend_name").set_value("ray")
        at.text_input(key="backend_address").set_value(dead)
        at.button[[b.label for b in at.button].index("Save")].click().run()
        assert not at.exception
        assert [w.value for w in at.warning if dead in w.value and "cannot reach" in w.value]
        at.text_input(key="backend_address").set_value(alive)
        at.button[[b.label for b in at.button].index("Save")].click().run()
        assert not at.exception and not [w.value for w in at.warning if "cannot reach" in w.value]
    from engine.scale.backend import saved_default_backend

    assert saved_default_backend().address == alive  # saved both times: a cluster may come up later


def test_a_sweep_says_what_each_encoders_progress_counts_and_shows_a_only_with_with_a(jobs_home):
    """An encoder's bar counts images while it encodes and pairs while it matches: a "step" column says which;
    a C-only sweep has no empty A column; the caption says how many C values reached the study."""
    from engine.study import copy_study
    from engine.sweep import SweepSpec, submit_sweep

    copy_study("paper-v3", "mine")
    job_id = submit_sweep(SweepSpec(encoders=("pixels-8",), dataset="builtin", limit=2, study="mine"))
    assert jobs.wait(job_id, timeout=120).status == "done"
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    sweep = next(df.value for df in at.dataframe if "encoder" in df.value.columns)
    assert sweep["step"].tolist() == ["2/2 pairs"]
    listing = at.dataframe[0].value  # the jobs table: the sweep's step in its own words, not a bare "1/1" of encoders
    step = listing.loc[listing["id"] == job_id, "step"].item()
    assert "pixels-8" in step, step
    assert not any(c.startswith("A ") or c == "A status" for c in sweep.columns)
    assert any("C of 1 of 1 encoder(s) recorded and attached to study 'mine'" in c.value for c in at.caption)
