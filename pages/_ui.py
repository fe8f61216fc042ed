"""Shared Streamlit helpers for the pages: study picker, cached fits, export buttons, one-line error display."""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import plotly.io as pio
import streamlit as st

from engine import export, law
from engine.errors import LawExplorerError
from engine.law import fit_study
from engine.study import list_studies, load_study

_LOG = logging.getLogger("law_explorer.pages")
PAGES_DIR = Path(__file__).resolve().parent
DEFAULT_STUDY = "paper-v3"
STUDY_KEY = "study_name"
PENDING_KEY = "study_name_pending"
FLASH_KEY = "flash_message"


# ----------------------------------------------------------------------------- navigation


class PageEntry(NamedTuple):
    file: str
    title: str
    url: str
    icon: str


# Sidebar sections of app.py; the first Law page is the default one.
NAVIGATION: dict[str, list[PageEntry]] = {
    "Law": [
        PageEntry("overview.py", "Overview", "overview", ":material/insights:"),
        PageEntry("law.py", "The law, per benchmark", "law", ":material/functions:"),
        PageEntry("policy.py", "AC policy", "policy", ":material/rule:"),
        PageEntry("data.py", "Studies & data", "data", ":material/table_view:"),
    ],
    "Encoders": [
        PageEntry("encoders.py", "Encoders", "encoders", ":material/memory:"),
        PageEntry("matches.py", "Keypoint matches", "matches", ":material/scatter_plot:"),
        PageEntry("score_encoder.py", "Score an encoder", "score-encoder", ":material/speed:"),
        PageEntry("jobs.py", "Jobs", "jobs", ":material/work_history:"),
    ],
}


# ----------------------------------------------------------------------------- errors


@contextmanager
def user_errors() -> Iterator[None]:
    """Show a ``LawExplorerError`` raised inside the block as one ``st.error`` line instead of a traceback."""
    try:
        yield
    except LawExplorerError as exc:
        st.error(str(exc), icon=":material/error:")
    except Exception as exc:  # a bug, not the user's fault: one line here, the traceback in the server log
        if os.environ.get("LAW_EXPLORER_DEBUG"):
            raise
        _LOG.exception("unexpected error in a page")
        st.error(f"Internal error ({type(exc).__name__}: {exc}). The server log has the details.", icon=":material/bug_report:")


def ensure_app_navigation() -> None:
    """Make Streamlit run ``app.py`` (our ``st.navigation``) even when the first visit is a deep link.

    With a folder named ``pages/`` beside ``app.py``, Streamlit starts in its legacy multipage mode:
    a first visit to ``/law`` runs ``pages/law.py`` alone under an auto-discovered sidebar (every file
    of ``pages/``, ``_ui`` included), and only a run of ``app.py`` itself would leave that mode. This
    switches the mode off for the process and reruns, so ``app.py`` takes over with the same URL (the
    page is resolved by its url path). Called when this module is first imported and by ``run``.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def run(render: Callable[[], None]) -> None:
    """Run a page's ``render`` function with engine errors shown as ``st.error``."""
    ensure_app_navigation()
    with user_errors():
        render()


# ----------------------------------------------------------------------------- studies


def study_names() -> list[str]:
    """Bundled and stored study names, the bundled default first."""
    return list(dict.fromkeys([DEFAULT_STUDY, *(entry["name"] for entry in list_studies())]))


def current_study_name() -> str:
    """The study chosen in the sidebar (session state), ``?study=`` in the URL, or the bundled default."""
    pending = st.session_state.pop(PENDING_KEY, None)
    if pending:
        st.session_state[STUDY_KEY] = pending
    return st.session_state.get(STUDY_KEY) or st.query_params.get("study") or DEFAULT_STUDY


def switch_study(name: str, message: str) -> None:
    """Make ``name`` the current study and rerun, showing ``message`` once on the next run (see ``show_flash``)."""
    st.session_state[PENDING_KEY] = name
    st.session_state[FLASH_KEY] = message
    st.rerun()


def show_flash() -> None:
    """Show the success message left by ``switch_study`` (once)."""
    message = st.session_state.pop(FLASH_KEY, None)
    if message:
        st.success(message, icon=":material/check_circle:")


def study_picker() -> None:
    """Sidebar selectbox shared by all pages through ``st.session_state``; mirrored in ``?study=``."""
    with user_errors():
        names = study_names()
        wanted = current_study_name()
        st.session_state[STUDY_KEY] = wanted if wanted in names else DEFAULT_STUDY
        st.sidebar.selectbox("Study", names, key=STUDY_KEY, help="Every page shows this study.")
        if st.session_state[STUDY_KEY] != DEFAULT_STUDY:
            st.query_params["study"] = st.session_state[STUDY_KEY]
        elif "study" in st.query_params:
            del st.query_params["study"]


def current_study() -> Any:
    """The chosen study (bundled or stored); an unknown name falls back to the bundled one with a warning."""
    name = current_study_name()
    if name != DEFAULT_STUDY and name not in study_names():
        st.warning(f"There is no study named '{name}'; showing {DEFAULT_STUDY}.")
        st.session_state.pop(STUDY_KEY, None)
        name = DEFAULT_STUDY
    return load_study(name)


@st.cache_resource(show_spinner=False, max_entries=16)
def _law_report(content_hash: str, _study: Any) -> Any:
    return fit_study(_study)


def law_report(study: Any) -> Any:
    """``engine.law.fit_study`` of the study (every benchmark and feature set), cached on its content hash."""
    return _law_report(study.content_hash(), study)


def provenance(study: Any, feature_set: str = "", **extra: Any) -> export.Provenance:
    """What an export of this page records: the study, its content hash, the fit."""
    return export.Provenance(
        study=study.name,
        study_hash=study.content_hash(),
        feature_set=feature_set,
        law_version=law.LAW_VERSION,
        extra={k: str(v) for k, v in extra.items()},
    )


def url_selectbox(label: str, options: list[str], key: str, param: str, **kwargs: Any) -> str:
    """A selectbox mirrored in the URL query parameter ``param`` (deep links such as ``/law?benchmark=mme``)."""
    if st.session_state.get(key) not in options:
        wanted = st.query_params.get(param, options[0])
        st.session_state[key] = wanted if wanted in options else options[0]
    choice = st.selectbox(label, options, key=key, **kwargs)
    st.query_params[param] = choice
    return choice


# ----------------------------------------------------------------------------- exports


@functools.lru_cache(maxsize=64)
def _static_bytes(fig_json: str, fmt: str, provenance_json: str) -> bytes:
    record = json.loads(provenance_json)
    prov = export.Provenance(**{k: record[k] for k in ("study", "study_hash", "feature_set", "law_version")},
                             extra=record["extra"])
    return export.figure_to_bytes(pio.from_json(fig_json), fmt, prov)


def export_buttons(fig: Any, name: str, provenance: export.Provenance) -> None:
    """PNG, SVG and HTML download buttons for a plotly figure; bytes are rendered only when clicked (then cached)."""
    fig_json = fig.to_json()
    prov_json = json.dumps({**provenance.__dict__, "extra": dict(provenance.extra)}, sort_keys=True)
    with st.container(horizontal=True, gap="small"):
        for fmt in export.FIGURE_FORMATS:
            st.download_button(
                fmt.upper(),
                data=functools.partial(_static_bytes, fig_json, fmt, prov_json),
                file_name=f"{name}.{fmt}",
                mime=export.MIME_TYPES[fmt],
                key=f"export-{name}-{fmt}",
                icon=":material/download:",
                on_click="ignore",
                help=f"Download this figure as {fmt.upper()} (records study, content hash and fit)",
            )


def show_figure(fig: Any, name: str, provenance: export.Provenance) -> None:
    """A plotly chart with its export buttons under it."""
    st.plotly_chart(fig, width="stretch", key=f"chart-{name}")
    export_buttons(fig, name, provenance)


def show_table(table: pd.DataFrame, name: str, provenance: export.Provenance, **dataframe_kwargs: Any) -> None:
    """A dataframe with a CSV download button (the CSV starts with provenance comment lines)."""
    st.dataframe(table, hide_index=True, **dataframe_kwargs)
    st.download_button(
        "CSV",
        data=export.table_to_csv(table, provenance),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"csv-{name}",
        icon=":material/download:",
        on_click="ignore",
        help="Download this table as CSV (leading # lines record study, content hash and fit)",
    )


# Every page imports this module, so its first import in a server process (whatever page a first
# visit deep-links to) leaves the legacy pages/ mode; see ensure_app_navigation.
ensure_app_navigation()
