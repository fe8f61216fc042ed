"""Exports: valid PNG/SVG/HTML/CSV bytes that carry the study, its content hash and the fit."""

from __future__ import annotations

import io
import shutil
import xml.etree.ElementTree as ET

import altair as alt
import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image

from engine import export
from engine.errors import InputError

PROV = export.Provenance(study="paper-v3", study_hash="abc123def4567890", feature_set="ac_poly", law_version="3",
                         extra={"benchmark": "mme"})
needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None and not export._SYSTEM_CHROMIUM.exists(),
                                    reason="kaleido needs Chromium")


def _figure() -> go.Figure:
    return go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], mode="markers", name="settings"))


def _assert_provenance(record: dict[str, str]) -> None:
    assert record["study"] == "paper-v3"
    assert record["study_hash"] == "abc123def4567890"
    assert record["feature_set"] == "ac_poly"
    assert record["law_version"] == "3"
    assert record["benchmark"] == "mme"


@needs_chromium
def test_plotly_png_is_decodable_and_records_provenance():
    data = export.figure_to_bytes(_figure(), "png", PROV, width=300, height=200)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.size == (600, 400)  # scale 2
    assert image.text["law-explorer:study"] == "paper-v3"  # Pillow reads our tEXt chunks
    _assert_provenance(export.read_provenance(data, "png"))


def test_a_picture_exports_as_png_with_the_same_pixels_and_its_provenance():
    import numpy as np

    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = export.image_to_png(rgb, PROV)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), rgb)  # lossless
    _assert_provenance(export.read_provenance(data, "png"))
    with pytest.raises(InputError, match="H x W x 3 uint8"):
        export.image_to_png(rgb.astype(np.float32), PROV)


@needs_chromium
def test_plotly_svg_parses_as_xml_with_metadata():
    data = export.figure_to_bytes(_figure(), "svg", PROV, width=300, height=200)
    root = ET.fromstring(data)
    assert root.tag.endswith("svg")
    meta = root.find("{http://www.w3.org/2000/svg}metadata")
    assert meta is not None and "abc123def4567890" in meta.text
    _assert_provenance(export.read_provenance(data, "svg"))


def test_plotly_html_is_self_contained_and_records_provenance():
    data = export.figure_to_bytes(_figure(), "html", PROV)
    text = data.decode()
    assert text.startswith("<!-- law-explorer provenance")
    assert "<html>" in text and "plotly" in text.lower()
    assert '<script src="http' not in text  # plotly.js is inline: opens offline
    _assert_provenance(export.read_provenance(data, "html"))


def test_altair_png_and_svg_via_vl_convert():
    chart = alt.Chart(pd.DataFrame({"A": [0.1, 0.5, 0.9], "C": [3, 1, 2]})).mark_point().encode(x="A", y="C")
    png = export.figure_to_bytes(chart, "png", PROV)
    Image.open(io.BytesIO(png)).load()
    _assert_provenance(export.read_provenance(png, "png"))
    svg = export.figure_to_bytes(chart, "svg", PROV)
    ET.fromstring(svg)
    _assert_provenance(export.read_provenance(svg, "svg"))


def test_csv_has_comment_header_and_round_trips():
    table = pd.DataFrame({"setting": ["CLIP336", "DINOv2"], "r2": [0.95, 0.5]})
    data = export.table_to_csv(table, PROV)
    assert data.decode().startswith("# study: paper-v3\n")
    _assert_provenance(export.read_provenance(data, "csv"))
    back = pd.read_csv(io.BytesIO(data), comment="#")
    pd.testing.assert_frame_equal(back, table)


def test_provenance_with_awkward_values_stays_parseable():
    prov = export.Provenance(study='my "study" --> <x>', study_hash="h", extra={"note": "line one\nline two"})
    html_bytes = export.figure_to_bytes(_figure(), "html", prov)
    assert export.read_provenance(html_bytes, "html")["study"] == 'my "study" --> <x>'
    csv_bytes = export.table_to_csv(pd.DataFrame({"x": [1]}), prov)
    assert export.read_provenance(csv_bytes, "csv")["note"] == "line one line two"


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError):
        export.figure_to_bytes(_figure(), "gif", PROV)
    with pytest.raises(InputError):
        export.figure_to_bytes(object(), "html", PROV)
    with pytest.raises(InputError):
        export.png_text_chunks(b"not a png")


def test_every_export_records_its_time_and_the_app_version():
    import subprocess
    from datetime import UTC, datetime

    from engine import config

    before = datetime.now(UTC).replace(microsecond=0)
    prov = export.Provenance(study="s", study_hash="h")
    record = export.read_provenance(export.table_to_csv(pd.DataFrame({"a": [1]}), prov), "csv")
    stamp = datetime.strptime(record["exported_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= stamp <= datetime.now(UTC)
    git = subprocess.run(["git", "describe", "--tags", "--always", "--dirty"], cwd=config.REPO_ROOT,
                         capture_output=True, text=True)
    expected = f"git {git.stdout.strip()}" if git.returncode == 0 else "law-explorer 0.1.0"
    assert record["app_version"] == expected
    svg = export.embed_provenance(b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "svg", prov)
    assert export.read_provenance(svg, "svg")["app_version"] == expected


@needs_chromium
def test_bundle_zip_holds_every_figure_and_table_with_a_manifest():
    import json
    import zipfile

    table = pd.DataFrame({"setting": ["=cmd", "b"], "score": [1.5, 2.0]})
    prov = export.Provenance(study="paper-v3", study_hash="h1", extra={"a_method": "caption log-likelihood (v3)",
                                                                       "c_protocol": "default", "weights_hash": "w9"})
    items = [export.ExportItem("law fit", _figure(), prov), export.ExportItem("law fit", _figure(), PROV),
             export.ExportItem("fit table", table, prov)]
    data = export.bundle_zip(items, page="law")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        assert names == {"law-fit.png", "law-fit.html", "law-fit-2.png", "law-fit-2.html", "fit-table.csv",
                         "plotly.min.js", "manifest.json"}
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["page"] == "law" and len(manifest["files"]) == 5
        assert Image.open(io.BytesIO(zf.read("law-fit.png"))).size[0] > 0
        assert export.read_provenance(zf.read("law-fit.png"), "png")["weights_hash"] == "w9"
        assert export.read_provenance(zf.read("law-fit-2.png"), "png")["benchmark"] == "mme"
        page = zf.read("law-fit.html").decode()
        assert '<script src="plotly.min.js"' in page or "plotly.min.js" in page
        assert export.read_provenance(zf.read("law-fit.html"), "html")["c_protocol"] == "default"
        csv = zf.read("fit-table.csv")
        assert export.read_provenance(csv, "csv")["a_method"] == "caption log-likelihood (v3)"
        back = pd.read_csv(io.BytesIO(export.strip_provenance(csv)))
        assert list(back["score"]) == [1.5, 2.0] and len(back) == 2
    with pytest.raises(InputError):
        export.bundle_zip(items, page="law", figure_formats=("gif",))
