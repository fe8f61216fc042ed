"""A researcher's day in AppTest: an upload shown by its label everywhere, next steps, fresh pickers, exports."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from _uploads import finish_upload, tiny_hf_zip
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
LABEL = "my tiny dino"


def _tiny_hf_zip(tmp_path: Path) -> bytes:
    return tiny_hf_zip(tmp_path).read_bytes()


def _page(name: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / name), default_timeout=240)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _upload(tmp_path: Path) -> tuple[AppTest, str]:
    at = _page("encoders.py")
    at.selectbox(key="upload_kind").set_value("hf-zip").run()
    at.text_input(key="upload_label").set_value(LABEL).run()
    at.file_uploader(key="upload_file").set_value(("model.zip", _tiny_hf_zip(tmp_path), "application/zip")).run()
    finish_upload(at.button(key="upload_go").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    from engine.encoders.registry import list_encoders

    [upload_id] = [s.name for s in list_encoders() if s.family == "upload"]
    return at, upload_id


def test_an_upload_is_shown_by_its_label_selected_and_offered_next_steps(isolated_home, tmp_path):
    at, upload_id = _upload(tmp_path)
    assert any(LABEL in s.value and "probe it" in s.value for s in at.success)
    picker = at.selectbox(key="encoders_selected")
    assert picker.value == upload_id  # the new upload is selected in the details panel
    assert LABEL in picker.options and upload_id not in picker.options  # shown (and searched) by its label
    assert upload_id in picker.help  # the id (hash) on hover
    table = at.dataframe[0].value
    assert table.loc[table["name"] == upload_id, "encoder"].item() == LABEL
    for key in ("encoders_next_c", "encoders_next_score", "encoders_probe"):
        assert at.button(key=key)
    at.button(key="encoders_probe").click().run()
    assert not at.exception and not at.error
    assert any("grid of 32-d features" in s.value for s in at.success)
    captions = [c for picture in at.get("image") for c in picture.captions]
    assert any(c.startswith("Input (builtin:") for c in captions)
    assert any(c.startswith("Feature PCA") for c in captions)  # the probe's picture of the features


def test_pickers_of_other_pages_list_a_new_upload_at_once(isolated_home, tmp_path):
    before = _page("matches.py", encoder="pixels-8")  # fills the page's caches before the upload
    assert not any(LABEL in o for o in before.multiselect(key="mx_encoders").options)
    _, upload_id = _upload(tmp_path)
    matches = _page("matches.py", encoder=upload_id)
    assert matches.multiselect(key="mx_encoders").value == [upload_id]
    assert LABEL in matches.multiselect(key="mx_encoders").options
    assert not [o for o in matches.multiselect(key="mx_encoders").options if o.startswith("upload:")]
    score = _page("score_encoder.py", encoder=upload_id)
    assert score.selectbox(key="score_encoder").value == upload_id
    assert LABEL in score.selectbox(key="score_encoder").options
    assert upload_id in score.selectbox(key="score_encoder").help
    assert any(f"Setting name: `{LABEL} (demo)`" in c.value for c in score.caption)  # the label, not the hash


def test_next_step_buttons_run_without_error(isolated_home, tmp_path):
    """The buttons switch page with ``?encoder=`` (followed in Chromium by tests/test_browser.py; AppTest does not
    follow st.switch_page); the receiving pages' handling of ``?encoder=`` is tested above."""
    _, upload_id = _upload(tmp_path)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
    at.switch_page(str(ROOT / "pages" / "encoders.py")).run()
    at.selectbox(key="encoders_selected").set_value(upload_id).run()
    for key in ("encoders_next_score", "encoders_next_c"):
        at.button(key=key).click().run()
        assert not at.exception, [e.value for e in at.exception]


@pytest.mark.parametrize("page", ["law.py", "encoders.py"])
def test_every_page_offers_an_export_all_zip(isolated_home, page):
    from pages import _ui

    at = _page(page)
    labels = [b.label for b in at.sidebar.get("download_button")]
    assert any(label.startswith("Export all (") for label in labels), labels
    # the zip itself: what the button downloads for this page's figures and tables
    items = []
    token = _ui._EXPORTS.set(items)
    try:
        _ui._register_export("fig", "figure", '{"data": [], "layout": {}}', _ui._provenance_json(
            _ui.export.Provenance(study="s", study_hash="h", extra={"c_protocol": "default"})))
    finally:
        _ui._EXPORTS.reset(token)
    data = _ui._zip_bytes(page, tuple(items))
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["page"] == page and {f["file"] for f in manifest["files"]} >= {"fig.html"}


def test_job_titles_and_setting_names_use_an_uploads_label(isolated_home, tmp_path, monkeypatch):
    from engine import jobs, pipeline
    from engine.correspondence.evaluate import submit_evaluation
    from engine.encoders.upload import upload_bytes
    from engine.study import BUNDLED_NAME

    upload_id = upload_bytes(_tiny_hf_zip(tmp_path), "model.zip", "hf-zip", label=LABEL).name
    titles = []
    monkeypatch.setattr(jobs, "submit", lambda target, params, title=None: titles.append(title) or f"id-{len(titles)}")
    monkeypatch.setattr(jobs, "chain", lambda job_id, target, params, title=None: titles.append(title) or True)
    submit_evaluation("builtin", upload_id, limit=3)
    plan = pipeline.plan(upload_id, BUNDLED_NAME, limit=3)
    pipeline.launch(plan)
    assert plan.setting == f"{LABEL} (demo)"
    assert len(titles) == 4 and all(t.endswith(LABEL) or f"of {LABEL} " in t for t in titles), titles
    assert not [t for t in titles if "upload:" in t]
