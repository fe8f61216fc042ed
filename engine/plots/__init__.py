"""Pure plotly figure builders for the app and exports (no streamlit): law, overview, policy and match figures.

The face: one module per area (``from engine.plots import law``) and the setting-family colours.
"""

from __future__ import annotations

from typing import Any

__all__ = ["labels", "law", "match_canvas", "matches", "overview", "policy", "setting_families", "style", "tables"]


def __getattr__(name: str) -> Any:
    if name == "setting_families":
        from engine.plots.style import setting_families

        return setting_families
    raise AttributeError(f"module 'engine.plots' has no attribute {name!r}")
