"""Test-wide set-up: offline hub, an isolated state folder per session, single-threaded torch."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Pages show unexpected exceptions as one st.error line; in tests they must surface as failures.
os.environ["LAW_EXPLORER_DEBUG"] = "1"
_SESSION_HOME = tempfile.mkdtemp(prefix="law-explorer-test-")
os.environ["LAW_EXPLORER_HOME"] = _SESSION_HOME
os.environ.pop("LAW_EXPLORER_DB", None)

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"
TEST_OUTPUT = REPO_ROOT / "test-output"


@pytest.fixture
def isolated_home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty state folder (store, caches, jobs) for one test."""
    monkeypatch.setenv("LAW_EXPLORER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LAW_EXPLORER_DB", raising=False)
    return tmp_path / "home"


@pytest.fixture
def reference_dir() -> Path:
    """The paper's published tables in ../shared/reference; skips the test when absent."""
    if not (REFERENCE_DIR / "law_v3_paper_tables.csv").exists():
        pytest.skip("../shared/reference is not present")
    return REFERENCE_DIR


@pytest.fixture
def jobs_home(isolated_home) -> Path:
    """An isolated state folder whose background job workers are cancelled after the test, even on failure."""
    yield isolated_home
    from engine import jobs

    for record in jobs.list_jobs():
        if record.status in jobs.ACTIVE:
            jobs.cancel(record.id, wait_s=5)


@pytest.fixture
def tiny_encoders():
    """The tiny random-init test encoders (tests/encoder_conformance.py), registered for this test only."""
    from encoder_conformance import TINY_SPECS, registered

    with registered(TINY_SPECS.values()):
        yield TINY_SPECS
