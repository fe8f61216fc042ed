"""AppTest of the Data page: no Delete button on the bundled study, benchmark groups edited and set on import."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.study import copy_study, list_studies, load_study

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


@pytest.fixture(autouse=True)
def _fresh_store(isolated_home):
    return isolated_home


def _page(study: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/data.py"), default_timeout=TIMEOUT)
    if study:
        at.session_state["study_name"] = study
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _labels(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def test_bundled_study_has_no_delete_button():
    at = _page()
    assert "Delete" not in _labels(at) and "Copy" in _labels(at)
    assert any("cannot be deleted" in i.value for i in at.info)
    copy_study("paper-v3", "mine")
    at = _page("mine")
    assert "Delete" in _labels(at)


def test_the_list_of_stored_studies_has_its_csv_export():
    copy_study("paper-v3", "mine")
    at = _page("mine")
    assert "csv-studies" in [b.key for b in at.get("download_button")]
    assert {"paper-v3", "mine"} <= set(at.dataframe[0].value["study"])


def test_groups_tab_saves_valid_groups_and_refuses_bad_ones():
    copy_study("paper-v3", "mine")
    at = _page("mine", **{"data_groups_mine": {"edited_rows": {1: {"group": "ocr"}}, "added_rows": [],
                                               "deleted_rows": []}})
    at.button(key="data_groups_save").click().run()
    assert not at.exception and not at.error
    saved = load_study("mine")
    assert saved.group_of("mme") == "ocr" and saved.groups["ocr"][0] == "mme"
    at = _page("mine", **{"data_groups_mine": {"edited_rows": {0: {"group": "has space"}}, "added_rows": [],
                                               "deleted_rows": []}})
    at.button(key="data_groups_save").click().run()
    assert len(at.error) == 1 and "invalid group name" in at.error[0].value and "\n" not in at.error[0].value
    assert load_study("mine").group_of("mmbench_en") == "vision"


def test_groups_tab_on_the_bundled_study_is_read_only():
    at = _page()
    assert any("read-only" in i.value for i in at.info)
    assert not [b for b in at.button if b.key == "data_groups_save"]


def test_import_with_groups_and_a_bad_groups_line():
    csv = ("setting,benchmark,A,C,score\n" + "".join(
        f"S{i},gqa,{a},{c},{s}\nS{i},my_bench,{a},{c},{s / 2}\n"
        for i, (a, c, s) in enumerate([(-1.9, 15.0, 61.0), (-2.5, 20.0, 58.0), (-3.5, 5.0, 40.0)]))).encode()
    at = _page()
    at.text_input(key="data_import_name").set_value("g")
    at.text_input(key="data_import_groups").set_value("my_bench")
    at.file_uploader(key="data_import_file").upload("g.csv", csv, "text/csv")
    at.button[_labels(at).index("Import")].click().run()
    assert len(at.error) == 1 and "BENCHMARK=GROUP" in at.error[0].value
    assert [s["name"] for s in list_studies()] == ["paper-v3"]
    at.text_input(key="data_import_groups").set_value("my_bench=reasoning")
    at.button[_labels(at).index("Import")].click().run()
    assert not at.exception and not at.error
    assert load_study("g").groups == {"vision": ["gqa"], "reasoning": ["my_bench"]}
