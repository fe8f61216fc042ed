"""Shared Streamlit helpers for the pages: study picker, cached fits, export buttons, one-line error display."""

from __future__ import annotations

import contextvars
import functools
import io
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
from engine.errors import LawExplorerError, first_line
from engine.law import fit_ready, fit_study, too_large_for_app
from engine.study import BUNDLED_NAME, list_studies, load_study

_LOG = logging.getLogger("law_explorer.pages")
PAGES_DIR = Path(__file__).resolve().parent
DEFAULT_STUDY = BUNDLED_NAME
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
    """The one error guard of every page: a ``LawExplorerError`` is shown as its one line; anything else is logged
    with its traceback and shown as one line (re-raised when ``LAW_EXPLORER_DEBUG`` is set)."""
    try:
        yield
    except LawExplorerError as exc:
        st.error(str(exc), icon=":material/error:")
    except Exception as exc:  # a bug, not the user's fault: one line here, the traceback in the server log
        if os.environ.get("LAW_EXPLORER_DEBUG"):
            raise
        _LOG.exception("unexpected error in a page")
        st.error(f"Internal error ({type(exc).__name__}: {first_line(exc)}). The server log has the details.",
                 icon=":material/bug_report:")


# Set while app.py runs the chosen page; a page script run without it was started by Streamlit's legacy mode.
_IN_APP: contextvars.ContextVar[bool] = contextvars.ContextVar("law_explorer_in_app", default=False)
_PAGE: contextvars.ContextVar[str] = contextvars.ContextVar("law_explorer_page", default="page")  # its url path
REDIRECTED_KEY = "law_explorer_legacy_redirect"


DEFAULT_URL = "overview"
# Streamlit serves the default page at the root URL and still reserves its url_path, which would then answer "Page
# not found"; the default page gets this unused name, and /overview is a hidden alias that switches to the root.
_DEFAULT_PAGE_RESERVED = "overview-default-page"


def _to_overview() -> None:
    st.switch_page(PAGES_DIR / "overview.py")


def build_pages() -> dict[str, list[st.Page]]:
    """The sections of ``NAVIGATION`` as Streamlit pages (the Overview is the default page, at the root URL).

    ``/app`` (the main script's name, where Streamlit's legacy mode put the home page) and ``/overview`` (the page's
    name, like ``/law`` for the law page) are hidden aliases of it.
    """
    sections = {
        section: [st.Page(PAGES_DIR / e.file, title=e.title, icon=e.icon, default=e.url == DEFAULT_URL,
                          url_path=_DEFAULT_PAGE_RESERVED if e.url == DEFAULT_URL else e.url)
                  for e in entries]
        for section, entries in NAVIGATION.items()
    }
    first = next(iter(sections))
    sections[first] += [st.Page(_to_overview, title="Law Explorer", url_path=alias, visibility="hidden")
                        for alias in ("app", DEFAULT_URL)]
    return sections


def sidebar_links() -> None:
    """The sidebar navigation: one link per page of ``NAVIGATION`` under its section's heading.

    Streamlit's own navigation menu is switched off (``client.showSidebarNavigation = false`` in
    .streamlit/config.toml): with a ``pages/`` folder beside ``app.py`` its first run would list the raw
    files of ``pages/`` before ``app.py`` declares its pages. These links are all the sidebar ever shows.
    """
    for section, entries in NAVIGATION.items():
        st.sidebar.caption(section.upper())
        for e in entries:
            st.sidebar.page_link(PAGES_DIR / e.file, label=e.title, icon=e.icon)


def run_app() -> None:
    """Body of app.py: page config, our navigation, the sidebar (links, study picker), then the chosen page."""
    st.set_page_config(page_title="Law Explorer", page_icon=":material/insights:", layout="wide")
    navigation = st.navigation(build_pages(), position="hidden")
    st.session_state.pop(REDIRECTED_KEY, None)
    sidebar_links()
    study_picker()
    token, page = _IN_APP.set(True), _PAGE.set(navigation.url_path or DEFAULT_URL)
    try:
        navigation.run()
    finally:
        _IN_APP.reset(token)
        _PAGE.reset(page)


def ensure_app_navigation() -> None:
    """Make ``app.py`` (our ``st.navigation``) take over when Streamlit ran a page script on its own.

    With a folder named ``pages/`` beside ``app.py``, a fresh server process starts in Streamlit's legacy
    multipage mode: a first visit to ``/law`` runs ``pages/law.py`` alone. Declaring the app's pages with the
    public ``st.navigation`` ends that mode for the process; the rerun then goes through ``app.py`` with the
    same URL (the page is resolved by its url path). Nothing is drawn before the rerun. A page that is the
    main script itself (``AppTest.from_file("pages/law.py")``) is redirected once per session, then renders.
    """
    if _IN_APP.get() or st.session_state.get(REDIRECTED_KEY):
        return
    st.session_state[REDIRECTED_KEY] = True
    st.navigation(build_pages(), position="hidden")
    st.rerun()


@contextmanager
def collecting_exports(page: str) -> Iterator[None]:
    """Collect the figures and tables shown inside the block; afterwards offer them as one zip in the sidebar."""
    token = _EXPORTS.set([])
    try:
        yield
        with user_errors():
            export_all_button(page)
    finally:
        _EXPORTS.reset(token)


def run(render: Callable[[], None]) -> None:
    """Run a page's ``render`` function with engine errors shown as ``st.error``, then its "Export all" button."""
    ensure_app_navigation()
    with collecting_exports(_PAGE.get()), user_errors():
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


def _methods(study: Any, column: str) -> str:
    """The study's A or C method(s) as recorded with its settings (else in its metadata), '; '-joined."""
    values = []
    if column in getattr(study, "settings", pd.DataFrame()).columns:
        values = sorted({str(v).strip() for v in study.settings[column].dropna() if str(v).strip()})
    return "; ".join(values) or str(study.meta.get(column, "") or "not recorded")


def provenance(study: Any, feature_set: str = "", **extra: Any) -> export.Provenance:
    """What an export of this page records: the study, its content hash, the fit, its A method and C protocol."""
    record = {"a_method": _methods(study, "a_method"), "c_protocol": _methods(study, "c_method")}
    record.update({k: str(v) for k, v in extra.items()})
    return export.Provenance(
        study=study.name,
        study_hash=study.content_hash(),
        feature_set=feature_set,
        law_version=law.LAW_VERSION,
        extra=record,
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


def _provenance_json(provenance: export.Provenance) -> str:
    """The record without its time, so that identical exports share one cache entry (the time is set on click)."""
    data = {k: v for k, v in provenance.__dict__.items() if k != "exported_at"}
    return json.dumps({**data, "extra": dict(provenance.extra)}, sort_keys=True)


def _provenance_from(provenance_json: str) -> export.Provenance:
    record = json.loads(provenance_json)
    return export.Provenance(**{k: record[k] for k in ("study", "study_hash", "feature_set", "law_version")},
                             extra=record["extra"])


@functools.lru_cache(maxsize=64)
def _static_bytes(fig_json: str, fmt: str, provenance_json: str) -> bytes:
    return export.figure_to_bytes(pio.from_json(fig_json), fmt, _provenance_from(provenance_json))


# Figures and tables shown in this run of a page, for its "Export all" zip (see run / export_all_button).
_EXPORTS: contextvars.ContextVar[list | None] = contextvars.ContextVar("law_explorer_exports", default=None)


def _register_export(name: str, kind: str, payload: str, provenance_json: str) -> None:
    items = _EXPORTS.get()
    if items is not None:
        items.append((name, kind, payload, provenance_json))


def _zip_bytes(page: str, items: tuple) -> bytes:
    bundle = []
    for name, kind, payload, provenance_json in items:
        data = pio.from_json(payload) if kind == "figure" else pd.read_json(io.StringIO(payload), orient="split")
        bundle.append(export.ExportItem(name, data, _provenance_from(provenance_json)))
    return export.bundle_zip(bundle, page)


def export_all_button(page: str) -> None:
    """Sidebar button: every figure (PNG + HTML) and table (CSV) this page showed, in one zip with a manifest."""
    items = tuple(_EXPORTS.get() or ())
    if not items:
        return
    figures = sum(1 for item in items if item[1] == "figure")
    st.sidebar.download_button(
        f"Export all ({figures} figures, {len(items) - figures} tables)",
        data=functools.partial(_zip_bytes, page, items),
        file_name=f"law-explorer-{page}.zip",
        mime="application/zip",
        key="export-all",
        icon=":material/folder_zip:",
        on_click="ignore",
        help="One zip: each figure as PNG and HTML, each table as CSV, each with its provenance (study, fit, "
             "A method, C protocol, encoder weights, time, app version), plus manifest.json",
    )


def export_buttons(fig: Any, name: str, provenance: export.Provenance) -> None:
    """PNG, SVG and HTML download buttons for a plotly figure; bytes are rendered only when clicked (then cached)."""
    fig_json = fig.to_json()
    prov_json = _provenance_json(provenance)
    _register_export(name, "figure", fig_json, prov_json)
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
    _register_export(name, "table", table.to_json(orient="split", date_format="iso"), _provenance_json(provenance))
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


if __name__ == "__main__":  # Streamlit's legacy mode runs every file of pages/ as a page, this one included
    ensure_app_navigation()


@st.fragment(run_every=1.0)
def _wait_for_fit(study, model: str) -> None:
    """Polls the background fit (the script thread never waits for it); redraws the page when it is ready."""
    if fit_ready(study, model, wait_s=0.0):
        st.rerun(scope="app")
    st.info(f"Fitting the '{model}' law and its leave-one-out refits in the background…", icon=":material/hourglass_top:")


def law_fit_ready(study, model: str) -> bool:
    """Whether the study's ``model`` fit is ready for predictions; otherwise shows why not (too large for the app:
    the CLI command; still fitting: progress that redraws the page when done)."""
    why = too_large_for_app(study, model)
    if why:
        st.info(why[0].upper() + why[1:].replace("law evaluate", "law predict") + ".", icon=":material/terminal:")
        return False
    if not fit_ready(study, model):
        _wait_for_fit(study, model)
        return False
    return True
