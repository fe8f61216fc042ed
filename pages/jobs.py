"""Jobs page: every background job with live status and progress; details, logs, metrics, cancel/resume, a demo."""

from __future__ import annotations

import json

import pandas as pd
import plotly.express as px
import streamlit as st

from engine import export, jobs
from engine.hashing import hash_obj
from pages import _ui

REFRESH_S = 2.0  # while a job is queued or running
IDLE_REFRESH_S = 15.0  # otherwise, to notice jobs started from other pages or the CLI
TIMER_KEY = "jobs_timer_active"
SELECTED_KEY = "jobs_selected"
BACKEND_NOTE_KEY = "jobs_backend_note"  # a saved Ray address that did not answer, shown once after the rerun
STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/play_circle:", "done": ":material/check_circle:",
                "failed": ":material/error:", "cancelled": ":material/stop_circle:", "interrupted": ":material/warning:"}


def _provenance(record: jobs.JobRecord) -> export.Provenance:
    return export.Provenance(study=f"job {record.id}", study_hash=hash_obj(record.params),
                             extra={"target": record.target, "title": record.title})


def _elapsed(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _step(record: jobs.JobRecord) -> str:
    """The job's own words for where it is (``pixels-8: encoded 16/34 images``); a bare count only without them (a
    sweep counts encoders, an evaluation images then pairs: "0/3" alone would not say of what)."""
    done, total, message = record.progress
    return message or (f"{done}/{total}" if total else "")


def _table(records: list[jobs.JobRecord]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "status": r.status,
                "progress": r.fraction,
                "step": _step(r),
                "elapsed": _elapsed(r.elapsed_s),
                "title": r.title,
                "backend": r.params.get("backend", "local"),
                "target": r.target,
                "id": r.id,
            }
            for r in records
        ],
        columns=["status", "progress", "step", "elapsed", "title", "backend", "target", "id"],
    )


def _demo_form() -> None:
    with st.expander("Run the demo job", icon=":material/play_arrow:"):
        st.caption("Counts to n with one checkpoint per step: try cancelling it, or killing its worker, then resuming.")
        with st.container(horizontal=True, vertical_alignment="bottom"):
            n = st.number_input("Steps", min_value=1, max_value=10_000, value=30, key="demo_n")
            sleep = st.number_input("Seconds per step", min_value=0.0, max_value=10.0, value=0.5, step=0.1,
                                    key="demo_sleep")
            start = st.button("Start", key="demo_start", type="primary", icon=":material/play_arrow:")
        if start:
            with _ui.user_errors():
                job_id = jobs.submit(jobs.targets.DEMO_COUNT, {"n": int(n), "sleep": float(sleep)}, title=f"demo: count to {int(n)}")
                st.session_state[SELECTED_KEY] = job_id
                st.rerun(scope="app")


def _backend_form() -> None:
    """Where jobs submitted from the app run: this machine (local) or a Ray cluster (engine.scale)."""
    from engine.scale import BACKENDS, resolve_backend, save_default_backend, saved_default_backend, unreachable

    saved = saved_default_backend()
    with st.expander(f"Where jobs run: {resolve_backend().name}", icon=":material/hub:"):
        st.caption("local: detached workers on this machine (default, nothing to start). ray: the images of a C "
                   "evaluation are encoded by Ray actors (one per GPU); this machine writes the results. No address "
                   "starts a Ray instance on this machine. LAW_EXPLORER_BACKEND / RAY_ADDRESS override this choice.")
        with st.form("backend_form", border=False), st.container(horizontal=True, vertical_alignment="bottom"):
            name = st.radio("Backend", BACKENDS, index=BACKENDS.index(saved.name), horizontal=True, key="backend_name")
            address = st.text_input("Ray address (HOST:PORT)", value=saved.address or "", key="backend_address",
                                    placeholder="empty: a local Ray instance")
            if st.form_submit_button("Save", icon=":material/save:"):
                with _ui.user_errors():
                    choice = save_default_backend(name, address if name == "ray" else None)
                    why = unreachable(choice.address) if choice.name == "ray" else None
                    st.session_state[BACKEND_NOTE_KEY] = why and f"Saved, but {why}: jobs sent there fail until it is up."
                    st.rerun(scope="app")
        note = st.session_state.pop(BACKEND_NOTE_KEY, None)
        if note:
            st.warning(note, icon=":material/warning:")


def _sweep_encoders(record: jobs.JobRecord) -> None:
    """Per-encoder progress of a sweep job (engine.sweep)."""
    from engine.sweep import JOB_TARGET, EncoderStatus, progress_text, sweep_status

    if record.target != JOB_TARGET:
        return
    status = sweep_status(record.id)
    with_a = bool(record.params.get("with_a"))
    # the bar's fraction counts images while an encoder encodes and pairs while it matches: "step" says which
    frame = pd.DataFrame(
        [{"encoder": r["encoder"], "status": r["status"] + (" (reused)" if r["reused"] else ""),
          "progress": (1.0 if r["status"] == EncoderStatus.DONE else (r["done"] / r["total"] if r["total"] else 0.0)),
          "step": progress_text(r),
          "C (PCK@0.10 per image x 100, measured)": r["C"],
          **({"A (A-v3 caption log-likelihood, measured)": r["A"], "A status": r["a_status"] or ""} if with_a else {}),
          "images encoded": r["images_encoded"],
          "error": r["error"] or ""} for r in status["encoders"]]
    )  # fmt: skip
    frame["images encoded"] = frame["images encoded"].astype("Int64")
    if status.get("study"):
        done = sum(1 for r in status["encoders"] if r["status"] == EncoderStatus.DONE)
        st.caption(f"C of {done} of {len(status['encoders'])} encoder(s) recorded and attached to study "
                   f"'{status['study']}' (setting = encoder name; see Studies & data).")
    _ui.show_table(frame, f"sweep-{record.id}", _provenance(record), width="stretch",
                   column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                                              format="percent")})


def _metrics(record: jobs.JobRecord) -> None:
    if not record.metrics:
        st.caption("No metrics recorded.")
        return
    frame = pd.DataFrame(record.metrics)[["name", "step", "value"]]
    fig = px.line(frame, x="step", y="value", color="name", markers=len(frame) < 200, title=record.title)
    fig.update_layout(legend_title_text="")
    _ui.show_figure(fig, f"job-{record.id}-metrics", _provenance(record))
    _ui.show_table(frame, f"job-{record.id}-metrics", _provenance(record), height=200)


def _actions(record: jobs.JobRecord) -> None:
    with st.container(horizontal=True):
        if record.status in jobs.ACTIVE and st.button("Cancel", key="job_cancel", icon=":material/stop:"):
            with _ui.user_errors():
                jobs.cancel(record.id)
                st.rerun(scope="app")
        if record.status in ("interrupted", "failed", "cancelled") and st.button(
            "Resume", key="job_resume", icon=":material/replay:", help="Restart with the same id; finished work is kept"
        ):
            with _ui.user_errors():
                jobs.resume(record.id)
                st.rerun(scope="app")
        if st.button("Refresh", key="job_refresh", icon=":material/refresh:"):
            st.rerun(scope="app")
        if record.status not in jobs.ACTIVE:
            with st.popover("Delete", icon=":material/delete:"):
                st.caption("Deletes the job's folder, its work dir (checkpoints) and its summary row.")
                if st.button("Delete this job", key="job_delete", type="primary"):
                    with _ui.user_errors():
                        jobs.forget(record.id)
                        st.rerun(scope="app")


def _details(job_id: str) -> None:
    record = jobs.get_job(job_id, log_lines=200)
    st.subheader(f"{STATUS_ICONS.get(record.status, '')} {record.title}")
    done, total, message = record.progress
    st.progress(record.fraction, text=f"{record.status} · {done}/{total} {message} · {_elapsed(record.elapsed_s)}")
    if record.error:
        show = st.warning if record.status in ("interrupted", "cancelled") else st.error
        show(record.error)
    _actions(record)
    _sweep_encoders(record)
    params_tab, log_tab, metrics_tab, result_tab = st.tabs(["Parameters", "Log", "Metrics", "Result"])
    with params_tab:
        st.json(record.params)
        st.caption(f"id `{record.id}` · target `{record.target}` · attempts {record.attempts} · work dir `{record.work_dir}`")
    with log_tab:
        st.code(record.log_tail or "(empty log)", language=None)
    with metrics_tab:
        _metrics(record)
    with result_tab:
        if record.result is None:
            st.caption("No result yet.")
        else:
            st.json(record.result)
            st.download_button("result.json", json.dumps(record.result, indent=2), file_name=f"job-{record.id}.json",
                               mime="application/json", key="job_result_download", icon=":material/download:")


def _panel() -> None:
    """Everything that changes while jobs run; re-run every 2 s while any job is active, else every 15 s."""
    with _ui.user_errors():
        records = jobs.list_jobs()
        active = any(r.status in jobs.ACTIVE for r in records)
        if active != st.session_state.get(TIMER_KEY):
            st.rerun(scope="app")  # switch between the fast and the idle refresh interval
        if not records:
            st.info("No jobs yet. Start the demo job, or score an encoder / train a projector from their pages.")
            return
        table = _table(records)
        st.dataframe(
            table, hide_index=True, width="stretch",
            column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)},
        )
        st.download_button("CSV", export.csv_safe(table).to_csv(index=False), file_name="jobs.csv", mime="text/csv", key="jobs_csv",
                           icon=":material/download:", on_click="ignore")
        ids = [r.id for r in records]
        labels = {r.id: f"{r.title} · {r.id}" for r in records}
        if st.session_state.get(SELECTED_KEY) not in ids:
            st.session_state[SELECTED_KEY] = ids[0]
        selected = st.selectbox("Job", ids, format_func=labels.get, key=SELECTED_KEY)
        _details(selected)


def render() -> None:
    st.title("Jobs")
    st.caption("Long work (C evaluation, projector training, A scoring) runs in detached worker processes: it survives "
               "page changes and reloads, can be cancelled, and resumes without redoing finished steps.")
    _backend_form()
    _demo_form()
    active = any(r.status in jobs.ACTIVE for r in jobs.list_jobs())
    st.session_state[TIMER_KEY] = active
    st.fragment(_panel, run_every=REFRESH_S if active else IDLE_REFRESH_S)()


_ui.run(render)
