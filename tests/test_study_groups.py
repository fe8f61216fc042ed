"""Any benchmark, grouped: registry metadata, unknown benchmarks, groups on import/edit, means per group."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.preprocessing import PolynomialFeatures

from engine.benchmarks import benchmark_info, parse_group_assignments
from engine.errors import InputError
from engine.law import fit_study
from engine.plots import tables
from engine.study import (
    bundled_study,
    groups_from_table,
    groups_table,
    parse_study_file,
    scores_from_lmms_eval,
    study_from_json,
    study_groups,
    study_to_json,
    study_to_tidy,
)

SETTINGS = [("S1", -1.9, 15.0), ("S2", -2.5, 20.0), ("S3", -3.5, 5.0), ("S4", -2.0, 25.0), ("S5", -3.0, 12.0)]
SCORES = {"gqa": [61.0, 58.0, 40.0, 60.0, 50.0], "my_bench": [0.71, 0.62, 0.33, 0.74, 0.5],
          "docvqa_val": [30.0, 21.0, 9.0, 26.0, 15.0], "elo_arena": [1210.0, 1100.0, 900.0, 1150.0, 1000.0]}


def _tidy(groups: dict[str, str] | None = None) -> str:
    rows = ["setting,benchmark,A,C,score" + (",group" if groups is not None else "")]
    for i, (name, a, c) in enumerate(SETTINGS):
        for bench, values in SCORES.items():
            extra = f",{groups.get(bench, '')}" if groups is not None else ""
            rows.append(f"{name},{bench},{a},{c},{values[i]}{extra}")
    return "\n".join(rows) + "\n"


def _oracle_r2(bench: str) -> float:
    a = np.array([s[1] for s in SETTINGS])
    c = np.array([s[2] for s in SETTINGS])
    y = np.array(SCORES[bench])
    X = PolynomialFeatures(2).fit_transform(np.c_[(a - a.min()) / np.ptp(a), (c - c.min()) / np.ptp(c)])
    return r2_score(y, LinearRegression().fit(X, y).predict(X))


def test_known_and_unknown_benchmark_metadata():
    gqa = benchmark_info("gqa")
    assert (gqa.label, gqa.group, gqa.metric, gqa.known) == ("GQA", "vision", "exact_match", True)
    fraction = benchmark_info("my_bench", [0.2, 0.9])
    assert (fraction.label, fraction.group, fraction.known, fraction.max_score, fraction.unit) == (
        "my_bench", "other", False, 1.0, "")
    percent = benchmark_info("my_bench", [12.0, 88.5, float("nan")])
    assert (percent.max_score, percent.unit) == (100.0, "%")
    points = benchmark_info("elo_arena", [900.0, 1210.0])
    assert (points.max_score, points.unit) == (1210.0, "")
    assert tables.score_unit("mme") == "" and tables.score_unit("gqa") == "%"


def test_tidy_import_with_group_column_and_default_other():
    study = parse_study_file(_tidy({"my_bench": "reasoning", "gqa": "vision"}).encode(), "any")
    assert study.benchmarks == list(SCORES)
    assert study_groups(study) == {"vision": ["gqa"], "ocr": ["docvqa_val"], "reasoning": ["my_bench"],
                                   "other": ["elo_arena"]}
    plain = parse_study_file(_tidy().encode(), "any")
    assert plain.groups["other"] == ["my_bench", "elo_arena"]


def test_group_means_follow_the_study_groups_against_sklearn():
    study = parse_study_file(_tidy({"my_bench": "mine", "elo_arena": "mine"}).encode(), "any")
    report = fit_study(study, random_trials=5)
    assert report.mean_r2["mine"]["ac_poly"] == pytest.approx(np.mean([_oracle_r2("my_bench"), _oracle_r2("elo_arena")]))
    assert report.mean_r2["vision"]["ac_poly"] == pytest.approx(_oracle_r2("gqa"))
    assert report.mean_r2["ocr"]["ac_poly"] == pytest.approx(_oracle_r2("docvqa_val"))
    head = tables.headline(report, study.name)
    assert list(head.members) == ["vision", "ocr", "mine"] and head.members["mine"] == ["my_bench", "elo_arena"]


def test_paper_groups_can_be_moved_and_json_keeps_vision_ocr():
    study = bundled_study()
    base = fit_study(study, random_trials=5)
    moved = study.with_groups({"mme": "ocr"})
    report = fit_study(moved, random_trials=5)
    ocr = [base.fits[b]["ac_poly"].r2 for b in ("mme", "mmmu_val", "textvqa_val", "vizwiz_vqa_val", "scienceqa_img")]
    assert report.mean_r2["ocr"]["ac_poly"] == pytest.approx(np.mean(ocr))
    assert set(report.to_dict()["mean_r2"]) == {"vision", "ocr"}
    only_other = parse_study_file(_tidy({b: "other" for b in SCORES}).encode(), "o")
    assert only_other.groups == {"other": list(SCORES)}
    assert {"vision", "ocr", "other"} == set(fit_study(only_other, random_trials=5).to_dict()["mean_r2"])
    assert moved.content_hash() != study.content_hash()
    assert study.with_groups({"mme": "vision"}).content_hash() == study.content_hash()


def test_groups_survive_json_and_tidy_round_trips():
    study = parse_study_file(_tidy({"my_bench": "reasoning"}).encode(), "any")
    again = study_from_json(study_to_json(study), "json", "any")
    assert again.groups == study.groups and again.content_hash() == study.content_hash()
    tidy = study_to_tidy(study)
    assert list(tidy.columns[:6]) == ["setting", "benchmark", "A", "C", "score", "group"]
    back = parse_study_file(tidy.to_csv(index=False).encode(), "any")
    assert back.groups == study.groups and back.content_hash() == study.content_hash()


@pytest.mark.parametrize("groups,match", [
    ({"gqa": "9lives"}, "invalid group name '9lives'"),
    ({"gqa": "a b"}, "invalid group name"),
])
def test_bad_group_column(groups, match):
    with pytest.raises(InputError, match=match):
        parse_study_file(_tidy(groups).encode(), "any")


def test_conflicting_group_rows_and_bad_json_groups():
    text = _tidy({"gqa": "vision"}).replace("S2,gqa,-2.5,20.0,58.0,vision", "S2,gqa,-2.5,20.0,58.0,ocr")
    with pytest.raises(InputError, match="benchmark 'gqa' is in group 'vision' \\(row 2\\) and 'ocr' \\(row 6\\)"):
        parse_study_file(text.encode(), "any")
    payload = json.loads(study_to_json(bundled_study()))
    payload["meta"]["groups"] = {"nope": "vision"}
    with pytest.raises(InputError, match="group given for unknown benchmark 'nope'"):
        parse_study_file(json.dumps(payload).encode(), "x")
    payload["meta"]["groups"] = ["vision"]
    with pytest.raises(InputError, match="must map benchmark names"):
        parse_study_file(json.dumps(payload).encode(), "x")


@pytest.mark.parametrize("text,match", [
    ("gqa", "not BENCHMARK=GROUP"),
    ("gqa=", "not BENCHMARK=GROUP"),
    ("gqa=vision,gqa=ocr", "two groups"),
    ("../x=vision", "is not allowed"),
])
def test_parse_group_assignments_bad(text, match):
    with pytest.raises(InputError, match=match):
        parse_group_assignments(text)


def test_parse_group_assignments_good():
    assert parse_group_assignments(["gqa=vision,my_bench=reasoning", "docvqa_val=ocr"]) == {
        "gqa": "vision", "my_bench": "reasoning", "docvqa_val": "ocr"}


def test_groups_table_edit():
    study = parse_study_file(_tidy().encode(), "any")
    table = groups_table(study)
    assert table["label"].tolist() == ["GQA", "my_bench", "DocVQA (val, ANLS)", "elo_arena"]
    table.loc[table["benchmark"] == "my_bench", "group"] = "reasoning"
    assert groups_from_table(study, table).groups["reasoning"] == ["my_bench"]
    blank = table.copy()
    blank.loc[0, "group"] = None
    with pytest.raises(InputError, match="benchmark 'gqa' has no group"):
        groups_from_table(study, blank)
    renamed = table.copy()
    renamed.loc[0, "benchmark"] = "gqa2"
    with pytest.raises(InputError, match="cannot be added, removed or renamed"):
        groups_from_table(study, renamed)


def test_lmms_eval_any_task():
    results = {"results": {
        "pope": {"pope_accuracy,none": 0.86, "pope_precision,none": 0.9, "pope_f1_score,none": 0.85},
        "my_task": {"alias": "my_task", "acc,none": 0.42, "acc_stderr,none": 0.01},
        "group_header": {"alias": "group_header"},
    }}
    assert scores_from_lmms_eval(results) == pytest.approx({"pope": 86.0, "my_task": 0.42})


def _cli(args, tmp_path, capsys, monkeypatch):
    from engine.cli import main

    monkeypatch.setenv("LAW_EXPLORER_HOME", str(tmp_path))
    code = main(args)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def _stored(tmp_path, capsys, monkeypatch) -> list[str]:
    listed = _cli(["study", "list", "--format", "json"], tmp_path, capsys, monkeypatch)
    return [s["name"] for s in json.loads(listed.stdout)["studies"]]


@pytest.mark.parametrize("group_arg,needle", [
    ("gqa", "not BENCHMARK=GROUP"),
    ("nope=vision", "group given for unknown benchmark 'nope'"),
    ("gqa=1x", "invalid group name"),
])
def test_cli_import_bad_group_writes_nothing(tmp_path, capsys, monkeypatch, group_arg, needle):
    path = tmp_path / "any.csv"
    path.write_text(_tidy())
    proc = _cli(["study", "import", str(path), "--name", "any", "--group", group_arg], tmp_path, capsys, monkeypatch)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
    assert _stored(tmp_path, capsys, monkeypatch) == ["paper-v3"]


def test_cli_import_groups_fit_and_edit(tmp_path, capsys, monkeypatch):
    path = tmp_path / "any.csv"
    path.write_text(_tidy())
    done = _cli(["study", "import", str(path), "--name", "any", "--group", "my_bench=mine",
                 "--group", "elo_arena=mine,docvqa_val=vision", "--format", "json"], tmp_path, capsys, monkeypatch)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["groups"] == {"vision": ["gqa", "docvqa_val"], "mine": ["my_bench", "elo_arena"]}
    fit = json.loads(_cli(["law", "fit", "--study", "any", "--format", "json"], tmp_path, capsys, monkeypatch).stdout)
    assert fit["mean_r2"]["mine"]["ac_poly"] == pytest.approx(np.mean([_oracle_r2("my_bench"), _oracle_r2("elo_arena")]))
    assert fit["mean_r2"]["ocr"]["ac_poly"] is None
    changed = _cli(["study", "groups", "any", "--set", "gqa=scenes", "--format", "json"], tmp_path, capsys, monkeypatch)
    assert json.loads(changed.stdout)["benchmark_groups"]["gqa"] == "scenes"
    bad = _cli(["study", "groups", "any", "--set", "zzz=vision"], tmp_path, capsys, monkeypatch)
    assert bad.returncode == 2 and "unknown benchmark 'zzz'" in bad.stderr
    shown = json.loads(_cli(["study", "groups", "any", "--format", "json"], tmp_path, capsys, monkeypatch).stdout)
    assert shown["groups"]["scenes"] == ["gqa"]
    ro = _cli(["study", "groups", "paper-v3", "--set", "mme=ocr"], tmp_path, capsys, monkeypatch)
    assert ro.returncode == 2 and "read-only" in ro.stderr
    out = tmp_path / "any-export.csv"
    assert _cli(["study", "export", "any", "--to", "csv", "--out", str(out)], tmp_path, capsys, monkeypatch).returncode == 0
    assert pd.read_csv(out).groupby("benchmark")["group"].first().to_dict()["gqa"] == "scenes"


def test_cli_add_lmms_eval_unknown_task(tmp_path, capsys, monkeypatch):
    path = tmp_path / "any.csv"
    path.write_text(_tidy())
    assert _cli(["study", "import", str(path), "--name", "any"], tmp_path, capsys, monkeypatch).returncode == 0
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"results": {"new_bench": {"score,none": 71.5}}}))
    added = _cli(["study", "add-lmms-eval", "--study", "any", "--setting", "S1", str(results), "--format", "json"],
                 tmp_path, capsys, monkeypatch)
    assert added.returncode == 0, added.stderr
    data = json.loads(added.stdout)
    assert data["scores"] == {"new_bench": 71.5} and "new_bench" in data["groups"]["other"]
    results.write_text(json.dumps({"results": {"multi": {"a,none": 1.0, "b,none": 2.0}}}))
    bad = _cli(["study", "add-lmms-eval", "--study", "any", "--setting", "S1", str(results)], tmp_path, capsys, monkeypatch)
    assert bad.returncode == 2 and "several metrics (a, b)" in bad.stderr


@pytest.mark.parametrize("name", ["../etc", "a..b", "", " ", "x" * 81, "a/b", "-x", "a b"])
def test_bad_benchmark_names(name):
    from engine.benchmarks import check_benchmark_name

    with pytest.raises(InputError, match="is not allowed"):
        check_benchmark_name(name)


def test_valid_range_of_unknown_benchmarks_follows_their_scale():
    from engine.law import valid_range

    assert valid_range("mme") == (0.0, 2000.0) and valid_range("gqa") == (0.0, 100.0)
    assert valid_range("my_bench") == (float("-inf"), float("inf"))
    assert valid_range("my_bench", [0.2, 0.7]) == (0.0, 1.0)
    assert valid_range("my_bench", [12.0, 70.0]) == (0.0, 100.0)
    assert valid_range("elo_arena", [900.0, 1210.0]) == (float("-inf"), float("inf"))
