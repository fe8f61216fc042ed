"""The one error guard of every page: a user error is its one line; a bug is logged with its traceback and shown
as one line (the first of its message); with LAW_EXPLORER_DEBUG set it is raised instead."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest


def _page(kind: str) -> None:
    from engine.errors import InputError
    from pages import _ui

    with _ui.user_errors():
        if kind == "user":
            raise InputError("the file has no 'setting' column")
        raise RuntimeError("shape mismatch in layer 3\nTraceback-like second line\nthird")


@pytest.mark.parametrize("kind, expected", [
    ("user", "the file has no 'setting' column"),
    ("bug", "Internal error (RuntimeError: shape mismatch in layer 3). The server log has the details."),
])
def test_one_line_whatever_the_error(monkeypatch, kind, expected):
    monkeypatch.delenv("LAW_EXPLORER_DEBUG", raising=False)
    at = AppTest.from_function(_page, args=(kind,)).run(timeout=120)
    assert not at.exception
    assert [e.value for e in at.error] == [expected]


def test_debug_raises_the_bug(monkeypatch):
    monkeypatch.setenv("LAW_EXPLORER_DEBUG", "1")
    at = AppTest.from_function(_page, args=("bug",)).run(timeout=120)
    assert at.exception and "shape mismatch" in at.exception[0].message
