"""Law Explorer, the Streamlit app: page config, grouped navigation and the sidebar study picker."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pages import _ui

_ui.run_app()
