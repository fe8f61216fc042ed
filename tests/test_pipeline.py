"""The score-an-encoder pipeline: plan / launch / reuse, scale separation, placement on the law, storing settings."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from engine import jobs, pipeline
from engine.alignment.records import record_a_score, record_projector
from engine.correspondence.results import c_score, list_results
from engine.errors import InputError
from engine.law import fit_benchmark
from engine.study import BUNDLED_NAME, list_studies, load_study

ENCODER = "pixels-8"  # offline, no weights: a C job on a few builtin pairs takes seconds


@pytest.fixture(autouse=True)
def _stop_workers_left_running(jobs_home):
    """A failing test must not leave workers running on the shared machine."""


def _states(p: pipeline.Plan) -> dict[str, str]:
    return {s.key: s.state for s in p.steps}


def test_plan_lists_every_step_with_its_job(isolated_home):
    p = pipeline.plan(ENCODER, BUNDLED_NAME, limit=4)
    assert _states(p) == {"c": "run", "projector": "run", "a": "run"}
    assert p.step("c").target == pipeline.C_TARGET
    assert p.step("c").params == {"dataset": "builtin", "encoder": ENCODER, "protocol": "default", "split": "test", "limit": 4}
    assert p.step("projector").target == pipeline.TRAIN_TARGET and p.step("projector").params["demo"] is True
    assert p.step("a").target == pipeline.LOGLIK_TARGET and p.step("a").needs == ("projector",)
    assert p.scale == "demo" and p.target_study == "paper-v3-demo" and p.setting == f"{ENCODER} (demo)"
    assert any("not results" in w for w in p.warnings)
    assert [s.state for s in pipeline.status(p)] == ["missing", "missing", "waiting"]


def test_launch_submits_missing_jobs_and_a_second_plan_reuses_the_stored_c(isolated_home):
    p = pipeline.plan(ENCODER, BUNDLED_NAME, a_definition="v1-clip-ref", limit=4)
    assert _states(p) == {"c": "run", "a": "unavailable"}
    ids = pipeline.launch(p)
    assert len(ids) == 1
    assert pipeline.launch(p) == ids  # idempotent while the job is queued or running
    record = jobs.wait(ids[0], timeout=120)
    assert record.status == "done", record.error

    again = pipeline.plan(ENCODER, BUNDLED_NAME, a_definition="v1-clip-ref", limit=4)
    assert _states(again)["c"] == "reuse"
    [stored] = list_results(ENCODER)
    assert again.C == pytest.approx(c_score(stored)) == pytest.approx(100 * record.result["pck"]["per_image"]["0.1"])
    assert pipeline.launch(again) == []
    assert len(jobs.list_jobs()) == 1  # no new job
    assert pipeline.status(again)[0].state == "stored"
    other = pipeline.plan(ENCODER, BUNDLED_NAME, a_definition="v1-clip-ref", limit=5)
    assert _states(other)["c"] == "run"  # a different number of pairs is a different result


def test_a_scoring_waits_for_the_projector_and_is_chained_to_it(isolated_home, monkeypatch):
    submitted, chained = [], []
    monkeypatch.setattr(jobs, "submit", lambda target, params, title=None: submitted.append(target) or f"id-{len(submitted)}")
    monkeypatch.setattr(jobs, "chain", lambda job_id, target, params, title=None: chained.append((job_id, target)) or True)
    p = pipeline.plan(ENCODER, BUNDLED_NAME, limit=4)
    assert pipeline.launch(p) == ["id-1", "id-2"]
    assert submitted == [pipeline.C_TARGET, pipeline.TRAIN_TARGET]  # not the A job: its projector is not there yet
    assert chained == [("id-2", pipeline.LOGLIK_TARGET)]  # the projector's worker submits it, server-side


def test_a_chain_that_already_fired_is_submitted_directly(isolated_home, monkeypatch):
    submitted = []
    monkeypatch.setattr(jobs, "submit", lambda target, params, title=None: submitted.append(target) or f"id-{len(submitted)}")
    monkeypatch.setattr(jobs, "chain", lambda job_id, target, params, title=None: False)
    p = pipeline.plan(ENCODER, BUNDLED_NAME, limit=4)
    pipeline.launch(p)
    assert submitted == [pipeline.C_TARGET, pipeline.TRAIN_TARGET, pipeline.LOGLIK_TARGET]


def test_stored_projector_and_a_are_reused_only_on_the_same_scale(isolated_home):
    record_projector(ENCODER, "/tmp/demo-llm", 192, 96, "/tmp/p.safetensors", "trained (demo)", "abc123")
    p = pipeline.plan(ENCODER, BUNDLED_NAME, limit=4)
    assert _states(p) == {"c": "run", "projector": "reuse", "a": "run"}
    record_a_score("v3", -1.5, n_images=100, seed=0, encoder=ENCODER, llm="some-llm", recipe={"demo": False, "data": "x.json"})
    assert pipeline.plan(ENCODER, BUNDLED_NAME, limit=4).A is None  # a non-demo A is never taken for a demo plan
    record_a_score("v3", -3.25, n_images=100, seed=0, encoder=ENCODER, recipe={"demo": True})
    p = pipeline.plan(ENCODER, BUNDLED_NAME, limit=4)
    assert _states(p) == {"c": "run", "projector": "not needed", "a": "reuse"} and p.A == -3.25
    real = pipeline.plan(ENCODER, BUNDLED_NAME, demo=False, llm="some-llm", align_data="x.json", align_images="imgs")
    assert real.A == -1.5 and real.a_scale == "paper" and real.c_scale == "demo"


def test_without_demo_the_a_steps_need_an_llm_and_data(isolated_home):
    p = pipeline.plan(ENCODER, BUNDLED_NAME, demo=False)
    assert _states(p) == {"c": "run", "projector": "unavailable", "a": "unavailable"}
    assert "enter A by hand" in p.step("a").note


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encoder_name": "no-such-encoder"}, "unknown encoder"),
        ({"a_definition": "v2"}, "unknown A definition"),
        ({"c_protocol": "nope"}, "unknown protocol"),
        ({"dataset": "imagenet"}, "unknown dataset"),
        ({"limit": 0}, "positive"),
        ({"study_name": "no-such-study"}, "unknown study"),
    ],
)
def test_bad_plan_inputs_are_one_line_errors(isolated_home, kwargs, message):
    args = {"encoder_name": ENCODER, "study_name": BUNDLED_NAME, **kwargs}
    with pytest.raises(InputError, match=message):
        pipeline.plan(**args)


def test_place_on_law_equals_the_fitted_law(isolated_home):
    from engine.law import predict_setting

    study = load_study(BUNDLED_NAME)
    table = pipeline.place_on_law(study, "new", -2.0, 18.0)
    assert table["benchmark"].tolist() == study.benchmarks
    interval = predict_setting(study, -2.0, 18.0, "paper", 0.8).table.set_index("benchmark")
    for row in table.itertuples():
        fit = fit_benchmark(study, row.benchmark)
        assert row.predicted == pytest.approx(float(fit.predict(-2.0, 18.0)))
        assert (row.lower, row.upper) == pytest.approx((interval.at[row.benchmark, "lower"], interval.at[row.benchmark, "upper"]))
        assert row.lower < row.predicted < row.upper and row.level == 0.8 and row.model == "paper"
        assert not row.extrapolated and math.isnan(row.actual) and row.comparable
    far = pipeline.place_on_law(BUNDLED_NAME, "far", -6.0, 18.0)
    assert far["extrapolated"].all() and not far["comparable"].any()
    demo = pipeline.place_on_law(study, "new", -2.0, 18.0, scale="demo")
    assert demo["method_mismatch"].all() and not demo["comparable"].any()
    own = pipeline.place_on_law(study, "CLIP336", -1.97, 15.66)
    assert own.set_index("benchmark").at["mme", "actual"] == 1502.7
    with pytest.raises(InputError, match="finite"):
        pipeline.place_on_law(study, "x", float("nan"), 1.0)


def test_add_to_study_copies_the_bundled_study_and_keeps_demo_scale_apart(isolated_home):
    written = pipeline.add_to_study(BUNDLED_NAME, "MyEnc", -1.9, 21.5, {"llm": "Vicuna-7B v1.5"})
    assert written == "paper-v3-user"
    stored = load_study(written)
    row = stored.settings.set_index("setting").loc["MyEnc"]
    assert (row["A"], row["C"], row["llm"]) == (-1.9, 21.5, "Vicuna-7B v1.5")
    assert "MyEnc" not in load_study(BUNDLED_NAME).setting_names
    assert pipeline.add_to_study(written, "Other", -2.0, 10.0) == written  # a user study is written in place

    demo = pipeline.add_to_study(BUNDLED_NAME, "pixels-8 (demo)", -4.0, 45.0, demo_scale=True)
    assert demo == "paper-v3-demo"
    assert "demo-scale" in load_study(demo).settings.set_index("setting").at["pixels-8 (demo)", "source"]
    assert "pixels-8 (demo)" not in load_study(written).setting_names

    with pytest.raises(InputError, match="already has A/C"):
        pipeline.add_to_study(BUNDLED_NAME, "CLIP336", -1.0, 1.0)  # never silently replaces a measured setting
    with pytest.raises(InputError, match="already has A/C"):
        pipeline.add_to_study(written, "MyEnc", -1.0, 1.0)
    pipeline.add_to_study(written, "MyEnc", -1.0, 1.0, overwrite=True)
    assert load_study(written).settings.set_index("setting").at["MyEnc", "A"] == -1.0

    before = list_studies()
    with pytest.raises(InputError, match="not a number"):
        pipeline.add_to_study(BUNDLED_NAME, "Bad", "abc", 1.0)
    with pytest.raises(InputError, match="unknown setting metadata"):
        pipeline.add_to_study(BUNDLED_NAME, "Bad", 1.0, 1.0, {"colour": "red"})
    assert list_studies() == before


def test_recommend_next_ranks_the_candidate(isolated_home):
    study = load_study(BUNDLED_NAME)
    table = study.table("mmbench_en")
    finetuned = dict(zip(table["setting"], table["score"], strict=True))
    rec = pipeline.recommend_next(study, "mmbench_en", finetuned, "cand", -1.9, 20.0)
    row = rec.ranking.set_index("setting").loc["cand"]
    assert not row["finetuned"]
    assert rec.alternative == "cand"  # the only setting not finetuned yet
    assert np.isfinite(row["predicted"])
    renamed = pipeline.recommend_next(study, "mmbench_en", finetuned, "CLIP336", -1.9, 20.0)
    assert "CLIP336 (new)" in renamed.ranking["setting"].tolist()


def test_figures_show_the_candidate_and_the_intervals(isolated_home):
    from engine.pipeline import figures

    study = load_study(BUNDLED_NAME)
    scatter = figures.candidate_scatter(study.settings, "cand", -2.0, 18.0, "demo")
    assert scatter.data[-1].name == "cand [demo-scale]" and list(scatter.data[-1].x) == [-2.0]
    assert sum(len(t.x) for t in scatter.data[:-1]) == len(study.setting_names)
    table = pipeline.place_on_law(study, "cand", -2.0, 18.0)
    bars = figures.prediction_bars(table, "cand", "demo", study.long)
    drawn = [t for t in bars.data if t.type == "bar"]
    assert [t.y[0] for t in drawn] == pytest.approx(table["predicted"].tolist())
    assert [t.error_y.array[0] for t in drawn] == pytest.approx((table["upper"] - table["predicted"]).tolist())
    assert [t.error_y.arrayminus[0] for t in drawn] == pytest.approx((table["predicted"] - table["lower"]).tolist())


def test_prediction_bars_title_and_legend_fit_a_laptop_window(isolated_home):
    """A one-line title of ~110 characters was cut at a 1000-px window and the right-hand legend squeezed the four
    panels until their titles overlapped: a short main line, the detail wrapped, the legend under the panels."""
    import re

    from engine.pipeline import figures
    from engine.plots.style import DETAIL_CHARS

    study = load_study(BUNDLED_NAME)
    bars = figures.prediction_bars(pipeline.place_on_law(study, "cand", -2.0, 18.0), "cand", "demo", study.long)
    lines = [re.sub(r"<[^>]+>", "", line) for line in bars.layout.title.text.split("<br>")]
    assert lines[0] == "Predicted scores of cand" and len(lines) >= 2
    assert all(len(line) <= DETAIL_CHARS for line in lines)
    assert "out-of-sample" in " ".join(lines) and "demo-scale" in " ".join(lines)
    assert bars.layout.margin.t >= 40 + 20 * len(lines)  # room for every title line above the panel titles
    assert bars.layout.legend.orientation == "h" and bars.layout.legend.yanchor == "bottom"


def test_cli_plan_place_and_add(isolated_home, capsys):
    import json

    from engine.cli import main

    assert main(["pipeline", "plan", "--encoder", ENCODER, "--limit", "4", "--format", "json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["scale"] == "demo" and [s["state"] for s in planned["steps"]] == ["run", "run", "run"]
    assert main(["pipeline", "place", "--A", "-2", "--C", "18", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["predicted"] for r in rows] == pytest.approx(
        pipeline.place_on_law(BUNDLED_NAME, "candidate", -2.0, 18.0)["predicted"].tolist())
    assert main(["pipeline", "place", "--A", "-2", "--C", "nan"]) == 2
    assert capsys.readouterr().err.strip() == "error: C must be a finite number, got nan"
    assert main(["pipeline", "add", "--setting", "S", "--A", "-2", "--C", "18", "--demo-scale", "--meta", "llm=x"]) == 0
    assert "paper-v3-demo" in capsys.readouterr().out
    assert load_study("paper-v3-demo").settings.set_index("setting").at["S", "llm"] == "x"


def test_an_encoder_without_local_weights_gets_no_job(isolated_home):
    from engine.encoders.registry import list_encoders

    missing = next((s.name for s in list_encoders() if not s.offline_available()), None)
    if missing is None:
        pytest.skip("every registered encoder has its weights on this machine")
    p = pipeline.plan(missing, BUNDLED_NAME)
    assert {s.state for s in p.steps} == {"unavailable"}
    assert any("not on this machine" in w for w in p.warnings)
    assert pipeline.launch(p) == []


def test_only_paper_scale_a_and_c_target_the_study_itself(isolated_home):
    real = {"demo": False, "llm": "lmsys/vicuna-7b-v1.5", "align_data": "blip_558k.json", "align_images": "images"}
    p = pipeline.plan(ENCODER, BUNDLED_NAME, dataset="spair:/data/SPair-71k", **real)
    assert (p.a_scale, p.c_scale, p.scale) == ("paper", "paper", "paper")
    assert p.setting == ENCODER and p.target_study == "paper-v3-user"  # the bundled study is read-only
    assert not any("not results" in w for w in p.warnings)
    subset = pipeline.plan(ENCODER, BUNDLED_NAME, dataset="spair:/data/SPair-71k", limit=100, **real)
    assert subset.scale == "demo" and subset.target_study == "paper-v3-demo"


def _wait_for_a_job(timeout: float) -> jobs.JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = jobs.list_jobs(target=pipeline.LOGLIK_TARGET)
        if found:
            return jobs.wait(found[0].id, timeout=max(1.0, deadline - time.monotonic()))
        time.sleep(0.2)
    raise AssertionError("the A job was never started")


@pytest.mark.slow
def test_demo_chain_end_to_end(isolated_home):
    """One launch (then the page is left): C and projector jobs run, the projector's worker starts the A job."""
    p = pipeline.plan(ENCODER, BUNDLED_NAME, limit=4)
    for job_id in pipeline.launch(p):  # launched once, never polled again: the chain runs server-side
        assert jobs.wait(job_id, timeout=900).status == "done", jobs.get_job(job_id).error
    a_job = _wait_for_a_job(timeout=900)
    assert a_job.status == "done", a_job.error
    done = pipeline.refresh(p)
    assert {s.key: s.state for s in done.steps} == {"c": "reuse", "projector": "not needed", "a": "reuse"}
    assert math.isfinite(done.A) and 0 <= done.C <= 100
    assert pipeline.launch(done) == []
    table = pipeline.place_on_law(BUNDLED_NAME, done.setting, done.A, done.C)
    assert len(table) == 8 and table["predicted"].notna().all()
    assert pipeline.add_to_study(BUNDLED_NAME, done.setting, done.A, done.C, demo_scale=True) == "paper-v3-demo"


def test_measurement_record_names_the_weights_a_method_and_c_protocol(isolated_home):
    from engine.correspondence.evaluate import evaluate
    from engine.encoders.registry import build_encoder

    p = pipeline.plan(ENCODER, BUNDLED_NAME, limit=4)
    assert "not recorded" in pipeline.measurement_record(p)["encoder_weights_hash"]
    evaluate("builtin", ENCODER, limit=4)
    record = pipeline.measurement_record(pipeline.plan(ENCODER, BUNDLED_NAME, limit=4))
    assert record["encoder_weights_hash"] == build_encoder(ENCODER).weights_hash()
    assert record["candidate_a_method"] == "v3-loglik (demo projector + demo LLM)"
    assert record["candidate_c_protocol"] == "default on builtin (test, 4 pairs)"
