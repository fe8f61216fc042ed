"""Security regressions of issue 9: zip guards, stale staging folders, CSV formula injection, paths taken from data."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from engine import config, export
from engine.encoders import safe_files
from engine.encoders.staging import STAGING_PREFIX, claim_staging, sweep_stale_staging
from engine.encoders.upload import upload_file
from engine.errors import InputError

REPO = Path(__file__).resolve().parent.parent


def _nothing_staged() -> None:
    assert [p.name for p in config.subdir("uploads").iterdir()] == []


# --- zips ------------------------------------------------------------------------------------------


def test_many_small_zero_members_are_refused_before_anything_is_written(isolated_home, tmp_path, monkeypatch):
    """The per-member ratio test passes members of exactly 1 MiB; the whole-archive ratio must not."""
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", "{}")
        for i in range(40):
            zf.writestr(f"w{i}.bin", b"\0" * safe_files.RATIO_MIN_BYTES)
    assert archive.stat().st_size < 100_000
    written: list[str] = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, info, *a, **k: written.append(str(info)) or real_open(self, info, *a, **k))
    with pytest.raises(InputError, match=r"ratio \d+ > 200"):
        upload_file(archive, "hf-zip")
    assert written == []  # refused before extraction
    _nothing_staged()


def _lying_zip(path: Path, real: bytes, declared: int) -> None:
    """A stored (uncompressed) member whose headers claim ``declared`` bytes while ``real`` is stored."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("weights.safetensors", real)
    data = bytearray(path.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size in local / central header
        start = 0
        while (pos := data.find(sig, start)) >= 0:
            name_len = struct.unpack("<H", data[pos + (26 if sig == b"PK\x03\x04" else 28): pos + (28 if sig == b"PK\x03\x04" else 30)])[0]
            name_at = pos + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at:name_at + name_len] == b"weights.safetensors":
                data[pos + offset: pos + offset + 4] = struct.pack("<I", declared)
            start = pos + 4
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("declared", [10, 5000])
def test_member_lying_about_its_size_is_a_clean_refusal(isolated_home, tmp_path, declared):
    archive = tmp_path / "liar.zip"
    _lying_zip(archive, os.urandom(1000), declared)
    with pytest.raises(InputError, match=r"liar\.zip: refused archive: member 'weights\.safetensors'"):
        upload_file(archive, "hf-zip")
    _nothing_staged()


def test_cli_reports_a_lying_member_in_one_line(tmp_path):
    archive = tmp_path / "liar.zip"
    _lying_zip(archive, os.urandom(1000), 10)
    env = os.environ | {"LAW_EXPLORER_HOME": str(tmp_path / "home")}
    env.pop("LAW_EXPLORER_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "engine", "encoders", "upload", str(archive), "--kind", "hf-zip"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "internal error" not in proc.stderr, proc.stderr


def test_stale_staging_folders_are_swept_and_live_ones_kept(isolated_home):
    uploads = config.subdir("uploads")
    dead = uploads / f"{STAGING_PREFIX}dead"
    dead.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (dead / ".owner").write_text(f"{os.uname().nodename} {proc.pid}")  # a process that has exited
    (dead / "big.bin").write_bytes(b"\0" * 1000)
    live = uploads / f"{STAGING_PREFIX}live"
    live.mkdir()
    claim_staging(live)
    assert sweep_stale_staging() == [dead.name]
    assert not dead.exists() and live.exists()


def test_every_upload_sweeps_killed_uploads(isolated_home, tmp_path):
    uploads = config.subdir("uploads")
    dead = uploads / f"{STAGING_PREFIX}killed"
    dead.mkdir()
    (dead / ".owner").write_text(f"{os.uname().nodename} 999999999")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputError):
        upload_file(junk, "hf-zip")
    assert not dead.exists()


# --- CSV formula injection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"), ("+1+1", "'+1+1"), ("-x", "'-x"), ("@SUM(A1)", "'@SUM(A1)"),
     ("\tTAB", "'\tTAB"), ("\rCR", "'\rCR"), ("-1.5", "-1.5"), ("+3", "+3"), ("plain", "plain"), ("", "")],
)
def test_csv_safe_cell(cell, expected):
    assert export.csv_safe_cell(cell) == expected


def test_table_csv_escapes_formulas_but_keeps_numbers():
    table = pd.DataFrame({"setting": ["=cmd|' /C calc'!A0", "ok"], "A": [-1.5, 2.0], "=bad": ["@x", "y"]})
    data = export.table_to_csv(table, export.Provenance(study="s", study_hash="h"))
    back = pd.read_csv(io.BytesIO(data), comment="#")
    assert back["setting"].tolist() == ["'=cmd|' /C calc'!A0", "ok"]
    assert back["A"].tolist() == [-1.5, 2.0] and back["'=bad"].tolist() == ["'@x", "y"]


def test_study_export_csv_escapes_formulas(tmp_path):
    csv = ("setting,A,C,mme\n=cmd|' /C calc'!A0,1,2,3\n@S2,2,3,4\nS3,3,1,6\n")
    (tmp_path / "s.csv").write_text(csv)
    env = os.environ | {"LAW_EXPLORER_HOME": str(tmp_path / "home")}
    run = lambda *a: subprocess.run([sys.executable, "-m", "engine", "study", *a], cwd=REPO, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    assert run("import", str(tmp_path / "s.csv"), "--name", "inj").returncode == 0
    out = run("export", "inj", "--to", "csv")
    assert out.returncode == 0, out.stderr
    cells = [line.split(",")[0] for line in out.stdout.splitlines()[1:]]
    assert cells == ["'=cmd|' /C calc'!A0", "'@S2", "S3"]


# --- paths from data -------------------------------------------------------------------------------


def test_spair_layout_stems_cannot_leave_the_split_folder(tmp_path):
    from engine.correspondence.datasets import open_dataset
    from engine.correspondence.synthetic import write_synthetic_spair

    root = write_synthetic_spair(tmp_path / "SPair", n_categories=1, images_per_category=2, n_pairs=2, size_range=(32, 40))
    outside = tmp_path / "secret.json"
    good = sorted((root / "PairAnnotation" / "test").glob("*.json"))[0]
    outside.write_text(good.read_text())
    (root / "Layout" / "large" / "test.txt").write_text("../../../secret\n")
    with pytest.raises(InputError, match=r"line 1: pair stem '\.\./\.\./\.\./secret' leaves"):
        open_dataset(f"spair:{root}").pairs("test")


def test_json_study_benchmark_names_cannot_be_paths():
    from engine.study import parse_study_file

    long = [{"setting": f"s{i}", "benchmark": "../../etc", "A": i, "C": 2 * i % 5, "score": i} for i in range(4)]
    settings = [{"setting": f"s{i}", "A": i, "C": 2 * i % 5} for i in range(4)]
    payload = json.dumps({"kind": "law-explorer-study", "settings": settings, "long": long}).encode()
    with pytest.raises(InputError, match=r"benchmark name '\.\./\.\./etc' is not allowed"):
        parse_study_file(payload, name="p")
