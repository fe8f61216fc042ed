"""AppTest of the policy page: the strategy verdict, human names on plots, the runs axis and the cost tied to recall."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.policy import compare_strategies, cost_comparison
from engine.study import load_study

ROOT = Path(__file__).resolve().parent.parent
PAGE_DEFAULT = ("region", "random", "greedy")  # the optimistic strategy is opt-in on the page


@pytest.fixture(autouse=True)
def _fresh_store(isolated_home):
    return isolated_home


def _page(**state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/policy.py"), default_timeout=120)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _values(array) -> list:
    """A plotly JSON array: a list, or ``{"dtype", "bdata"}`` (base64 of the raw values)."""
    if isinstance(array, dict):
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def _texts(figure: dict) -> list[str]:
    out = [t.get("name", "") for t in figure["data"]]
    out += [a.get("text", "") for a in figure["layout"].get("annotations", [])]
    out += [str(figure["layout"].get(ax, {}).get("title", {}).get("text", "")) for ax in figure["layout"]
            if ax.startswith(("xaxis", "yaxis"))]
    out.append(figure["layout"].get("title", {}).get("text", ""))
    return out


def test_verdict_names_the_strategy_from_the_simulation():
    at = _page(policy_trials=100)
    expected = compare_strategies(load_study("paper-v3"), trials=100, seed=0, top=3, strategies=PAGE_DEFAULT).verdict(3)
    assert any(expected in m.value for m in at.markdown), [m.value for m in at.markdown]
    at.slider(key="policy_budget").set_value(6).run()
    expected6 = compare_strategies(load_study("paper-v3"), trials=100, seed=0, top=3, strategies=PAGE_DEFAULT).verdict(6)
    assert any(expected6 in m.value for m in at.markdown)


def test_plots_use_human_names_and_the_runs_axis_says_what_it_counts():
    at = _page(policy_trials=60)
    figures = _figures(at)
    texts = [t for f in figures for t in _texts(f)]
    for internal in ("random_sampling_recall", "random_recall", "ac_poly", "AC policy (paper)", "at-budget,"):
        assert not any(internal in t for t in texts), internal
    assert "region sampling (the paper's AC policy)" in texts and "random order" in texts
    runs = next(f for f in figures if "first ranks" in f["layout"]["title"]["text"])
    assert runs["layout"]["yaxis"]["title"]["text"] == "simulated runs, summed over 8 benchmarks (8 × 60)"
    at.selectbox(key="policy_benchmark").set_value("ok_vqa").run()
    runs = next(f for f in _figures(at) if "first ranks" in f["layout"]["title"]["text"])
    assert runs["layout"]["yaxis"]["title"]["text"] == "simulated runs (of 60)"
    assert [len(_values(t["x"])) for t in runs["data"]] == [60, 60, 60]


def test_gpu_hours_saved_is_tied_to_the_recall_reached():
    at = _page(policy_trials=80)
    saved = next(m for m in at.metric if m.label == "GPU-hours saved")
    comparison = compare_strategies(load_study("paper-v3"), trials=80, seed=0, top=3, strategies=PAGE_DEFAULT)
    recalls = comparison.at(3, "at-budget")
    # the saving assumes A for every candidate: the recall it buys is the best law-ranked order's, not random order's
    # (which needs no A, and is quoted beside it)
    best = max(recalls[s] for s in recalls if s != "random")
    cost = cost_comparison(n_candidates=15, budget=3)
    assert saved.value == f"{100 * cost['gpu_hours_savings']:.0f} %"
    assert saved.delta == f"finds the best setting in {best:.0%} of runs"
    assert any(f"Random order, which needs no A (no stage-1 runs: 3 finetunes only), finds it in "
               f"{recalls['random']:.0%}" in c.value for c in at.caption)
    at.number_input(key="cost_candidates").set_value(40).run()
    saved = next(m for m in at.metric if m.label == "GPU-hours saved")
    assert not saved.delta and any("set Candidates to 15" in c.value for c in at.caption)


def test_optimistic_strategy_is_added_with_its_law_model():
    at = _page(policy_trials=20, policy_benchmark="ok_vqa")
    assert at.selectbox(key="policy_law_model").disabled
    at.checkbox(key="policy_optimistic").check().run()
    assert not at.exception, [e.value for e in at.exception]
    recall = next(df.value for df in at.dataframe if "Recall@T (simulated)" in df.value.columns)
    assert "optimistic (upper bound of the law's interval)" in set(recall["finetune order"])
    texts = [t for f in _figures(at) for t in _texts(f)]
    assert "optimistic (upper bound of the law's interval)" in texts


def test_optimistic_strategy_waits_for_one_benchmark():
    at = _page(policy_trials=20)
    at.checkbox(key="policy_optimistic").check().run()
    assert not at.exception and any("pick a benchmark above" in i.value for i in at.info)
    recall = next(df.value for df in at.dataframe if "Recall@T (simulated)" in df.value.columns)
    assert "optimistic (upper bound of the law's interval)" not in set(recall["finetune order"])
