"""Data page: list, import, edit, group, copy, delete and download studies (bundled and stored)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine import export
from engine import study as studies
from engine.benchmarks import parse_group_assignments
from engine.errors import InputError
from engine.plots import tables
from pages import _ui

MAX_UPLOAD_BYTES = 10 * 1024 * 1024


def _upload_bytes(upload) -> bytes:
    if upload is None:
        raise InputError("choose a file first")
    data = upload.getvalue()
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputError(f"{upload.name} is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    return data


def _render_list(study) -> None:
    _ui.show_table(tables.studies_overview(studies.list_studies()), "studies", _ui.provenance(study, table="stored studies"))
    st.markdown(f"Current study: **{study.name}** · content hash `{study.content_hash()}`")
    csv = export.table_to_csv(tables.study_tidy(study), _ui.provenance(study))
    st.download_button("Download the current study as CSV (tidy, re-importable)", csv, file_name=f"{study.name}.csv",
                       mime="text/csv", key="data_download", icon=":material/download:", on_click="ignore")
    left, right = st.columns(2)
    with left, st.form("copy_form"):
        new_name = st.text_input("Copy the current study as", key="data_copy_name")
        if st.form_submit_button("Copy"):
            with _ui.user_errors():
                copied = studies.copy_study(study.name, new_name.strip())
                _ui.switch_study(copied.name, f"Copied {study.name} to {copied.name}; it is now the current study.")
    if study.name == _ui.DEFAULT_STUDY:
        right.info(f"**{study.name}** is bundled with the app and read-only: copy it to edit it; it cannot be deleted.")
        return
    with right, st.form("delete_form"):
        st.markdown(f"Delete **{study.name}** from the store.")
        confirm = st.checkbox("Yes, delete it", key="data_delete_confirm")
        if st.form_submit_button("Delete"):
            with _ui.user_errors():
                if not confirm:
                    raise InputError("tick 'Yes, delete it' to confirm")
                studies.delete_study(study.name)
                _ui.switch_study(_ui.DEFAULT_STUDY, f"Deleted {study.name}.")


def _render_import(study) -> None:
    st.caption("A study file: the authors' released CSV, a tidy CSV (setting, benchmark, A, C, score, optional "
               "group), the paper's table layout (setting, A_loglik, C_pck10, benchmarks…) or a Law Explorer JSON "
               "export; detected automatically. Leading `#` lines (this app's CSV exports) are ignored. Any "
               "benchmark name is accepted: known lmms-eval tasks keep their label, scale and group, others get "
               "their name as label, their scale from the scores and the group `other`.")
    with st.form("import_form"):
        name = st.text_input("Name of the new study", key="data_import_name")
        upload = st.file_uploader("Study file", type=["csv", "json", "txt"], key="data_import_file")
        groups = st.text_input("Benchmark groups (optional)", key="data_import_groups",
                               placeholder="gqa=vision,docvqa_val=ocr",
                               help="BENCHMARK=GROUP pairs; the law reports its mean R² per group")
        overwrite = st.checkbox("Replace a stored study of that name", key="data_import_overwrite")
        submitted = st.form_submit_button("Import")
    if submitted:
        with _ui.user_errors():
            chosen = parse_group_assignments(groups)
            parsed = studies.parse_study_file(export.strip_provenance(_upload_bytes(upload)), name.strip())
            if chosen:
                parsed = parsed.with_groups(chosen)
            studies.save_study(parsed, overwrite=overwrite)
            _ui.switch_study(parsed.name, f"Imported {parsed.name}: {len(parsed.setting_names)} settings, "
                             f"{len(parsed.benchmarks)} benchmarks; it is now the current study.")
    st.markdown("**Fill a setting's scores from an lmms-eval `results.json`** (into the current study; copy the "
                "bundled study first to change it).")
    with st.form("lmms_form"):
        setting = st.selectbox("Setting", study.setting_names, key="data_lmms_setting",
                               accept_new_options=True)
        upload = st.file_uploader("lmms-eval results.json", type=["json"], key="data_lmms_file")
        submitted = st.form_submit_button("Apply")
    if submitted:
        with _ui.user_errors():
            if study.name == _ui.DEFAULT_STUDY:
                raise InputError(f"'{study.name}' is read-only: copy it first (Studies tab)")
            updated = studies.apply_lmms_eval(study, str(setting or "").strip(), _upload_bytes(upload))
            studies.save_study(updated, overwrite=True)
            _ui.switch_study(updated.name, f"Updated the scores of {setting} in {updated.name}.")


def _render_editor(study) -> None:
    st.caption("One row per setting: A, C, metadata and one column per benchmark score (blank = not finetuned). "
               "Add or delete rows; the study is saved only when the table is valid.")
    with _ui.user_errors():
        base = studies.study_to_editor(study)
        edited = st.data_editor(base, num_rows="dynamic", key=f"data_editor_{study.name}", hide_index=True)
        default = "" if study.name == _ui.DEFAULT_STUDY else study.name
        name = st.text_input("Save as study", value=default, key=f"data_editor_name_{study.name}")
        if st.button("Validate and save", key="data_editor_save", type="primary"):
            new = studies.study_from_editor(pd.DataFrame(edited), name.strip())
            new = new.with_groups({b: study.group_of(b) for b in new.benchmarks if b in study.benchmarks})
            studies.save_study(new, overwrite=new.name == study.name)
            _ui.switch_study(new.name, f"Saved {new.name}: {len(new.setting_names)} settings; it is now the current study.")


def _render_groups(study) -> None:
    st.caption("Each benchmark belongs to one group; the law's headline is the mean R² per group. The paper's "
               "benchmarks are `vision` or `ocr` (OCR-type), other known tasks have a registry group, unknown "
               "benchmarks start in `other`. Type any group name (letters, digits, _ or -).")
    table = studies.groups_table(study)
    read_only = study.name == _ui.DEFAULT_STUDY
    edited = st.data_editor(table, key=f"data_groups_{study.name}", hide_index=True, disabled=["benchmark", "label"],
                            num_rows="fixed")
    if read_only:
        st.info(f"'{study.name}' is read-only: copy it first (Studies tab) to change its groups.")
        return
    if st.button("Save groups", key="data_groups_save", type="primary"):
        with _ui.user_errors():
            new = studies.groups_from_table(study, pd.DataFrame(edited))
            saved = studies.set_groups(study.name, {b: new.group_of(b) for b in new.benchmarks})
            _ui.switch_study(saved.name, f"Saved the groups of {saved.name}: "
                             + "; ".join(f"{g}: {', '.join(b)}" for g, b in saved.groups.items()))


def render() -> None:
    st.title("Studies & data")
    _ui.show_flash()
    study = _ui.current_study()
    tabs = st.tabs(["Studies", "Import", "Edit", "Benchmark groups"])
    with tabs[0]:
        _render_list(study)
    with tabs[1]:
        _render_import(study)
    with tabs[2]:
        _render_editor(study)
    with tabs[3]:
        _render_groups(study)


_ui.run(render)
