"""CLI contracts of ``law``, ``policy`` and ``study`` (subprocess): JSON shapes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FEATURE_SETS = {"ac_poly", "a_poly", "c_poly", "ac_linear", "a_linear", "c_linear"}


def run(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAW_EXPLORER_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def run_json(args: list[str], home: Path) -> dict:
    proc = run([*args, "--format", "json"], home)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run_inprocess(args: list[str], home: Path, capsys, monkeypatch) -> subprocess.CompletedProcess:
    """The same ``main()`` as ``python -m engine`` without a new interpreter (keeps this file fast)."""
    from engine.cli import main

    monkeypatch.setenv("LAW_EXPLORER_HOME", str(home))
    code = main(args)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_law_fit_json_contract(tmp_path):
    data = run_json(["law", "fit", "--study", "paper-v3"], tmp_path)
    assert data["study"] == "paper-v3" and data["n_settings"] == 15
    assert len(data["benchmarks"]) == 8
    mme = data["benchmarks"]["mme"]
    assert set(mme["r2"]) == FEATURE_SETS
    for key in ("loo_r2", "loo_rmse", "random_r2", "coef"):
        assert key in mme
    assert set(data["mean_r2"]) == {"vision", "ocr"} and set(data["mean_r2"]["vision"]) == FEATURE_SETS
    assert 0.9401 < data["mean_r2"]["vision"]["ac_poly"] < 0.9411
    text = run(["law", "fit", "--study", "paper-v3"], tmp_path)
    assert text.returncode == 0 and "ac_poly" in text.stdout and "vision" in text.stdout


def test_policy_simulate_json_contract_and_determinism(tmp_path):
    args = ["policy", "simulate", "--study", "paper-v3", "--budget", "3", "--trials", "100", "--seed", "5", "--top", "3"]
    one = run_json(args, tmp_path)
    assert one == run_json(args, tmp_path)
    assert (one["budget"], one["trials"], one["seed"], one["top"], one["variant"]) == (3, 100, 5, 3, "paper")
    for entry in one["benchmarks"].values():
        assert {"recall", "random_recall", "optimum", "mean_runs"} <= set(entry)
    measured = run_json([*args, "--variant", "measured", "--benchmark", "mme"], tmp_path)
    assert list(measured["benchmarks"]) == ["mme"] and measured["variant"] == "measured"


def test_policy_recommend_and_cost(tmp_path):
    rec = run_json(["policy", "recommend", "--study", "paper-v3", "--benchmark", "mmbench_en",
                    "--finetuned", "CLIP336=64.3,DINOv2=58.5"], tmp_path)
    assert rec["next"] not in ("CLIP336", "DINOv2") and len(rec["top"]) == 3
    cost = run_json(["policy", "cost"], tmp_path)
    assert round(100 * cost["trainable_savings"], 1) == 99.7


def test_study_commands(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text("setting,A_loglik,C_pck10,mme,ok_vqa\nS1,-1.9,15,1500,50\nS2,-2.5,20,1300,45\nS3,-3.5,5,900,30\n")
    imported = run_json(["study", "import", str(csv), "--name", "mine"], tmp_path)
    assert imported["n_settings"] == 3
    names = [s["name"] for s in run_json(["study", "list"], tmp_path)["studies"]]
    assert names == ["paper-v3", "mine"]
    shown = run_json(["study", "show", "mine"], tmp_path)
    assert shown["benchmarks"] == ["mme", "ok_vqa"]
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"results": {"mme": {"mme_perception_score,none": 1400.0}}}))
    added = run_json(["study", "add-lmms-eval", "--study", "mine", "--setting", "S4", str(results)], tmp_path)
    assert added["scores"] == {"mme": 1400.0}
    assert_one_line_error(run(["study", "add-lmms-eval", "--study", "paper-v3", "--setting", "X", str(results)], tmp_path), "copy it first")
    fit = run_json(["law", "fit", "--study", "mine"], tmp_path)
    assert set(fit["benchmarks"]) == {"mme", "ok_vqa"}
    assert run_json(["study", "delete", "mine"], tmp_path)["deleted"] == "mine"


def test_policy_metric_and_strategy_flags(tmp_path, capsys, monkeypatch):
    base = ["policy", "simulate", "--study", "paper-v3", "--budget", "4", "--trials", "80", "--format", "json"]
    default = json.loads(run_inprocess(base, tmp_path, capsys, monkeypatch).stdout)
    assert (default["metric"], default["strategy"]) == ("at-budget", "region")
    first = json.loads(run_inprocess([*base, "--metric", "first-hit"], tmp_path, capsys, monkeypatch).stdout)
    for bench, entry in first["benchmarks"].items():
        assert entry["recall"] >= default["benchmarks"][bench]["recall"]
        assert set(entry) == set(default["benchmarks"][bench])
    rand = json.loads(run_inprocess([*base, "--strategy", "random"], tmp_path, capsys, monkeypatch).stdout)
    assert all(e["recall"] == e["random_sampling_recall"] for e in rand["benchmarks"].values())
    curve = run_inprocess(["policy", "curve", "--study", "paper-v3", "--budgets", "3", "--trials", "40",
                           "--strategy", "greedy", "--metric", "first-hit", "--format", "json"], tmp_path, capsys,
                          monkeypatch)
    data = json.loads(curve.stdout)
    assert (data["metric"], data["strategy"]) == ("first-hit", "greedy") and len(data["curve"]) == 8


def test_policy_compare(tmp_path, capsys, monkeypatch):
    out = run_inprocess(["policy", "compare", "--study", "paper-v3", "--budgets", "3,4", "--trials", "60",
                         "--benchmark", "seed_image", "--format", "json"], tmp_path, capsys, monkeypatch)
    data = json.loads(out.stdout)
    strategies = ("region", "random", "greedy", "uncertainty")
    assert {(r["strategy"], r["metric"], r["budget"]) for r in data["table"]} == {
        (s, m, k) for s in strategies for m in ("at-budget", "first-hit") for k in (3, 4)}
    for strategy in ("greedy", "uncertainty"):
        sim = json.loads(run_inprocess(["policy", "simulate", "--study", "paper-v3", "--budget", "4", "--trials", "60",
                                        "--benchmark", "seed_image", "--strategy", strategy, "--metric", "first-hit",
                                        "--format", "json"], tmp_path, capsys, monkeypatch).stdout)
        row = next(r for r in data["table"] if (r["strategy"], r["metric"], r["budget"]) == (strategy, "first-hit", 4))
        assert row["recall"] == pytest.approx(sim["mean_recall"])
    assert set(data["verdict"]) == {"3", "4"} and all("finetunes" in v for v in data["verdict"].values())


def test_policy_curve_inprocess(tmp_path, capsys, monkeypatch):
    out = run_inprocess(["policy", "curve", "--study", "paper-v3", "--budgets", "2,15", "--trials", "50",
                         "--variant", "measured", "--format", "json"], tmp_path, capsys, monkeypatch)
    curve = json.loads(out.stdout)["curve"]
    assert len(curve) == 16 and all(r["recall"] == 1.0 for r in curve if r["budget"] == 15)


BAD = [
    (["policy", "curve", "--study", "paper-v3", "--budgets", "1"], "outside 2..15"),
    (["law", "fit", "--study", "no-such-study"], "unknown study"),
    (["policy", "simulate", "--study", "paper-v3", "--budget", "99"], "budget must be between"),
    (["policy", "simulate", "--study", "paper-v3", "--benchmark", "gqa"], "unknown benchmark"),
    (["policy", "recommend", "--study", "paper-v3", "--benchmark", "mme", "--finetuned", "CLIP336=abc"], "not a number"),
    (["policy", "recommend", "--study", "paper-v3", "--benchmark", "mme", "--finetuned", "Foo=1"], "not a setting"),
    (["policy", "cost", "--budget", "40"], "budget"),
    (["study", "show", "nothing"], "unknown study"),
    (["study", "delete", "paper-v3"], "cannot be deleted"),
    (["policy", "simulate", "--study", "paper-v3", "--metric", "hit"], "unknown metric 'hit'"),
    (["policy", "curve", "--study", "paper-v3", "--strategy", "bandit"], "unknown strategy 'bandit'"),
    (["policy", "compare", "--study", "paper-v3", "--budgets", "3,99", "--trials", "10"], "budget 99 is outside 2..15 (the candidate"),
    (["policy", "compare", "--study", "paper-v3", "--budgets", "x"], "--budgets must be comma-separated"),
]


@pytest.mark.parametrize("args,needle", BAD)
def test_bad_input_one_line(tmp_path, args, needle, capsys, monkeypatch):
    assert_one_line_error(run_inprocess(args, tmp_path, capsys, monkeypatch), needle)


def test_bad_input_one_line_subprocess(tmp_path):
    assert_one_line_error(run(["policy", "simulate", "--study", "paper-v3", "--budget", "99"], tmp_path), "budget must be between")


@pytest.mark.parametrize("content,needle", [
    (b"", "empty"),
    (b"\x00\x01\x02", "binary"),
    (b"setting,A_loglik,C_pck10,mme\nS1,1,2,3\nS1,2,3,4\nS3,3,1,5\n", "duplicate setting"),
    (b"setting,A_loglik,C_pck10,mme\nS1,1,2,3\nS2,2,3,4\n", "too few settings"),
    (b"setting,A_loglik,C_pck10,mme\nS1,1,2,3\nS2,nan,3,4\nS3,3,1,5\n", "missing value"),
])
def test_bad_import_writes_nothing(tmp_path, content, needle, capsys, monkeypatch):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    assert_one_line_error(run_inprocess(["study", "import", str(path), "--name", "bad"], tmp_path, capsys, monkeypatch), needle)
    listed = run_inprocess(["study", "list", "--format", "json"], tmp_path, capsys, monkeypatch)
    assert [s["name"] for s in json.loads(listed.stdout)["studies"]] == ["paper-v3"]


def test_import_missing_file(tmp_path):
    assert_one_line_error(run(["study", "import", str(tmp_path / "nope.csv"), "--name", "x"], tmp_path), "file not found")


def test_import_format_option_and_export(tmp_path, reference_dir, capsys, monkeypatch):
    path = str(reference_dir / "law_v1_released_ablations.csv")
    done = run_inprocess(["study", "import", path, "--name", "v1", "--format", "released"], tmp_path, capsys, monkeypatch)
    assert done.returncode == 0 and "13 settings" in done.stdout
    out = run_inprocess(["study", "import", path, "--name", "v1b", "--input-format", "released", "--format", "json"],
                        tmp_path, capsys, monkeypatch)
    assert json.loads(out.stdout)["n_settings"] == 13
    fit = run_inprocess(["law", "fit", "--study", "v1", "--format", "json"], tmp_path, capsys, monkeypatch)
    assert abs(json.loads(fit.stdout)["mean_r2"]["vision"]["ac_poly"] - 0.9572) < 0.0005
    exported = tmp_path / "v1.json"
    assert run_inprocess(["study", "export", "v1", "--out", str(exported)], tmp_path, capsys, monkeypatch).returncode == 0
    again = run_inprocess(["study", "import", str(exported), "--name", "v1c"], tmp_path, capsys, monkeypatch)
    assert again.returncode == 0
