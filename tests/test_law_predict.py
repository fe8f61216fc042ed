"""``law predict`` / ``law evaluate``: flags (clipping, hull, method mismatch), CLI JSON contract and bad input."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from engine.errors import InputError
from engine.law import predict_setting, study_matrices
from engine.law.predict import inside_hull
from engine.study import load_study


def run_inprocess(args, home, capsys, monkeypatch):
    from engine.cli import main

    monkeypatch.setenv("LAW_EXPLORER_HOME", str(home))
    code = main(args)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def test_hull_flag_agrees_with_a_polygon_oracle():
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(3)
    points = np.column_stack([rng.uniform(-4, -1.8, 15), rng.uniform(1, 26, 15)])
    eq = ConvexHull(points).equations  # facet half-planes: normal . x + offset <= 0 inside
    for x in np.column_stack([rng.uniform(-4.5, -1.5, 300), rng.uniform(-2, 30, 300)]):
        margin = (eq[:, :2] @ x + eq[:, 2]).max()
        if abs(margin) > 1e-6:
            assert inside_hull(points, x) == (margin < 0)
    assert inside_hull(points, points[0])  # a setting itself is inside


def test_prediction_is_clipped_to_the_valid_range_and_flagged():
    study = load_study("paper-v3")
    far = predict_setting(study, -1.0, 30.0, "paper")
    table = far.table.set_index("benchmark")
    assert table["extrapolated"].all()
    pct = table.drop(index="mme")
    assert (pct["predicted"] <= 100).all() and (pct["upper"] <= 100).all() and (table["lower"] >= 0).all()
    assert table.loc["mme", "upper"] <= 2000 and table.loc["mmbench_en", "predicted"] == 100.0
    raw = predict_setting(study, -1.0, 30.0, "paper", level=0.8)
    assert "clipped" in raw.flags and "extrapolated" in raw.flags and not raw.comparable


def test_inside_prediction_is_comparable_and_mean_inside_interval():
    study = load_study("paper-v3")
    placed = predict_setting(study, -1.95, 18.0, "ridge", level=0.8)
    t = placed.table
    assert not t["extrapolated"].any() and placed.comparable and placed.flags == []
    assert ((t["lower"] <= t["predicted"]) & (t["predicted"] <= t["upper"])).all()
    wider = predict_setting(study, -1.95, 18.0, "ridge", level=0.95).table
    assert ((wider["upper"] - wider["lower"]) >= (t["upper"] - t["lower"]) - 1e-9).all()


def test_method_mismatch_is_flagged_against_the_recorded_method():
    study = load_study("paper-v3")
    same = predict_setting(study, -1.95, 18.0, a_method=study.meta["a_method"], c_method=study.meta["c_method"])
    assert same.mismatch == []
    other = predict_setting(study, -1.95, 18.0, a_method="demo caption log-likelihood (tiny LLM)")
    assert other.mismatch and "method_mismatch" in other.flags and not other.comparable


def test_cli_evaluate_json_contract(tmp_path, capsys, monkeypatch):
    proc = run_inprocess(["law", "evaluate", "--study", "paper-v3", "--model", "ridge", "--level", "0.8", "--format", "json"],
                         tmp_path, capsys, monkeypatch)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["model"] == "ridge" and data["n_settings"] == 15 and data["chosen"] == {"ridge": 15}
    assert set(data["mean"]) >= {"vision", "ocr", "all"}
    for bench in study_matrices(load_study("paper-v3")).benchmarks:
        fields = data["benchmarks"][bench]
        assert {"loo_r2", "spearman", "top1_hit", "top3_hit", "coverage", "interval_width"} <= set(fields)
    expect = np.mean([data["benchmarks"][b]["loo_r2"] for b in ("mmbench_en", "mme", "ok_vqa", "seed_image")])
    assert data["mean"]["vision"] == pytest.approx(expect)


def test_cli_predict_json_contract(tmp_path, capsys, monkeypatch):
    proc = run_inprocess(["law", "predict", "--study", "paper-v3", "--model", "paper", "--a", "-1.9", "--c", "20",
                          "--format", "json"], tmp_path, capsys, monkeypatch)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    expected = predict_setting(load_study("paper-v3"), -1.9, 20.0, "paper", 0.8).table.set_index("benchmark")
    for bench, row in data["benchmarks"].items():
        assert row["predicted"] == pytest.approx(expected.loc[bench, "predicted"])
        assert row["lower"] <= row["predicted"] <= row["upper"]


@pytest.mark.parametrize("args, needle", [
    (["law", "evaluate", "--study", "paper-v3", "--model", "lasso"], "unknown law model 'lasso'"),
    (["law", "evaluate", "--study", "paper-v3", "--level", "0"], "strictly between 0 and 1"),
    (["law", "evaluate", "--study", "paper-v3", "--level", "1.2"], "strictly between 0 and 1"),
    (["law", "predict", "--study", "paper-v3", "--a", "-2", "--c", "10", "--level", "-0.5"], "strictly between 0 and 1"),
    (["law", "predict", "--study", "paper-v3", "--a", "nan", "--c", "10"], "finite number"),
    (["law", "predict", "--study", "paper-v3", "--a", "-2", "--c", "10", "--model", "x"], "unknown law model"),
    (["law", "predict", "--study", "paper-v3", "--a", "1e308", "--c", "1e308"], "cannot be evaluated there"),
    (["law", "predict", "--study", "paper-v3", "--a", "mme=1", "--c", "10"], "no value for mmbench_en"),
    (["law", "evaluate", "--study", "no-such-study"], "unknown study"),
])
def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, monkeypatch, args, needle):
    proc = run_inprocess(args, tmp_path, capsys, monkeypatch)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("rows, needle", [(3, "need 4"), (6, "same score")])
def test_cli_evaluate_refuses_small_or_constant_study_file(tmp_path, capsys, monkeypatch, rows, needle):
    lines = ["setting,benchmark,A,C,score"]
    for i in range(rows):
        score = 50.0 if needle == "same score" else 40.0 + 3 * i
        lines.append(f"s{i},mmbench_en,{-2 - 0.1 * i},{10 + 2 * i ** 1.5},{score}")
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "tiny.csv"
    path.write_text("\n".join(lines) + "\n")
    proc = run_inprocess(["law", "evaluate", "--study", str(path), "--format", "json"], tmp_path / "home", capsys, monkeypatch)
    assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout == "" and [p.name for p in folder.iterdir()] == ["tiny.csv"]


def test_law_fit_text_labels_interpolating_fits(tmp_path, capsys, monkeypatch):
    lines = ["setting,benchmark,A,C,score"] + [f"s{i},mme,{-2 - 0.3 * i},{5 + 4 * i + i * i},{900 + 60 * i - 5 * i * i}" for i in range(5)]
    path = tmp_path / "five.csv"
    path.write_text("\n".join(lines) + "\n")
    proc = run_inprocess(["law", "fit", "--study", str(path)], tmp_path, capsys, monkeypatch)
    assert proc.returncode == 0, proc.stderr
    assert "INTERPOLATING" in proc.stdout and "mme" in proc.stdout
    proc = run_inprocess(["law", "fit", "--study", str(path), "--format", "json"], tmp_path, capsys, monkeypatch)
    assert json.loads(proc.stdout)["benchmarks"]["mme"]["interpolating"] is True
    proc = run_inprocess(["law", "fit", "--study", "paper-v3", "--format", "json"], tmp_path, capsys, monkeypatch)
    assert not any(b["interpolating"] for b in json.loads(proc.stdout)["benchmarks"].values())


def test_cli_pipeline_place_uses_the_model_interval_and_flags(tmp_path, capsys, monkeypatch):
    proc = run_inprocess(["pipeline", "place", "--A", "-1.95", "--C", "18", "--model", "ridge", "--level", "0.9",
                          "--demo-scale", "--format", "json"], tmp_path, capsys, monkeypatch)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    expected = predict_setting(load_study("paper-v3"), -1.95, 18.0, "ridge", 0.9).table.set_index("benchmark")
    for row in rows:
        assert row["model"] == "ridge" and row["level"] == 0.9 and row["method_mismatch"] and not row["comparable"]
        assert row["lower"] == pytest.approx(expected.at[row["benchmark"], "lower"])
        assert row["upper"] == pytest.approx(expected.at[row["benchmark"], "upper"])


def test_predict_with_one_a_per_benchmark_equals_the_shared_a_case():
    study = load_study("paper-v3")
    shared = predict_setting(study, -1.95, 18.0, "ridge").table.set_index("benchmark")
    per = predict_setting(study, {b: -1.95 for b in study.benchmarks}, 18.0, "ridge").table.set_index("benchmark")
    assert per["predicted"].tolist() == pytest.approx(shared["predicted"].tolist())
    with pytest.raises(InputError, match="no value for"):
        predict_setting(study, {"mme": -1.95}, 18.0)


def test_cli_predict_per_benchmark_a_and_bad_pairs(tmp_path, capsys, monkeypatch):
    study = load_study("paper-v3")
    pairs = ",".join(f"{b}=-1.95" for b in study.benchmarks)
    proc = run_inprocess(["law", "predict", "--study", "paper-v3", "--a", pairs, "--c", "18", "--format", "json"],
                         tmp_path, capsys, monkeypatch)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["A"] == {b: -1.95 for b in study.benchmarks}
    proc = run_inprocess(["law", "predict", "--study", "paper-v3", "--a", "mme=x", "--c", "18"], tmp_path, capsys, monkeypatch)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --a value for mme is not a number")


def test_benchmark_groups_follow_the_study_when_it_records_them():
    from dataclasses import replace

    from engine.law import benchmark_groups

    study = load_study("paper-v3")
    assert benchmark_groups(study)["vision"] == ["mmbench_en", "mme", "ok_vqa", "seed_image"]
    own = replace(study, meta={**study.meta, "groups": {"mme": "perception", "ok_vqa": "knowledge", "mmmu_val": "knowledge"}})
    assert benchmark_groups(own) == {"vision": ["mmbench_en", "seed_image"],
                                     "ocr": ["textvqa_val", "vizwiz_vqa_val", "scienceqa_img"],
                                     "perception": ["mme"], "knowledge": ["mmmu_val", "ok_vqa"]}


def test_protocol_and_a_definition_are_compared_with_the_study(tmp_path, capsys, monkeypatch):
    study = load_study("paper-v3")
    assert predict_setting(study, -1.95, 18.0, c_protocol="paper-compat", a_definition="v3-loglik").mismatch == []
    other = predict_setting(study, -1.95, 18.0, c_protocol="default")
    assert other.mismatch == ["C protocol is 'default', the study's is 'paper-compat'"]
    from engine.pipeline import place_on_law

    table = place_on_law(study, "x", -1.95, 18.0, a_definition="v1-clip-ref")
    assert table["method_mismatch"].all() and "A definition" in table.attrs["mismatch"][0]
    proc = run_inprocess(["law", "predict", "--study", "paper-v3", "--a", "-1.95", "--c", "18", "--c-protocol", "default",
                          "--format", "json"], tmp_path, capsys, monkeypatch)
    data = json.loads(proc.stdout)
    assert proc.returncode == 0 and "method_mismatch" in data["flags"] and data["comparable"] is False


# Exact linear laws on a 3 x 3 grid of (A, C): the quadratic fits them exactly, every leave-one-out refit too, so the
# prediction at any (A, C) is the formula's value and the jackknife+ interval collapses onto it (hand-computable).
GRID_A, GRID_C = np.repeat([0.0, 1.0, 2.0], 3), np.tile([0.0, 5.0, 10.0], 3)
LAWS = {
    "my_frac": lambda a, c: 0.1 + 0.1 * a + 0.02 * c,  # scores 0.1 .. 0.5: a fraction, range [0, 1]
    "my_pct": lambda a, c: 10 + 10 * a + 2 * c,  # 10 .. 50: percent, range [0, 100]
    "my_elo": lambda a, c: 1000 + 100 * a + 10 * c,  # 1000 .. 1300: points, no known bound
    "my_delta": lambda a, c: -1 + 0.5 * a + 0.1 * c,  # -1 .. 1: signed, no known bound
}
UNSCORED = {"U_in": (1.5, 2.5), "U_far": (10.0, 10.0)}  # inside the grid; far right of it (extrapolated)


def _exact_study():
    import pandas as pd

    from engine.study import make_study

    names = [f"S{i}" for i in range(9)] + list(UNSCORED)
    a = np.r_[GRID_A, [v[0] for v in UNSCORED.values()]]
    c = np.r_[GRID_C, [v[1] for v in UNSCORED.values()]]
    scores = pd.DataFrame({b: np.r_[f(GRID_A, GRID_C), [np.nan] * len(UNSCORED)] for b, f in LAWS.items()}, index=names)
    return make_study("exact", pd.DataFrame({"setting": names, "A": a, "C": c}), scores)


# hand-computed: (predicted, clipped, valid range) per (setting, benchmark)
EXPECTED = {
    ("U_in", "my_frac"): (0.30, False, (0.0, 1.0)), ("U_far", "my_frac"): (1.0, True, (0.0, 1.0)),  # 1.3 -> 1
    ("U_in", "my_pct"): (30.0, False, (0.0, 100.0)), ("U_far", "my_pct"): (100.0, True, (0.0, 100.0)),  # 130 -> 100
    ("U_in", "my_elo"): (1175.0, False, None), ("U_far", "my_elo"): (2100.0, False, None),
    ("U_in", "my_delta"): (0.0, False, None), ("U_far", "my_delta"): (5.0, False, None),
}


@pytest.mark.parametrize("model", ["paper", "linear"])
def test_unknown_benchmarks_clip_only_on_a_bounded_scale(model):
    from engine.law import predict_unscored

    result = predict_unscored(_exact_study(), model, level=0.8)
    table = result.table.set_index(["setting", "benchmark"])
    assert set(table.index) == set(EXPECTED)
    for key, (value, clipped, bounds) in EXPECTED.items():
        row = table.loc[key]
        assert row["predicted"] == pytest.approx(value, abs=1e-6), key
        assert row["lower"] == pytest.approx(value, abs=1e-6) and row["upper"] == pytest.approx(value, abs=1e-6), key
        assert bool(row["clipped"]) is clipped, key
        assert bool(row["extrapolated"]) is (key[0] == "U_far"), key
        assert (row["range_low"], row["range_high"]) == (bounds or (-np.inf, np.inf)), key
        assert (row["model"], row["level"]) == (model, 0.8)
    one = predict_unscored(_exact_study(), model, benchmark="my_pct").table
    assert sorted(one["setting"]) == ["U_far", "U_in"] and set(one["benchmark"]) == {"my_pct"}


def test_placement_reports_the_valid_range_and_null_when_unbounded():
    placed = predict_setting(_exact_study(), 10.0, 10.0, "paper")
    out = placed.to_dict()["benchmarks"]
    assert out["my_frac"]["valid_range"] == [0.0, 1.0] and out["my_frac"]["predicted"] == pytest.approx(1.0)
    assert out["my_elo"]["valid_range"] == [None, None] and out["my_elo"]["predicted"] == pytest.approx(2100.0)
    assert out["my_delta"]["valid_range"] == [None, None] and not out["my_delta"]["clipped"]
    assert out["my_pct"]["clipped"] and "clipped" in placed.flags


def test_unscored_predictions_equal_predict_setting_at_their_a_and_c():
    from engine.law import predict_unscored

    study = load_study("paper-v3")
    names = study.setting_names[:2]
    scores = study.long.copy()
    scores.loc[scores["setting"].isin(names) & (scores["benchmark"] == "ok_vqa"), "score"] = np.nan
    from dataclasses import replace

    holed = replace(study, long=scores)
    table = predict_unscored(holed, "ridge", level=0.7).table
    assert sorted(table["setting"]) == sorted(names) and set(table["benchmark"]) == {"ok_vqa"}
    for row in table.itertuples():
        one = predict_setting(holed, row.A, row.C, "ridge", level=0.7).table.set_index("benchmark").loc["ok_vqa"]
        assert (row.predicted, row.lower, row.upper) == pytest.approx((one["predicted"], one["lower"], one["upper"]))


@pytest.mark.parametrize(("scores", "expected"), [
    ([0.2, 0.7], (0.0, 1.0)), ([0.0, 1.0], (0.0, 1.0)), ([12.0, 70.0], (0.0, 100.0)), ([0.5, 100.0], (0.0, 100.0)),
    ([-1.0, 1.0], None), ([-5.0, 100.0], None), ([-0.3, 0.4], None), ([900.0, 1210.0], None), ([3.0, 100.5], None),
    ([], None)])
def test_valid_range_of_an_unknown_benchmark_is_bounded_only_on_a_bounded_scale(scores, expected):
    from engine.law import valid_range

    assert valid_range("my_bench", scores) == (expected or (float("-inf"), float("inf")))
