"""The project installs with a `law-explorer` console script that is `python -m engine`, usable from any folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_declares_the_console_script_and_the_makefile_installs_the_project():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"law-explorer": "engine.cli:main"}
    install_lines = [line.strip() for line in (ROOT / "Makefile").read_text().splitlines() if "pip install" in line]
    assert any(line.endswith("-e .") or " -e . " in line for line in install_lines), install_lines
    assert "law-explorer " in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_installed_console_script_runs_from_another_folder(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                            "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=600)
    if build.returncode != 0 and "setuptools" in build.stderr:
        pytest.skip("setuptools is not available to build the project offline")
    assert build.returncode == 0, build.stderr
    script = target / "bin" / "law-explorer"
    assert script.is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    via_script = subprocess.run([sys.executable, str(script), "--help"], cwd=elsewhere, env=env,
                                capture_output=True, text=True, timeout=120)
    via_module = subprocess.run([sys.executable, "-m", "engine", "--help"], cwd=ROOT, capture_output=True, text=True,
                                timeout=120)
    assert via_script.returncode == 0 == via_module.returncode, via_script.stderr
    assert via_script.stdout.startswith("usage: law-explorer ")
    # the same command groups, whichever way the CLI is started
    assert via_script.stdout.replace("law-explorer", "python -m engine") == via_module.stdout
    bad = subprocess.run([sys.executable, str(script), "law", "fit", "--study"], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    # a non-editable install ships the bundled study (setup.py copies data/ into the package): the installed CLI
    # fits it from another folder, the same fit as from the source checkout
    assert (target / "engine" / "bundled_data" / "paper_v3" / "paper_v3.csv").is_file()
    fit = subprocess.run([sys.executable, str(script), "law", "fit", "--study", "paper-v3", "--format", "json"],
                         cwd=elsewhere, env={**env, "LAW_EXPLORER_HOME": str(tmp_path / "home")},
                         capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr
    here = subprocess.run([sys.executable, "-m", "engine", "law", "fit", "--study", "paper-v3", "--format", "json"],
                          cwd=ROOT, env={**os.environ, "LAW_EXPLORER_HOME": str(tmp_path / "home2")},
                          capture_output=True, text=True, timeout=300)
    assert json.loads(fit.stdout)["mean_r2"] == json.loads(here.stdout)["mean_r2"]
