"""Law Explorer, the Streamlit app: page config, grouped navigation and the sidebar study picker."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import streamlit as st

from pages import _ui


def build_pages() -> dict[str, list[st.Page]]:
    """The sidebar sections of ``_ui.NAVIGATION`` as Streamlit pages."""
    sections: dict[str, list[st.Page]] = {}
    for section, entries in _ui.NAVIGATION.items():
        sections[section] = [
            st.Page(_ui.PAGES_DIR / e.file, title=e.title, url_path=e.url, icon=e.icon, default=e.url == "overview")
            for e in entries
        ]
    return sections


@st.cache_resource(show_spinner=False)
def _start_up() -> None:
    """Once per server: remove upload staging folders that killed uploads left behind."""
    from engine.encoders.staging import sweep_stale_staging

    sweep_stale_staging()


st.set_page_config(page_title="Law Explorer", page_icon=":material/insights:", layout="wide")
_start_up()
navigation = st.navigation(build_pages(), position="sidebar", expanded=True)
_ui.study_picker()
navigation.run()
