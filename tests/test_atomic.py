"""Atomic writes: the target holds the old content or the new, never half, and no temporary file is left."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from engine.atomic import atomic_path, write_json_atomic, write_text_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "data.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "trunc', encoding="utf-8")
        raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["data.json"]


def test_writes_replace_whole_files_with_the_usual_permissions(tmp_path):
    target = tmp_path / "out.csv"
    write_text_atomic(target, "a,b\n1,2\n")
    write_text_atomic(target, "a\n")
    assert target.read_text() == "a\n"
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    assert target.stat().st_mode == reference.stat().st_mode


def test_suffix_for_writers_that_append_their_own(tmp_path):
    target = tmp_path / "f.npy"
    with atomic_path(target, suffix=".npy") as tmp:
        np.save(tmp, np.arange(3), allow_pickle=False)
    assert np.load(target).tolist() == [0, 1, 2]
    assert os.listdir(tmp_path) == ["f.npy"]
