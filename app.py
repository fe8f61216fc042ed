"""Law Explorer, the Streamlit app: page config, grouped navigation and the sidebar study picker."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import streamlit as st

from pages import _ui


@st.cache_resource(show_spinner=False)
def _start_up() -> None:
    """Once per server: remove upload staging folders that killed uploads left behind."""
    from engine.encoders import sweep_stale_staging

    sweep_stale_staging()


_start_up()
_ui.run_app()
