"""Studies in the store: save, list, copy, delete, set_setting_scores, atomic failures."""

from __future__ import annotations

import pytest

from engine.errors import InputError
from engine.study import (
    bundled_study,
    copy_study,
    delete_study,
    list_studies,
    load_study,
    parse_study_file,
    save_study,
    set_setting_scores,
)

CSV = b"setting,A_loglik,C_pck10,mme,ok_vqa\nS1,-1.9,15,1500,50\nS2,-2.5,20,1300,45\nS3,-3.5,5,900,30\n"


def test_list_includes_bundled(isolated_home):
    rows = list_studies()
    assert rows[0]["name"] == "paper-v3" and rows[0]["n_settings"] == 15 and len(rows[0]["benchmarks"]) == 8


def test_save_load_list_delete(isolated_home):
    study = parse_study_file(CSV, name="mine")
    save_study(study)
    loaded = load_study("mine")
    assert loaded.content_hash() == study.content_hash()
    assert [r["name"] for r in list_studies()] == ["paper-v3", "mine"]
    with pytest.raises(InputError, match="already exists"):
        save_study(study)
    save_study(study, overwrite=True)
    delete_study("mine")
    with pytest.raises(InputError, match="unknown study 'mine'"):
        load_study("mine")
    with pytest.raises(InputError, match="no study named"):
        delete_study("mine")


def test_bundled_is_read_only(isolated_home):
    with pytest.raises(InputError, match="copy it first"):
        set_setting_scores("paper-v3", "CLIP336", C=1.0)
    with pytest.raises(InputError, match="cannot be deleted"):
        delete_study("paper-v3")
    with pytest.raises(InputError, match="bundled"):
        save_study(bundled_study())


def test_copy_and_set_setting_scores(isolated_home):
    copy_study("paper-v3", "work")
    updated = set_setting_scores("work", "MyEncoder", A=-2.1, C=18.5, metadata={"notes": "measured here"})
    assert "MyEncoder" in updated.setting_names
    set_setting_scores("work", "MyEncoder", scores={"mme": 1400.0})
    stored = load_study("work")
    assert stored.wide_scores().loc["MyEncoder", "mme"] == 1400.0
    assert stored.settings.set_index("setting").loc["MyEncoder", "notes"] == "measured here"
    assert load_study("paper-v3").setting_names[-1] == "SDim"


def test_failed_update_leaves_store_unchanged(isolated_home):
    save_study(parse_study_file(CSV, name="small"))
    before = load_study("small").content_hash()
    with pytest.raises(InputError, match="too few settings"):
        set_setting_scores("small", "S1", scores={"mme": float("nan"), "ok_vqa": float("nan")})
    with pytest.raises(InputError, match="not a number"):
        set_setting_scores("small", "S2", scores={"mme": "abc"})
    assert load_study("small").content_hash() == before


def test_load_unknown_lists_options(isolated_home, tmp_path):
    with pytest.raises(InputError, match="paper-v3"):
        load_study("nothing-here")
    path = tmp_path / "file_study.csv"
    path.write_bytes(CSV)
    assert load_study(str(path)).name == "file_study"
