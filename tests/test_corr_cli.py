"""CLI contracts of ``python -m engine correspondence ...`` through a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAW_EXPLORER_HOME": str(home), "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "engine", "correspondence", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_evaluate_json_contract_and_cache(tmp_path):
    args = ["evaluate", "--dataset", "builtin", "--encoder", "pixels-8", "--limit", "12", "--format", "json"]
    first = run(args, tmp_path)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert set(data["pck"]["per_image"]) == {"0.05", "0.1", "0.15"}
    assert set(data["pck"]["per_point"]) == {"0.05", "0.1", "0.15"}
    assert all(0.0 <= v <= 1.0 for v in data["pck"]["per_image"].values())
    assert data["pck"]["per_category"] and all("0.1" in v for v in data["pck"]["per_category"].values())
    assert data["protocol"]["name"] == "default" and len(data["protocol"]["hash"]) == 16
    assert {"pairs", "images_encoded", "cache_hits", "seconds"} <= set(data["stats"])
    assert data["stats"]["pairs"] == 12 and data["stats"]["images_encoded"] > 0
    second = json.loads(run(args, tmp_path).stdout)
    assert second["stats"]["images_encoded"] == 0 and second["stats"]["cache_hits"] == data["stats"]["images"]
    listed = json.loads(run(["results", "--format", "json"], tmp_path).stdout)
    assert [r["id"] for r in listed["results"]] == [data["result_id"]]


def test_pck_file_contract(tmp_path):
    pred = {"pairs": [
        {"category": "a", "pred_kps": [[0, 0], [12, 0]], "gt_kps": [[0, 0], [0, 0]], "trg_bndbox": [0, 0, 100, 50], "trg_imsize": [200, 100]},
        {"category": "b", "pred_kps": [[0, 0]], "gt_kps": [[0, 0]], "visible": [False], "trg_bndbox": [0, 0, 10, 10], "trg_imsize": [20, 20]},
    ]}
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(pred))
    out = run(["pck", "--predictions", str(path), "--format", "json"], tmp_path)
    assert out.returncode == 0, out.stderr
    pck = json.loads(out.stdout)["pck"]
    assert pck["per_image"] == {"0.05": 0.5, "0.1": 0.5, "0.15": 1.0}
    assert pck["per_category"] == {"a": {"0.05": 0.5, "0.1": 0.5, "0.15": 1.0}}
    image = json.loads(run(["pck", "--predictions", str(path), "--normalizer", "image", "--format", "json"], tmp_path).stdout)
    assert image["pck"]["per_image"]["0.1"] == 1.0  # 12 <= 0.1 * 200


@pytest.mark.parametrize("content", ["{oops", json.dumps({"pairs": [{"pred_kps": [[0, 0]]}]}), json.dumps([1, 2])])
def test_bad_predictions_give_one_line_and_nonzero_exit(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    out = run(["pck", "--predictions", str(path), "--format", "json"], tmp_path)
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
    missing = run(["pck", "--predictions", str(tmp_path / "none.json")], tmp_path)
    assert missing.returncode != 0 and "does not exist" in missing.stderr


def test_protocols_datasets_and_bad_inputs(tmp_path):
    protocols = json.loads(run(["protocols", "--format", "json"], tmp_path).stdout)["protocols"]
    assert {"default", "paper-compat"} <= {p["name"] for p in protocols}
    datasets = json.loads(run(["datasets", "--format", "json"], tmp_path).stdout)
    assert datasets["builtin"]["pairs"] >= 60
    bad = run(["evaluate", "--dataset", "spair:/no/such/place", "--encoder", "pixels-8"], tmp_path)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
    bad = run(["evaluate", "--dataset", "builtin", "--encoder", "pixels-8", "--protocol", "nope"], tmp_path)
    assert bad.returncode == 2 and "unknown protocol" in bad.stderr
    bad = run(["attach", "--result", "nope", "--study", "s", "--setting", "x"], tmp_path)
    assert bad.returncode == 2 and "no correspondence result" in bad.stderr


def test_custom_protocol_file(tmp_path):
    proto = tmp_path / "mine.json"
    proto.write_text(json.dumps({"name": "mine", "comparison": "<", "alphas": [0.1]}))
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"pairs": [{"category": "a", "pred_kps": [[10, 0]], "gt_kps": [[0, 0]], "trg_bndbox": [0, 0, 100, 100]}]}))
    out = run(["pck", "--predictions", str(pred), "--protocol", str(proto), "--format", "json"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pck"]["per_image"] == {"0.1": 0.0}  # 10 < 0.1 * 100 is false
    proto.write_text(json.dumps({"name": "bad", "normalizer": "diag"}))
    bad = run(["pck", "--predictions", str(pred), "--protocol", str(proto)], tmp_path)
    assert bad.returncode == 2 and "normalizer" in bad.stderr
