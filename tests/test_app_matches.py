"""AppTest of the keypoint-match viewer page on the builtin dataset with the raw-pixel baseline."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

PAGE = Path(__file__).resolve().parent.parent / "pages" / "matches.py"
ENCODER = "pixels-8"


def _app() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=240)
    at.query_params["encoder"] = ENCODER
    return at.run()


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def _titles(at: AppTest) -> list[str]:
    return [fig["layout"].get("title", {}).get("text", "") for fig in _figures(at)]


def _values(value) -> list[float]:
    """Plotly JSON arrays may come as base64 typed arrays (``{"dtype", "bdata"}``)."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return list(value)


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_page_renders_matches_similarity_and_pca():
    at = _app()
    _ok(at)
    assert at.multiselect(key="mx_encoders").value == [ENCODER]
    titles = _titles(at)
    assert len(titles) == 3  # matches, similarity, PCA (no stored evaluation yet)
    assert titles[0].startswith(f"{ENCODER} · ") and "PCK@0.1:" in titles[0]
    assert titles[1].startswith(f"{ENCODER}<br>") and "best match" in titles[1]  # the label, then the detail
    trace_names = {t.get("name") for t in _figures(at)[0]["data"]}
    assert {"source keypoints", "ground truth", "prediction"} <= trace_names
    # the click view starts on the first visible keypoint: its ground truth is ringed on the target
    assert {"query", "best match", "ground truth"} <= {t.get("name") for t in _figures(at)[1]["data"]}
    assert any("No stored evaluation" in i.value for i in at.info)


def test_changing_pair_alpha_encoder_and_query_updates():
    at = _app()
    first = _titles(at)
    at.selectbox(key="mx_category").select("cat").run()
    _ok(at)
    moved = _titles(at)
    assert "chelsea" in moved[0] and moved[0] != first[0]

    at.select_slider(key="mx_alpha").set_value(0.05).run()
    _ok(at)
    assert "PCK@0.05:" in _titles(at)[0]

    at.selectbox(key="mx_pair_index").select(2).run()
    _ok(at)
    assert _titles(at)[0] != moved[0]

    before = _titles(at)[1]
    at.number_input(key="mx_qx").set_value(5.0).run()
    at.number_input(key="mx_qy").set_value(5.0).run()
    _ok(at)
    assert _titles(at)[1] != before  # a new query point gives a new best match / score
    sim = _figures(at)[1]
    query = next(t for t in sim["data"] if t.get("name") == "query")
    assert _values(query["x"]) == [5.0] and _values(query["y"]) == [5.0]

    at.multiselect(key="mx_encoders").set_value([ENCODER, "efficientnet-lite0-random"]).run()
    _ok(at)
    titles = _titles(at)
    assert titles[0].startswith(f"{ENCODER} · ") and titles[1].startswith("efficientnet-lite0-random · ")


def test_bad_spair_path_is_one_error_line():
    at = _app()
    at.radio(key="mx_source").set_value("SPair-71k folder").run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "enter the path of a local SPair-71k folder (the one holding JPEGImages/ and PairAnnotation/)"]
    at.text_input(key="mx_spair_path").input("/nonexistent/SPair-71k").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["SPair-71k folder /nonexistent/SPair-71k does not exist"]


def test_a_local_spair_folder_is_browsable(tmp_path):
    from engine.correspondence.synthetic import write_synthetic_spair

    root = write_synthetic_spair(tmp_path / "SPair-71k", n_categories=2, images_per_category=3, n_pairs=4,
                                 size_range=(48, 72))  # fmt: skip
    at = _app()
    at.radio(key="mx_source").set_value("SPair-71k folder").run()
    at.text_input(key="mx_spair_path").input(str(root)).run()
    _ok(at)
    assert at.selectbox(key="mx_category").options == ["cat00", "cat01"]
    titles = _titles(at)
    assert len(titles) == 3 and "PCK@0.1:" in titles[0]
    at.selectbox(key="mx_split").select("val").run()
    assert not at.exception
    assert len(at.error) == 1 and "val" in at.error[0].value


def test_stored_evaluation_gives_bars_and_the_button_runs_a_background_job(isolated_home):
    from engine.correspondence.evaluate import evaluate
    from engine.jobs import wait

    evaluate("builtin", ENCODER, limit=12)
    at = _app()
    _ok(at)
    titles = _titles(at)
    assert titles[-1].startswith("PCK@0.1 per category<br>")  # the dataset and protocol on the next line
    shown = at.dataframe[-1].value
    assert "PCK@0.1 (share of keypoints matched)" in shown.columns and "pck" not in shown.columns
    bars = _figures(at)[-1]
    assert [t["name"] for t in bars["data"]] == [ENCODER]
    assert _values(bars["data"][0]["x"])[-1] == "mean"

    at.number_input(key="mx_job_limit").set_value(6).run()
    at.button(key="mx_eval_button").click().run()
    assert not at.exception
    job_id = at.session_state["mx_eval_job"]
    record = wait(job_id, timeout=180)  # the worker is a separate process: never leave it running
    assert record.status == "done", record.error
    assert record.result["dataset"]["limit"] == 6


@pytest.mark.browser
@pytest.mark.slow
def test_clicking_a_source_grid_point_moves_the_query_in_chromium(tmp_path):
    """The real plotly selection path (``on_select="rerun"``), which AppTest cannot drive."""
    from _app_server import CHROMIUM, CHROMIUM_ARGS, streamlit_server

    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed")
    from playwright.sync_api import sync_playwright

    home = tmp_path / "home"
    home.mkdir()
    with streamlit_server(home) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{url}/matches?encoder={ENCODER}")
            page.wait_for_selector("text=PCK@0.1", timeout=180_000)
            assert page.locator('[data-testid="stException"]').count() == 0
            page.get_by_role("tab", name="Click a point").click()
            query_x = page.get_by_label("query x (px)")
            query_x.wait_for(timeout=60_000)
            before = (query_x.input_value(), page.get_by_label("query y (px)").input_value())
            chart = page.locator(".js-plotly-plot").nth(1)
            grid = chart.locator("g.trace.scatter").nth(0).locator("path.point")
            assert grid.count() > 100
            grid.nth(45).click(force=True)
            deadline = time.monotonic() + 60
            after = before
            while after == before and time.monotonic() < deadline:
                page.wait_for_timeout(500)
                after = (query_x.input_value(), page.get_by_label("query y (px)").input_value())
            assert after != before
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()


def test_two_encoders_side_by_side_in_click_and_pca_views():
    at = _app()
    at.multiselect(key="mx_encoders").set_value([ENCODER, "efficientnet-lite0-random"]).run()
    _ok(at)
    titles = _titles(at)
    similarity = [t for t in titles if "best match" in t]
    pca = [t for t in titles if "joint PCA" in t]
    assert [t.split("<br>")[0] for t in similarity] == [ENCODER, "efficientnet-lite0-random"]
    assert [t.split("<br>")[0] for t in pca] == [ENCODER, "efficientnet-lite0-random"]
    # the same query point on both
    sims = [f for f in _figures(at) if "best match" in f["layout"]["title"]["text"]]
    queries = [next(t for t in f["data"] if t.get("name") == "query") for f in sims]
    assert _values(queries[0]["x"]) == _values(queries[1]["x"])


def test_query_and_best_match_have_distinct_markers():
    at = _app()
    sim = next(f for f in _figures(at) if "best match" in f["layout"]["title"]["text"])
    query = next(t for t in sim["data"] if t.get("name") == "query")["marker"]
    best = next(t for t in sim["data"] if t.get("name") == "best match")["marker"]
    assert (query["symbol"], query["color"]) != (best["symbol"], best["color"])
    assert query["symbol"] != best["symbol"] and query["color"] != best["color"]


def test_builtin_c_is_flagged_and_the_category_table_counts_true_pairs(isolated_home):
    from engine.correspondence.datasets import open_dataset
    from engine.correspondence.evaluate import evaluate

    evaluate("builtin", ENCODER, limit=20)
    at = _app()
    _ok(at)
    assert any("not comparable" in w.value for w in at.warning)
    assert "not comparable to SPair-71k C" in _titles(at)[-1]
    table = next(df.value for df in at.dataframe if "pairs" in df.value.columns)
    # oracle: count the categories of the first 20 pairs of the dataset itself
    pairs = open_dataset("builtin", "test").pairs("test", limit=20)
    expected = {}
    for p in pairs:
        expected[p.category] = expected.get(p.category, 0) + 1
    assert dict(zip(table["category"], table["pairs"], strict=True)) == expected
    assert sum(expected.values()) == 20 and len(expected) > 1  # a per-category count, not the run's total
    bars = _figures(at)[-1]
    assert bars["layout"]["yaxis"]["title"]["text"].startswith("PCK@0.1 (")
    assert bars["layout"]["xaxis"]["title"]["text"].startswith("Category")


def test_the_matches_png_records_dataset_pair_encoder_and_weights(monkeypatch):
    from engine import export
    from engine.encoders.registry import build_encoder
    from pages import _ui

    shown = []
    monkeypatch.setattr(_ui, "_register_export", lambda *item: shown.append(item))
    at = _app()
    _ok(at)
    name, _kind, fig_json, prov_json = next(item for item in shown if item[0].startswith("matches-"))
    png = _ui._static_bytes(fig_json, "png", prov_json)
    record = export.read_provenance(png, "png")
    pair = at.selectbox(key="mx_pair_index")
    assert record["dataset"] == "builtin" and record["split"] == "test"
    assert record["pair"] in name and record["pair"] in pair.options[pair.index]
    assert record["encoder"] == ENCODER and record["c_protocol"] == "default"
    assert record["weights_hash"] == build_encoder(ENCODER).weights_hash()
    assert record["exported_at"] and record["app_version"]


def test_results_stored_before_the_per_category_count_are_counted_from_the_dataset(isolated_home):
    from engine.correspondence import results
    from engine.correspondence.datasets import open_dataset
    from engine.correspondence.evaluate import evaluate

    result = evaluate("builtin", ENCODER, limit=20, record=False)
    del result.pck["per_category_pairs"]  # as written by earlier versions
    results.record_result(result)
    at = _app()
    _ok(at)
    table = next(df.value for df in at.dataframe if "pairs" in df.value.columns)
    expected: dict[str, int] = {}
    for p in open_dataset("builtin", "test").pairs("test", limit=20):
        expected[p.category] = expected.get(p.category, 0) + 1
    assert dict(zip(table["category"], table["pairs"], strict=True)) == expected
