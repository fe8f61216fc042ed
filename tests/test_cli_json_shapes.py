"""The JSON of ``correspondence evaluate`` and the ``policy`` commands, key by key and in order, against dicts
built here from the inputs (the typed results must serialise to exactly these documents)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.study import load_study


def run_json(args: list[str], capsys) -> dict:
    """``python -m engine ARGS --format json`` in this process."""
    from engine.cli import main

    assert main([*args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_correspondence_evaluate_json(isolated_home, capsys):
    from engine.correspondence import get_protocol, open_dataset
    from engine.encoders.registry import build_encoder

    data = run_json(["correspondence", "evaluate", "--dataset", "builtin", "--encoder", "pixels-8", "--limit", "12"],
                    capsys)
    pairs = open_dataset("builtin", "test").pairs("test", 12)
    images = len({p.src_id for p in pairs} | {p.trg_id for p in pairs})
    encoder = build_encoder("pixels-8")
    assert list(data) == ["pck", "protocol", "stats", "encoder", "dataset", "result_id"]
    assert list(data["stats"]) == ["pairs", "pairs_computed", "pairs_resumed", "images", "images_encoded", "forwards",
                                   "cache_hits", "cache_evicted", "seconds", "encode_seconds", "device", "precision",
                                   "backend"]
    stats = {k: v for k, v in data["stats"].items() if k not in ("forwards", "seconds", "encode_seconds")}
    assert stats == {"pairs": 12, "pairs_computed": 12, "pairs_resumed": 0, "images": images, "images_encoded": images,
                     "cache_hits": 0, "cache_evicted": 0, "device": "cpu", "precision": "fp32", "backend": "local"}
    assert data["stats"]["forwards"] >= 1 and 0 <= data["stats"]["encode_seconds"] <= data["stats"]["seconds"]
    assert data["encoder"] == {"name": "pixels-8", "weights_hash": encoder.weights_hash(), "layer": "default",
                               "precision": "fp32"}
    assert list(data["encoder"]) == ["name", "weights_hash", "layer", "precision"]
    assert data["dataset"] == {"spec": "builtin", "key": open_dataset("builtin", "test").key, "split": "test", "limit": 12}
    assert list(data["dataset"]) == ["spec", "key", "split", "limit"]
    assert data["protocol"] == json.loads(json.dumps(get_protocol("default").describe()))
    assert {"per_image", "per_point", "per_category"} <= set(data["pck"])
    listed = run_json(["correspondence", "results"], capsys)["results"]
    assert [r["id"] for r in listed] == [data["result_id"]] and listed[0]["pck"] == data["pck"]


def _toy_expected_summary(n: int, budget: int, trials: int) -> dict:
    """With the top-T covering every setting, each trial's refit (2+ settings) ranks the best setting in it."""
    return {"recall": 1.0, "random_recall": budget / n, "random_sampling_recall": 1.0, "mean_runs": 2.0,
            "runs_distribution": {"2": trials}, "n_candidates": n}


def test_policy_simulate_json(isolated_home, capsys):
    study = load_study("paper-v3")
    data = run_json(["policy", "simulate", "--study", "paper-v3", "--budget", "4", "--trials", "20", "--top", "15",
                     "--seed", "3"], capsys)
    assert list(data) == ["study", "benchmarks", "budget", "trials", "seed", "top", "variant", "metric", "strategy",
                          "mean_recall"]
    assert {k: v for k, v in data.items() if k != "benchmarks"} == {
        "study": "paper-v3", "budget": 4, "trials": 20, "seed": 3, "top": 15, "variant": "paper", "metric": "at-budget",
        "strategy": "region", "mean_recall": 1.0}
    assert list(data["benchmarks"]) == study.benchmarks
    for bench, summary in data["benchmarks"].items():
        names, _, _, score = study.arrays(bench)
        assert list(summary) == ["recall", "random_recall", "random_sampling_recall", "optimum", "mean_runs",
                                 "runs_distribution", "n_candidates"]
        assert summary == {**_toy_expected_summary(len(names), 4, 20), "optimum": names[int(np.argmax(score))]}


def test_policy_simulate_uncertainty_json_names_its_law_model(isolated_home, capsys):
    data = run_json(["policy", "simulate", "--study", "paper-v3", "--benchmark", "mme", "--budget", "3",
                     "--trials", "5", "--strategy", "uncertainty", "--level", "0.9"], capsys)
    assert list(data)[-3:] == ["mean_recall", "law_model", "level"]
    assert (data["law_model"], data["level"], data["strategy"]) == ("paper", 0.9, "uncertainty")
    assert list(data["benchmarks"]) == ["mme"]


def test_policy_curve_json(isolated_home, capsys):
    n = len(load_study("paper-v3").arrays("mme")[0])
    data = run_json(["policy", "curve", "--study", "paper-v3", "--benchmark", "mme", "--budgets", "2,5", "--trials",
                     "10", "--top", "15"], capsys)
    assert data == {"study": "paper-v3", "trials": 10, "seed": 0, "top": 15, "variant": "paper", "metric": "at-budget",
                    "strategy": "region", "curve": [
                        {"benchmark": "mme", "budget": k, "recall": 1.0, "random_recall": k / n,
                         "random_sampling_recall": 1.0, "variant": "paper", "metric": "at-budget", "strategy": "region"}
                        for k in (2, 5)]}
    assert list(data["curve"][0]) == ["benchmark", "budget", "recall", "random_recall", "random_sampling_recall",
                                      "variant", "metric", "strategy"]


def test_policy_compare_json(isolated_home, capsys):
    n = len(load_study("paper-v3").arrays("mme")[0])
    data = run_json(["policy", "compare", "--study", "paper-v3", "--benchmark", "mme", "--budgets", "3", "--trials",
                     "10", "--top", "15"], capsys)
    assert list(data) == ["study", "trials", "seed", "top", "variant", "benchmark", "law_model", "level", "table",
                          "verdict"]
    assert {k: v for k, v in data.items() if k not in ("table", "verdict")} == {
        "study": "paper-v3", "trials": 10, "seed": 0, "top": 15, "variant": "paper", "benchmark": "mme",
        "law_model": "paper", "level": 0.8}
    assert data["table"] == [{"strategy": s, "metric": m, "budget": 3, "recall": 1.0, "chance": 3 / n}
                             for m in ("at-budget", "first-hit") for s in ("region", "random", "greedy", "uncertainty")]
    assert list(data["verdict"]) == ["3"] and data["verdict"]["3"].startswith("With 3 finetunes no strategy wins")


def test_policy_recommend_json(isolated_home, capsys):
    from engine.policy import recommend

    study = load_study("paper-v3")
    names, _, _, score = study.arrays("mme")
    finetuned = {names[i]: float(score[i]) for i in (0, 3, 7, 11)}
    text = ",".join(f"{k}={v!r}" for k, v in finetuned.items())
    data = run_json(["policy", "recommend", "--study", "paper-v3", "--benchmark", "mme", "--finetuned", text,
                     "--linear"], capsys)
    assert list(data) == ["benchmark", "next", "grid_level", "alternative", "alternative_predicted", "top", "loo_rmse",
                          "feature_set", "interpolating", "warning", "flagged", "ranking"]
    rec = recommend(study, "mme", finetuned, feature_set="ac_linear")
    ranking = rec.ranking
    assert data["benchmark"] == "mme" and data["feature_set"] == "ac_linear" and data["flagged"] == {}
    assert data["next"] == rec.next_setting and data["grid_level"] == rec.level
    assert data["alternative"] == rec.alternative and data["alternative_predicted"] == pytest.approx(rec.alternative_predicted)
    assert data["top"] == ranking["setting"].head(3).tolist() and data["loo_rmse"] == pytest.approx(rec.loo_rmse)
    assert data["interpolating"] is False and data["warning"] is None  # 4 finetuned > 3 parameters of the linear law
    assert [row["setting"] for row in data["ranking"]] == ranking["setting"].tolist()
    assert set(data["ranking"][0]) == set(ranking.columns)
