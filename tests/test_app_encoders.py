"""The encoders page under Streamlit's AppTest: registry table, details/probe, an upload, a refused upload."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from _uploads import finish_upload
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "encoders.py")


def _page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def test_table_details_and_probe(isolated_home):
    at = _page()
    assert at.title[0].value == "Encoders"
    names = list(at.dataframe[0].value["name"])
    assert "CLIP336" in names and "efficientnet-lite0" in names
    at.toggle(key="encoders_offline_only").set_value(True).run()
    assert "CLIP336" not in list(at.dataframe[0].value["name"])
    at.selectbox(key="encoders_selected").set_value("CLIP224").run()
    assert any("Not available offline" in w.value for w in at.warning)
    at.selectbox(key="encoders_selected").set_value("pixels-8").run()
    at.button(key="encoders_probe").click().run()
    assert not at.exception and not at.error
    assert any("28 x 28" in s.value for s in at.success)
    assert "encoders_probe_png" in [b.key for b in at.get("download_button")], "the probe picture has an export"


def test_probe_export_puts_each_feature_cell_as_a_block_beside_the_picture():
    import numpy as np

    from engine.encoders import ProbeResult

    image = np.full((6, 9, 3), 40, dtype=np.uint8)
    pca = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)  # 2 x 3 cells, each its own colour
    result = ProbeResult(name="x", grid=(2, 3), channels=4, weights_hash="h", info={}, image=image, pca_rgb=pca,
                         image_source="test")
    both = result.side_by_side()
    assert both.shape == (6, 9 + 8 + 9, 3)
    assert np.array_equal(both[:, :9], image) and (both[:, 9:17] == 255).all()
    expected = np.repeat(np.repeat(pca, 3, axis=0), 3, axis=1)  # at the picture's height, 6 / 2 = 3 pixels a cell
    assert np.array_equal(both[:, 17:], expected)


def test_upload_and_refusal(isolated_home, tmp_path):
    at = _page()
    assert not any("torchscript" in o.lower() for o in at.selectbox(key="upload_kind").options)
    assert any("never code" in c.value for c in at.caption)
    at.selectbox(key="upload_kind").set_value("state-dict").run()
    at.selectbox(key="upload_arch").set_value("efficientnet-lite0-random").run()
    from engine.encoders.registry import build_encoder

    buf = io.BytesIO()
    torch.save(build_encoder("efficientnet-lite0-random").module.state_dict(), buf)
    at.text_input(key="upload_label").set_value("page conv").run()
    at.file_uploader(key="upload_file").set_value(("conv.pt", buf.getvalue(), "application/octet-stream")).run()
    finish_upload(at.button(key="upload_go").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("stored as upload:" in s.value for s in at.success)
    at = _page()
    uploaded = [n for n in at.dataframe[0].value["name"] if n.startswith("upload:")]
    assert len(uploaded) == 1
    at.selectbox(key="encoders_selected").set_value(uploaded[0]).run()
    assert any("page conv" in j.value for j in at.json)
    at.button(key="encoders_delete").click().run()
    assert not at.exception and not any(n.startswith("upload:") for n in at.dataframe[0].value["name"])
    at.selectbox(key="upload_kind").set_value("hf-zip").run()
    at.file_uploader(key="upload_file").set_value(("bad.zip", b"not a zip", "application/zip")).run()
    finish_upload(at.button(key="upload_go").click().run())
    assert not at.exception
    assert any("bad.zip: not a zip archive" in e.value for e in at.error)


def test_validation_runs_off_the_script_thread(isolated_home, monkeypatch):
    """The page run returns while the upload is still validating (showing progress), then shows its result."""
    import threading

    import engine.encoders.upload_background as background
    from engine.errors import InputError

    release, threads = threading.Event(), []

    def slow_upload(data, filename, kind, **options):
        threads.append(threading.current_thread().name)
        assert release.wait(60)
        raise InputError(f"{filename}: refused after validation")

    monkeypatch.setattr(background, "upload_bytes", slow_upload)
    at = _page()
    at.selectbox(key="upload_kind").set_value("hf-zip").run()
    at.file_uploader(key="upload_file").set_value(("slow.zip", b"PK", "application/zip")).run()
    at.button(key="upload_go").click().run()  # returns although the validation has not finished
    assert not at.exception and not at.error
    assert any("Validating slow.zip" in i.value for i in at.info)
    assert at.button(key="upload_go").disabled  # no second upload while one validates
    release.set()
    finish_upload(at)
    assert threads and threads[0] != threading.current_thread().name
    assert any("slow.zip: refused after validation" in e.value for e in at.error)
    assert not any("Validating" in i.value for i in at.info)
