"""A sweep's spec, its per-encoder state file, the job function that runs it, and status / cancel by job id."""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import config
from engine.errors import InputError, LawExplorerError
from engine.hashing import hash_obj
from engine.jobs import state as jobstate
from engine.jobs import targets
from engine.jobs.context import JobCancelled

if TYPE_CHECKING:
    from engine.correspondence.result_types import CEvaluation

JOB_TARGET = targets.SWEEP
STATE_VERSION = 1
_STATE_WRITE_INTERVAL_S = 0.5
MAX_ENCODERS = 200


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep evaluates. ``key()`` leaves out the backend: the same sweep on local or Ray has the same
    results, so a resubmission on either reuses what the other finished."""

    encoders: tuple[str, ...]
    dataset: str
    protocol: str = "default"
    split: str = "test"
    limit: int | None = None
    study: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    backend: str = "local"
    ray_address: str | None = None
    with_a: str | None = None  # None, "demo" (offline demo projector + LLM) or "paper" (llm, align_data, align_images)
    llm: str | None = None
    align_data: str | None = None
    align_images: str | None = None
    gpus_per_run: int = 1

    def key(self) -> str:
        data = asdict(self)
        data.pop("backend")
        data.pop("ray_address")
        data.pop("gpus_per_run")
        for name in ("with_a", "llm", "align_data", "align_images"):  # C-only sweeps keep their keys
            if data[name] is None:
                data.pop(name)
        return hash_obj({"v": STATE_VERSION, **data}, length=16)

    def params(self) -> dict[str, Any]:
        data = asdict(self)
        data["encoders"] = list(self.encoders)
        if self.backend == "local":  # local sweeps keep the shorter params (and job ids) of local jobs
            data.pop("backend")
            data.pop("ray_address")
        if self.with_a is None:
            for name in ("with_a", "llm", "align_data", "align_images", "gpus_per_run"):
                data.pop(name)
        return data

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SweepSpec:
        """Checked spec from job params or CLI values (names, not objects: they travel to workers)."""
        from engine.correspondence.datasets import normalise_split
        from engine.correspondence.prefetch import PRECISIONS
        from engine.scale.backend import BACKENDS

        raw = params.get("encoders")
        if isinstance(raw, str):
            raw = raw.split(",")
        if not isinstance(raw, (list, tuple)):
            raise InputError("a sweep needs a list of encoders (--encoders E1,E2,...)")
        encoders = tuple(dict.fromkeys(str(e).strip() for e in raw if str(e).strip()))
        if not encoders:
            raise InputError("a sweep needs at least one encoder (--encoders E1,E2,...)")
        if len(encoders) > MAX_ENCODERS:
            raise InputError(f"a sweep takes at most {MAX_ENCODERS} encoders, got {len(encoders)}")
        dataset = params.get("dataset")
        if not isinstance(dataset, str) or not dataset.strip():
            raise InputError("a sweep needs a dataset (--dataset builtin or spair:/path/to/SPair-71k)")
        limit = params.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InputError(f"limit must be a positive whole number of pairs, got {limit!r}")
        precision = str(params.get("precision", "fp32"))
        if precision not in PRECISIONS:
            raise InputError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
        backend = str(params.get("backend", "local"))
        if backend not in BACKENDS:
            raise InputError(f"unknown backend {backend!r} (use {' or '.join(BACKENDS)})")
        study = params.get("study")
        with_a = params.get("with_a")
        if with_a not in (None, "", "demo", "paper"):
            raise InputError(f"--with-a takes demo or paper, got {with_a!r}")
        with_a = with_a or None
        gpus = params.get("gpus_per_run", 1)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or not 1 <= gpus <= 64:
            raise InputError(f"gpus per run must be a whole number from 1 to 64, got {gpus!r}")
        if with_a and not study:
            raise InputError("--with-a needs --study (A and C are attached to its settings)")
        if with_a == "paper" and not all(params.get(k) for k in ("llm", "align_data", "align_images")):
            raise InputError("--with-a paper needs --llm, --align-data and --align-images (or use --with-a demo)")
        protocol = params.get("protocol", "default")
        if not isinstance(protocol, str):
            raise InputError("a sweep's protocol must be a registered protocol name (see `correspondence protocols`)")
        return cls(
            encoders=encoders, dataset=dataset.strip(), protocol=protocol,
            split=normalise_split(str(params.get("split", "test"))), limit=limit,
            study=None if study in (None, "") else str(study), device=str(params.get("device", "cpu")),
            precision=precision, backend=backend, ray_address=params.get("ray_address") or None, with_a=with_a,
            llm=params.get("llm") or None, align_data=params.get("align_data") or None,
            align_images=params.get("align_images") or None, gpus_per_run=gpus,
        )  # fmt: skip

    def check(self) -> None:
        """Fail before any work: unknown encoder, protocol or dataset, a study C cannot be attached to (missing, the
        bundled read-only one, a file)."""
        from engine.correspondence.datasets import open_dataset
        from engine.correspondence.protocols import get_protocol
        from engine.encoders.registry import get_spec

        if self.backend == "local":
            from engine.devices import check_device

            check_device(self.device)
        else:
            from engine.scale.backend import check_remote_device

            check_remote_device(self.device)
        for name in self.encoders:
            get_spec(name)
        get_protocol(self.protocol)
        open_dataset(self.dataset, self.split)
        if self.study is not None:
            from engine.study import writable_study

            writable_study(self.study)


class EncoderStatus(StrEnum):
    """An encoder's C (``status``) or A (``a_status``) in a sweep: one vocabulary, equal to its string in JSON."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass
class EncoderState:
    """One encoder of a sweep: its C's status (and A's with ``--with-a``), with its result when done."""

    status: EncoderStatus = EncoderStatus.PENDING
    done: int = 0
    total: int = 0
    message: str = ""
    result_id: str | None = None
    C: float | None = None
    A: float | None = None
    a_status: EncoderStatus | None = None  # with --with-a
    images_encoded: int | None = None
    seconds: float | None = None
    reused: bool = False
    error: str | None = None


@dataclass
class SweepState:
    """The state file of a sweep (``<home>/sweeps/<key>/state.json``), shared by every job that runs it."""

    key: str
    spec: dict[str, Any]
    encoders: dict[str, EncoderState] = field(default_factory=dict)
    updated: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "spec": self.spec, "updated": self.updated,
                "encoders": {name: asdict(e) for name, e in self.encoders.items()}}


def sweep_folder(key: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{16}", key):
        raise InputError(f"malformed sweep key {key!r}")
    path = config.subdir("sweeps") / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_state(spec: SweepSpec) -> SweepState:
    key = spec.key()
    data = jobstate.read_json(sweep_folder(key) / "state.json", {}) or {}
    known = {f for f in EncoderState.__dataclass_fields__}
    stored = data.get("encoders") if isinstance(data.get("encoders"), dict) else {}
    encoders = {}
    for name in spec.encoders:
        entry = stored.get(name) if isinstance(stored.get(name), dict) else {}
        encoders[name] = EncoderState(**{k: v for k, v in entry.items() if k in known})
        encoders[name].status = _status(encoders[name].status) or EncoderStatus.PENDING
        encoders[name].a_status = _status(encoders[name].a_status)
    return SweepState(key, spec.params(), encoders, float(data.get("updated") or 0.0))


def _status(value: Any) -> EncoderStatus | None:
    """A stored status word as the enum (None for none or an unknown word: the encoder is redone)."""
    try:
        return None if value is None else EncoderStatus(value)
    except ValueError:
        return None


def save_state(state: SweepState) -> None:
    state.updated = time.time()
    folder = sweep_folder(state.key)
    with jobstate.locked(folder / ".lock"):
        jobstate.write_json_atomic(folder / "state.json", state.to_dict())


def _stored_result(result_id: str | None) -> dict[str, Any] | None:
    if not result_id:
        return None
    from engine.correspondence.results import get_result

    with contextlib.suppress(InputError):
        return get_result(result_id)
    return None


def _work_dir(key: str, encoder: str) -> Path:
    return sweep_folder(key) / "work" / hash_obj({"encoder": encoder}, length=12)


def run_sweep(
    spec: SweepSpec,
    progress: Callable[[int, int, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate C of every encoder, attach each to the study, reuse every encoder a previous run of the same sweep
    finished (its recorded result: nothing is recomputed). ``local``: one encoder after another in this process;
    ``ray``: several encoders at once, each encoded by its own actors (its share of the cluster), while this process
    alone writes the feature cache, the store and the state file. ``progress(done, total, message)`` counts finished
    encoders."""
    spec.check()
    run = _SweepRun(spec, load_state(spec), progress, cancelled, log)
    if spec.backend == "ray":
        run.concurrently_on_ray()
    else:
        run.in_turn()
    return summary(run.state)


class _SweepRun:
    """One run of a sweep in this (the driver's) process: the only writer of its state file, the store and the
    feature cache; a lock guards the state when several encoders run at once."""

    def __init__(self, spec: SweepSpec, state: SweepState, progress: Callable[[int, int, str], None] | None,
                 cancelled: Callable[[], bool] | None, log: Callable[[str], None] | None) -> None:  # fmt: skip
        self.spec, self.state = spec, state
        self._progress, self._cancelled = progress, cancelled
        self.say = log or (lambda _m: None)
        self.lock = threading.RLock()
        self.finished = 0
        self.stop = threading.Event()  # set when one encoder failed: the others stop between batches
        self.stop_reason = "cancelled"

    def cancelled(self) -> bool:
        return self.stop.is_set() or (self._cancelled is not None and self._cancelled())

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled("sweep cancelled")

    def save(self) -> None:
        with self.lock:
            save_state(self.state)

    def report(self, message: str, finished: bool = False) -> None:
        with self.lock:
            self.finished += int(finished)
            if self._progress is not None:
                self._progress(self.finished, len(self.spec.encoders), message)

    # -- the two ways of running --------------------------------------------------------------------------------
    def in_turn(self) -> None:
        """Each encoder's C then (with ``--with-a``) its A, one encoder after another."""
        for name in self.spec.encoders:
            self.check_cancelled()
            if not self.reuse(name):
                self.record(name, self.evaluate(name))
            if self.spec.with_a and self.state.encoders[name].a_status != EncoderStatus.DONE:
                self.report(f"{name}: A (projector training, then A scoring)")
                self.score_a(name)
            self.report(f"{name}: done", finished=True)

    def concurrently_on_ray(self) -> None:
        """C of the encoders not finished yet, several at once on the cluster (each evaluation's actors ask for one
        GPU, or one CPU, each; as many evaluations at a time as the cluster has GPUs or CPUs); then, with
        ``--with-a``, the A pipelines not finished yet, one Ray task per encoder, several at once."""
        todo = []
        for name in self.spec.encoders:
            self.check_cancelled()
            if self.reuse(name):
                done = not self.spec.with_a or self.state.encoders[name].a_status == EncoderStatus.DONE
                self.report(f"{name}: reused", finished=done)
            else:
                todo.append(name)
        if todo:
            self._c_on_ray(todo)
        if self.spec.with_a:
            self._a_on_ray([n for n in self.spec.encoders if self.state.encoders[n].a_status != EncoderStatus.DONE])

    def _c_on_ray(self, todo: list[str]) -> None:
        from engine.scale.cluster import connect
        from engine.scale.ray_encode import share_cluster

        cluster = connect(self.spec.ray_address)  # here, once: the evaluations' threads find Ray started
        at_once, actors_each = share_cluster(cluster, self.spec.device, len(todo))
        self.say(f"C of {len(todo)} encoder(s) on {cluster.describe()}: {at_once} at a time, "
                 f"up to {actors_each} actor(s) each")  # fmt: skip
        failure: BaseException | None = None
        pool = ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="sweep-encoder")
        try:
            futures = {pool.submit(self.evaluate, name, actors_each): name for name in todo}
            for future in as_completed(futures):
                name = futures[future]
                if future.cancelled():
                    continue
                error = future.exception()
                if error is not None:
                    if failure is None:
                        failure = error
                        if not isinstance(error, JobCancelled):
                            self.stop_reason = f"stopped: encoder {name} failed"
                        self.stop.set()
                        for other in futures:
                            other.cancel()
                    continue
                self.record(name, future.result())
                self.report(f"{name}: done", finished=not self.spec.with_a)
        except BaseException:
            self.stop.set()  # the driver is stopping (terminated, or a write failed): the evaluations stop too
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if failure is not None:
            raise failure

    # -- one encoder ------------------------------------------------------------------------------------------------
    def reuse(self, name: str) -> bool:
        """Whether the encoder's C is recorded by an earlier run (then it is attached again, nothing recomputed)."""
        entry = self.state.encoders[name]
        stored = _stored_result(entry.result_id) if entry.status == EncoderStatus.DONE else None
        if stored is None:
            return False
        entry.reused, entry.message = True, "finished earlier: reused"
        if self.spec.study:
            from engine.correspondence.results import attach_c_to_study

            attach_c_to_study(stored, self.spec.study, name)
        self.save()
        self.say(f"{name}: reused result {entry.result_id} (C = {entry.C:.2f})")
        return True

    def evaluate(self, name: str, ray_actors: int | None = None) -> CEvaluation:
        """The C evaluation of one encoder (on the ray backend in one of several threads); its result is returned
        to the caller, which records it."""
        from engine.correspondence.evaluate import evaluate

        spec, entry = self.spec, self.state.encoders[name]
        self.check_cancelled()
        with self.lock:
            entry.status, entry.error, entry.reused, entry.done, entry.total = EncoderStatus.RUNNING, None, False, 0, 0
            entry.message = ""  # not the last run's "cancelled" beside "running"
            save_state(self.state)
        last_write = [0.0]

        def on_progress(done: int, of: int, message: str) -> None:
            with self.lock:
                entry.done, entry.total, entry.message = int(done), int(of), str(message)
                now = time.monotonic()
                if now - last_write[0] >= _STATE_WRITE_INTERVAL_S:
                    last_write[0] = now
                    save_state(self.state)
            self.report(f"{name}: {message}")

        options = {} if ray_actors is None else {"ray_actors": ray_actors}
        try:
            return evaluate(
                spec.dataset, name, protocol=spec.protocol, split=spec.split, limit=spec.limit, progress=on_progress,
                cancelled=self.cancelled, work_dir=_work_dir(self.state.key, name), device=spec.device,
                precision=spec.precision, backend=spec.backend, ray_address=spec.ray_address, **options,
            )  # fmt: skip
        except JobCancelled:
            with self.lock:
                entry.status, entry.message = EncoderStatus.PENDING, self.stop_reason
                save_state(self.state)
            raise
        except LawExplorerError as exc:
            with self.lock:
                entry.status, entry.error = EncoderStatus.FAILED, str(exc)
                save_state(self.state)
            raise type(exc)(f"encoder {name}: {exc}") from exc
        except BaseException as exc:
            with self.lock:
                entry.status, entry.error = EncoderStatus.FAILED, f"{type(exc).__name__}: {exc}"
                save_state(self.state)
            raise

    def record(self, name: str, result: CEvaluation) -> None:
        """Store a finished evaluation in the state file and attach its C to the study (this thread only)."""
        from engine.correspondence import results

        entry = self.state.encoders[name]
        with self.lock:
            entry.status, entry.result_id = EncoderStatus.DONE, result.result_id
            entry.C = results.c_score(result)
            entry.images_encoded = int(result.stats.images_encoded)
            entry.seconds = float(result.stats.seconds)
            entry.message = f"{result.stats.pairs} pairs"
            save_state(self.state)
        shutil.rmtree(_work_dir(self.state.key, name), ignore_errors=True)  # checkpoints of a recorded result
        if self.spec.study:
            from engine.correspondence.results import attach_c_to_study

            attach_c_to_study(result, self.spec.study, name)
        self.say(f"{name}: C = {entry.C:.2f} ({entry.images_encoded} images encoded, {entry.seconds:.1f} s)")

    def a_plan(self, name: str) -> tuple[list[Any], float | None, str | None]:
        """The A steps of one encoder still to run (projector training, A scoring), A when it is stored, and the id
        of the stored projector the scoring reuses (if any)."""
        from engine.pipeline.planning import StepState, plan

        spec = self.spec
        p = plan(name, str(spec.study), c_protocol=spec.protocol, dataset=spec.dataset, demo=spec.with_a == "demo",
                 setting=name, split=spec.split, limit=spec.limit, llm=spec.llm, align_data=spec.align_data,
                 align_images=spec.align_images)  # fmt: skip
        steps = [s for s in p.steps if s.key in ("projector", "a")]
        blocked = [s for s in steps if s.state == StepState.UNAVAILABLE]
        if blocked:
            raise LawExplorerError(f"A of {name}: {blocked[0].note}")
        value = next((s.value for s in steps if s.key == "a" and s.state == StepState.REUSE), None)
        projector = next((s.stored_id for s in steps if s.key == "projector" and s.state == StepState.REUSE), None)
        return [s for s in steps if s.state == StepState.RUN], value, projector

    def step_params(self, step: Any) -> dict[str, Any]:
        params = dict(step.params or {})
        if step.key == "projector" and self.spec.gpus_per_run > 1:
            params["num_processes"] = self.spec.gpus_per_run
        return params

    def score_a(self, name: str) -> None:
        """The A pipeline of one encoder on this (the driver's) machine: stage-1 projector training (accelerate,
        with ``gpus_per_run`` processes) then A-v3 scoring, each reused when stored; A is attached to the study."""
        from engine.jobs import run_inline

        entry = self.state.encoders[name]
        entry.a_status = EncoderStatus.RUNNING
        self.save()
        try:
            steps, value, _ = self.a_plan(name)
            for step in steps:
                self.check_cancelled()
                self.say(f"{name}: {step.title}")
                result = run_inline(str(step.target), self.step_params(step),
                                    work_dir=_work_dir(self.state.key, name) / step.key)  # fmt: skip
                if step.key == "a":
                    value = None if result.get("A") is None else float(result["A"])
            if value is None:
                raise LawExplorerError(f"A of {name}: the A-scoring step gave no value")
        except JobCancelled:
            entry.a_status = EncoderStatus.PENDING
            self.save()
            raise
        except BaseException as exc:
            entry.a_status, entry.error = EncoderStatus.FAILED, f"A: {exc}"
            self.save()
            raise
        self.record_a(name, value)

    def record_a(self, name: str, value: float) -> None:
        from engine.study import set_setting_scores

        entry = self.state.encoders[name]
        entry.A, entry.a_status = value, EncoderStatus.DONE
        self.save()
        set_setting_scores(str(self.spec.study), name, A=value, metadata={"a_method": a_method(self.spec)})
        self.say(f"{name}: A = {value:.4f}")

    def _a_on_ray(self, todo: list[str]) -> None:
        """The A pipeline of each encoder in ``todo`` as one Ray task (``gpus_per_run`` GPUs on CUDA, else one CPU),
        as many at once as the cluster has room for; each task trains and scores in a worker process and returns A
        and its records, which this process (the store's one writer) inserts and attaches. A failed task marks its
        encoder failed (one line) and the others go on; the sweep then fails with the first failure."""
        from engine.alignment.records import insert_records, list_projectors
        from engine.jobs.runner import one_line_error
        from engine.scale.cluster import connect
        from engine.scale.ray_align import AStep, ATaskResult, ATasks, check_fits

        if not todo:
            return
        cluster = connect(self.spec.ray_address)
        check_fits(cluster, self.spec.device, self.spec.gpus_per_run)
        if self.spec.with_a == "demo":  # built once here, not by several tasks at once in the shared home
            from engine.alignment.train import resolve_params

            resolve_params({"demo": True})
        tasks = ATasks(self.spec.device, self.spec.gpus_per_run)
        failure: str | None = None  # the first failure's message
        try:
            for name in todo:
                self.check_cancelled()
                entry = self.state.encoders[name]
                try:
                    steps, value, projector = self.a_plan(name)
                except LawExplorerError as exc:
                    entry.a_status, entry.error = EncoderStatus.FAILED, f"A: {exc}"
                    self.save()
                    failure = failure or str(exc)  # names the encoder already
                    continue
                if not steps and value is not None:
                    self.record_a(name, value)
                    self.report(f"{name}: done", finished=True)
                    continue
                run_dir = _work_dir(self.state.key, name)
                planned = []
                for step in steps:
                    params = self.step_params(step)
                    if step.key == "a" and projector and "projector" not in params:
                        stored = list_projectors()  # the task's own store holds none: name the stored projector
                        params["projector"] = str(stored.loc[stored["id"] == projector, "path"].iloc[0])
                    planned.append(AStep(step.key, str(step.target), params, str(run_dir / step.key)))
                tasks.submit(name, planned, str(run_dir))
                entry.a_status, entry.error = EncoderStatus.RUNNING, None
                self.save()
                self.report(f"{name}: A (projector training, then A scoring) on the cluster")
            self.say(f"A of {len(tasks.pending)} encoder(s) on {cluster.describe()}: one task each")
            while tasks.pending:
                name, outcome = tasks.next_done(self.cancelled)
                entry = self.state.encoders[name]
                if isinstance(outcome, ATaskResult) and outcome.error is None and outcome.A is not None:
                    insert_records(outcome.projectors, outcome.scores)
                    self.say(f"{name}: A ran in process {outcome.pid} on {outcome.node} ({outcome.seconds:.1f} s)")
                    self.record_a(name, outcome.A)
                    self.report(f"{name}: done", finished=True)
                    continue
                if isinstance(outcome, ATaskResult):
                    why = outcome.error or "the A-scoring step gave no value"
                else:
                    why = one_line_error(outcome)
                entry.a_status, entry.error = EncoderStatus.FAILED, f"A: {why}"
                self.save()
                self.say(f"{name}: A failed: {why}")
                failure = failure or f"A of {name}: {why}"
        except BaseException as exc:  # cancelled, or the driver is stopping: no task outlives it, none shows running
            # recorded first: stopping the tasks takes seconds, and the job may be killed meanwhile
            why = self.stop_reason if isinstance(exc, JobCancelled) else "stopped: the sweep's driver stopped"
            for name in todo:
                entry = self.state.encoders[name]
                if entry.a_status == EncoderStatus.RUNNING:
                    entry.a_status, entry.message = EncoderStatus.PENDING, why
            with contextlib.suppress(Exception):
                self.save()
            tasks.cancel_all()
            raise
        if failure is not None:
            raise LawExplorerError(failure)


def summary(state: SweepState) -> dict[str, Any]:
    rows = [{"encoder": name, **asdict(e)} for name, e in state.encoders.items()]
    return {
        "sweep": state.key,
        "study": state.spec.get("study"),
        "encoders": rows,
        "images_encoded": sum(int(r["images_encoded"] or 0) for r in rows if not r["reused"]),
        "reused": sum(1 for r in rows if r["reused"]),
    }


def a_method(spec: SweepSpec) -> str:
    """How a sweep's ``--with-a`` measures A, in the words of a study's ``a_method`` column."""
    if spec.with_a == "demo":
        return "caption log-likelihood (v3), offline demo projector and LLM (demo scale: not comparable to paper A)"
    return f"caption log-likelihood (v3), stage-1 projector on {spec.llm}"


def progress_text(row: dict[str, Any]) -> str:
    """An encoder's progress in words: a running evaluation counts images while it encodes and pairs while it
    matches, so its own message (``encoded 50/114 images``, ``80/101 pairs``) says which; a finished one counts
    pairs."""
    if row.get("status") == EncoderStatus.RUNNING:
        return str(row.get("message") or "starting")
    if row.get("status") == EncoderStatus.DONE and row.get("total"):
        return f"{row['done']}/{row['total']} pairs" + (" (reused)" if row.get("reused") else "")
    return ""


def attached_count(status: dict[str, Any]) -> int:
    """How many encoders of a sweep have their C recorded (and attached to its study, when it has one)."""
    return sum(1 for r in status["encoders"] if r["status"] == EncoderStatus.DONE)


def run_job(params: dict, ctx) -> dict:
    """Job function (``engine.sweep.run:run_job``): params of :meth:`SweepSpec.params`."""
    spec = SweepSpec.from_params(params)
    ctx.log(f"sweep {spec.key()} over {len(spec.encoders)} encoder(s) on the {spec.backend} backend")
    return run_sweep(spec, progress=ctx.progress, cancelled=ctx.cancelled, log=ctx.log)


def submit_sweep(spec: SweepSpec) -> str:
    """Check the spec and start the sweep as a background job; returns the job id (the sweep's id)."""
    from engine.jobs import submit

    spec.check()
    if spec.backend == "ray":
        from engine.scale.cluster import check_reachable, require_ray

        require_ray()
        if spec.ray_address:
            check_reachable(spec.ray_address)
    names = ", ".join(spec.encoders[:3]) + (f" +{len(spec.encoders) - 3}" if len(spec.encoders) > 3 else "")
    return submit(JOB_TARGET, spec.params(), title=f"Sweep: C of {names} on {spec.dataset} ({spec.backend})")


def _sweep_job(job_id: str):
    from engine import jobs

    record = jobs.get_job(job_id, log_lines=5)
    if record.target != JOB_TARGET:
        raise InputError(f"job {job_id} is not a sweep (it runs {record.target})")
    return record


def sweep_status(job_id: str) -> dict[str, Any]:
    """The sweep job's status and each encoder's state (readable from any process)."""
    record = _sweep_job(job_id)
    spec = SweepSpec.from_params(record.params)
    state = load_state(spec)
    out = summary(state)
    out.update(id=record.id, status=record.status, error=record.error, backend=spec.backend,
               progress={"done": record.progress[0], "total": record.progress[1], "message": record.progress[2]})
    return out


def cancel_sweep(job_id: str, wait_s: float = 15.0) -> dict[str, Any]:
    """Cancel a running sweep from any process (finished encoders stay; a resubmission reuses them)."""
    from engine import jobs

    _sweep_job(job_id)
    jobs.cancel(job_id, wait_s=wait_s)
    return sweep_status(job_id)


def list_sweeps() -> list[dict[str, Any]]:
    from engine import jobs

    return [{"id": r.id, "status": r.status, "title": r.title,
             "progress": f"{r.progress[0]}/{r.progress[1]}" if r.progress[1] else ""}
            for r in jobs.list_jobs(target=JOB_TARGET)]  # fmt: skip
