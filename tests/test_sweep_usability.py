"""A sweep as a researcher uses it: refused before any work when its study cannot take C, progress that says what
it counts, a summary line that says what was attached (no Ray: these run on the local backend or on plain data)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _row(encoder: str, status: str, done: int = 0, total: int = 0, message: str = "", C: float | None = None,
         reused: bool = False, error: str | None = None) -> dict:  # fmt: skip
    return {"encoder": encoder, "status": status, "done": done, "total": total, "message": message,
            "result_id": None, "C": C, "A": None, "a_status": None, "images_encoded": None, "seconds": None,
            "reused": reused, "error": error}  # fmt: skip


def _status(job_status: str, rows: list[dict], study: str | None = "mine") -> dict:
    return {"sweep": "0123456789abcdef", "study": study, "encoders": rows, "images_encoded": 0, "reused": 0,
            "id": "20261201-000000-000000-deadbeef", "status": job_status, "error": None, "backend": "local",
            "progress": {"done": 0, "total": len(rows), "message": ""}}  # fmt: skip


@pytest.mark.parametrize("study", ["paper-v3", "file"])
def test_a_sweep_into_the_bundled_study_or_a_study_file_is_refused_before_any_job_or_evaluation(
    isolated_home, tmp_path, study
):
    """The bundled study is read-only and a file is not stored: attaching C to either fails, so the sweep must
    fail at once (before, it evaluated every encoder, then failed at the first attach)."""
    from engine import jobs
    from engine.errors import InputError
    from engine.study import bundled_study, study_to_json
    from engine.sweep import SweepSpec, submit_sweep

    if study == "file":
        path = tmp_path / "mine.json"
        path.write_text(study_to_json(bundled_study()), encoding="utf-8")
        study = str(path)
    spec = SweepSpec(encoders=("pixels-8",), dataset="builtin", limit=2, study=study)
    with pytest.raises(InputError, match=r"read-only|no stored study"):
        submit_sweep(spec)
    assert jobs.list_jobs() == []
    assert not (isolated_home / "sweeps").exists() or not any((isolated_home / "sweeps").iterdir())


def test_the_cli_refuses_the_bundled_study_with_one_line_and_writes_nothing(isolated_home):
    import os

    env = {**os.environ, "LAW_EXPLORER_HOME": str(isolated_home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "engine", "sweep", "run", "--encoders", "pixels-8", "--dataset",
                           "builtin", "--limit", "2", "--study", "paper-v3"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 'paper-v3' is read-only"), proc.stderr
    assert not (isolated_home / "jobs").exists() or not any((isolated_home / "jobs").iterdir())


def test_a_stored_study_is_accepted(isolated_home):
    from engine.study import copy_study
    from engine.sweep import SweepSpec

    copy_study("paper-v3", "mine")
    SweepSpec(encoders=("pixels-8",), dataset="builtin", limit=2, study="mine").check()  # no error


def test_progress_bars_say_whether_they_count_images_or_pairs_and_show_no_tqdm_rate(monkeypatch):
    """A running evaluation reports images while it encodes and pairs while it matches: each bar shows the
    evaluation's own words, never tqdm's unit-less ``it/s``."""
    import engine.sweep
    from engine.cli import sweep as cli_sweep

    states = iter([
        _status("running", [_row("enc-a", "running", 30, 114, "encoded 30/114 images"), _row("enc-b", "pending")]),
        _status("running", [_row("enc-a", "running", 80, 101, "80/101 pairs"), _row("enc-b", "pending")]),
        _status("done", [_row("enc-a", "done", 101, 101, "101 pairs", C=52.5),
                         _row("enc-b", "done", 101, 101, "finished earlier: reused", C=61.25, reused=True)]),
    ])  # fmt: skip
    monkeypatch.setattr(engine.sweep, "sweep_status", lambda _id: next(states))
    monkeypatch.setattr(cli_sweep.time, "sleep", lambda _s: None)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setenv("COLUMNS", "160")
    final = cli_sweep._follow("20261201-000000-000000-deadbeef", timeout=None)
    text = err.getvalue()
    assert final["status"] == "done"
    assert "encoded 30/114 images" in text and "80/101 pairs" in text
    assert "101/101 pairs (reused)" in text and "C=61.25" in text
    assert "it/s" not in text and "?it" not in text


def test_the_summary_line_says_how_many_encoders_were_attached_not_that_a_cancelled_sweep_attached_c():
    from engine.cli.sweep import _table, _text

    cancelled = _status("cancelled", [_row("enc-a", "pending", 96, 114, "cancelled"), _row("enc-b", "pending")])
    assert "nothing attached to study 'mine'" in _text(cancelled)
    assert "C of" not in _text(cancelled)
    half = _status("failed", [_row("enc-a", "done", 101, 101, "101 pairs", C=50.0), _row("enc-b", "failed",
                                                                                         error="boom")])
    assert "C of 1 of 2 encoder(s) attached to study 'mine'" in _text(half)
    table = _table(half)
    assert table.loc["enc-a", "progress"] == "101/101 pairs"
    assert table.loc["enc-b", "progress"] == ""
    assert str(table["images encoded"].dtype) == "Int64"
    assert "A" not in table.columns  # a C-only sweep


def test_a_resumed_encoder_never_shows_running_beside_the_last_runs_cancelled(isolated_home, monkeypatch):
    import engine.sweep.run as sweep_run
    from engine.sweep import EncoderStatus, SweepSpec, run_sweep
    from engine.sweep.run import load_state, save_state

    spec = SweepSpec(encoders=("pixels-8",), dataset="builtin", limit=2)
    state = load_state(spec)
    state.encoders["pixels-8"].message = "cancelled"  # what a cancel leaves (status pending)
    save_state(state)
    seen = []
    real = sweep_run.save_state

    def record(s):
        entry = s.encoders["pixels-8"]
        seen.append((entry.status, entry.message))
        real(s)

    monkeypatch.setattr(sweep_run, "save_state", record)
    run_sweep(spec)
    running = [message for status, message in seen if status == EncoderStatus.RUNNING]
    assert running and "cancelled" not in running
    assert seen[-1][0] == EncoderStatus.DONE


def test_a_sweeps_c_in_a_study_says_how_it_was_measured_and_builtin_c_is_flagged_against_spair_c(isolated_home):
    """C from the builtin pairs (or a subset) is not on the scale of SPair-71k test C: the setting it lands in must
    say so (``c_method``), so placing it on the study's law flags a method mismatch instead of mixing the scales."""
    from engine.law.predict import method_mismatch
    from engine.study import copy_study, load_study
    from engine.sweep import SweepSpec, run_sweep

    copy_study("paper-v3", "mine")
    run_sweep(SweepSpec(encoders=("pixels-8",), dataset="builtin", limit=2, study="mine"))
    study = load_study("mine")
    row = study.settings.set_index("setting").loc["pixels-8"]
    assert "builtin test" in row["c_method"] and "first 2 pairs" in row["c_method"]
    assert "not comparable to SPair-71k test C" in row["c_method"]
    assert method_mismatch(study, None, row["c_method"])  # the paper's settings record SPair-71k C
    # (which datasets count as SPair-71k scale: test_corr_evaluate's c_method tests)
