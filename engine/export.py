"""Figure and table exports (PNG, SVG, HTML, CSV) that record which study and fit produced them.

Every exported file carries a provenance record — the study name, its content hash, the fit's
feature set and law version, plus free-form extras — in the place its format reserves for it:

- PNG: ``tEXt`` chunks (keyword ``law-explorer:<field>``) right after the ``IHDR`` chunk;
- SVG: a ``<metadata>`` element holding the record as JSON (first child of ``<svg>``);
- HTML: an HTML comment at the top of the document and a ``<meta name="law-explorer-provenance">``;
- CSV: leading comment lines ``# key: value`` (read back with ``pandas.read_csv(..., comment="#")``); text
  cells that a spreadsheet would run as a formula are prefixed with ``'`` (:func:`csv_safe`).

Plotly figures are rendered by kaleido (headless Chromium; ``/usr/bin/chromium`` is used when
``BROWSER_PATH`` is unset), altair charts by vl-convert (offline).
"""

from __future__ import annotations

import functools
import html
import io
import json
import os
import re
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import InputError, NotAvailableError

EXPORT_VERSION = "1"
FIGURE_FORMATS = ("png", "svg", "html")
MIME_TYPES = {"png": "image/png", "svg": "image/svg+xml", "html": "text/html", "csv": "text/csv"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_KEY_PREFIX = "law-explorer:"
_SVG_META_ID = "law-explorer-provenance"
_SYSTEM_CHROMIUM = Path("/usr/bin/chromium")


def _now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=1)
def app_version() -> str:
    """``git describe`` of the checkout the app runs from, else the installed package's version."""
    from engine import config

    try:
        out = subprocess.run(["git", "describe", "--tags", "--always", "--dirty"], cwd=config.REPO_ROOT,
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return f"git {out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"law-explorer {metadata.version('law-explorer')}"
    except metadata.PackageNotFoundError:
        return "law-explorer (unknown version)"


@dataclass(frozen=True)
class Provenance:
    """Which study and which fit produced an exported figure or table, when, and with which app version.

    ``extra`` holds what the view adds: the A method, the C protocol, the encoder and its weights hash, the
    dataset and pair of a keypoint figure.
    """

    study: str
    study_hash: str
    feature_set: str = ""
    law_version: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    exported_at: str = field(default_factory=_now_utc)

    def fields(self) -> dict[str, str]:
        """Flat ``str -> str`` record, in a stable order, as written into the files."""
        record = {k: str(v) for k, v in asdict(self).items() if k not in ("extra", "exported_at")}
        record.update({str(k): str(v) for k, v in self.extra.items()})
        record["exported_at"] = self.exported_at
        record["app_version"] = app_version()
        record["generator"] = f"law-explorer export v{EXPORT_VERSION}"
        return record


def figure_to_bytes(fig: Any, fmt: str, provenance: Provenance, width: int = 900, height: int = 600) -> bytes:
    """Render a plotly figure or an altair chart as PNG, SVG or HTML bytes with the provenance embedded."""
    fmt = fmt.lower()
    if fmt not in FIGURE_FORMATS:
        raise InputError(f"unknown figure format {fmt!r}; choose one of {', '.join(FIGURE_FORMATS)}")
    if _is_altair(fig):
        raw = _altair_bytes(fig, fmt)
    elif hasattr(fig, "to_plotly_json"):
        raw = _plotly_bytes(fig, fmt, width, height)
    else:
        raise InputError(f"cannot export a {type(fig).__name__}: expected a plotly figure or an altair chart")
    return embed_provenance(raw, fmt, provenance)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe_cell(value: Any) -> Any:
    """A text cell starting with ``= + - @ TAB CR`` that is not a number gets a leading ``'`` (spreadsheet formula injection)."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` whose text cells and column names cannot run as spreadsheet formulas."""
    out = table.rename(columns=csv_safe_cell)
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(csv_safe_cell)
    return out


def table_to_csv(table: pd.DataFrame, provenance: Provenance) -> bytes:
    """CSV bytes preceded by ``# key: value`` provenance lines; cells are made formula-safe (:func:`csv_safe`)."""
    header = "".join(f"# {key}: {_one_line(value)}\n" for key, value in provenance.fields().items())
    return (header + csv_safe(table).to_csv(index=False)).encode("utf-8")


def strip_provenance(data: bytes) -> bytes:
    """CSV bytes without the leading ``# key: value`` lines that ``table_to_csv`` writes (others untouched)."""
    lines = data.splitlines(keepends=True)
    start = 0
    while start < len(lines) and lines[start].startswith(b"# "):
        start += 1
    return b"".join(lines[start:])


def embed_provenance(data: bytes, fmt: str, provenance: Provenance) -> bytes:
    """Write the provenance record into already-rendered PNG, SVG or HTML bytes."""
    record = provenance.fields()
    if fmt == "png":
        return _png_with_text(data, {_PNG_KEY_PREFIX + k: v for k, v in record.items()})
    if fmt == "svg":
        return _svg_with_metadata(data.decode("utf-8"), record).encode("utf-8")
    if fmt == "html":
        return _html_with_comment(data.decode("utf-8"), record).encode("utf-8")
    raise InputError(f"cannot embed provenance into {fmt!r}; use table_to_csv for tables")


def image_to_png(rgb: Any, provenance: Provenance) -> bytes:
    """An H x W x 3 uint8 picture as PNG bytes with the provenance record in its text chunks."""
    from PIL import Image

    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InputError(f"a picture to export must be H x W x 3 uint8, got {array.shape} {array.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(array, "RGB").save(buffer, format="PNG")
    return embed_provenance(buffer.getvalue(), "png", provenance)


def read_provenance(data: bytes, fmt: str) -> dict[str, str]:
    """The provenance record embedded in exported bytes (empty when there is none)."""
    if fmt == "png":
        return {k[len(_PNG_KEY_PREFIX) :]: v for k, v in png_text_chunks(data).items() if k.startswith(_PNG_KEY_PREFIX)}
    text = data.decode("utf-8")
    if fmt == "svg":
        match = re.search(rf'<metadata id="{_SVG_META_ID}">(.*?)</metadata>', text, re.S)
        return json.loads(html.unescape(match.group(1))) if match else {}
    if fmt == "html":
        match = re.search(r"<!-- law-explorer provenance\n(.*?)\n-->", text, re.S)
        return json.loads(match.group(1).replace("- -", "--")) if match else {}
    if fmt == "csv":
        record = {}
        for line in text.splitlines():
            if not line.startswith("# "):
                break
            key, _, value = line[2:].partition(": ")
            record[key] = value
        return record
    raise InputError(f"unknown export format {fmt!r}")


def png_text_chunks(data: bytes) -> dict[str, str]:
    """All ``tEXt`` chunks of a PNG as ``keyword -> text``."""
    if not data.startswith(_PNG_SIGNATURE):
        raise InputError("not a PNG file (bad signature)")
    chunks: dict[str, str] = {}
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            chunks[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png_with_text(data: bytes, texts: dict[str, str]) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        raise InputError("not a PNG file (bad signature)")
    (ihdr_len,) = struct.unpack(">I", data[8:12])
    after_ihdr = 8 + 12 + ihdr_len
    extra = b"".join(
        _png_chunk(b"tEXt", key.encode("latin-1")[:79] + b"\0" + value.encode("latin-1", "replace"))
        for key, value in texts.items()
    )
    return data[:after_ihdr] + extra + data[after_ihdr:]


def _svg_with_metadata(svg: str, record: dict[str, str]) -> str:
    match = re.search(r"<svg\b[^>]*>", svg)
    if match is None:
        raise InputError("not an SVG document (no <svg> element)")
    payload = html.escape(json.dumps(record, sort_keys=True), quote=False)
    meta = f'<metadata id="{_SVG_META_ID}">{payload}</metadata>'
    return svg[: match.end()] + meta + svg[match.end() :]


def _html_with_comment(doc: str, record: dict[str, str]) -> str:
    body = json.dumps(record, indent=1, sort_keys=True).replace("--", "- -")
    comment = f"<!-- law-explorer provenance\n{body}\n-->\n"
    meta = f'<meta name="{_SVG_META_ID}" content="{html.escape(json.dumps(record, sort_keys=True))}">'
    doc = re.sub(r"<head>", "<head>" + meta, doc, count=1) if "<head>" in doc else doc
    return comment + doc


def _one_line(value: str) -> str:
    return " ".join(str(value).split())


def _is_altair(fig: Any) -> bool:
    return type(fig).__module__.startswith("altair")


def _plotly_bytes(fig: Any, fmt: str, width: int, height: int) -> bytes:
    if fmt == "html":
        # plotly.js inline: the file must open offline
        return fig.to_html(include_plotlyjs=True, full_html=True).encode("utf-8")
    if "BROWSER_PATH" not in os.environ and _SYSTEM_CHROMIUM.exists():
        os.environ["BROWSER_PATH"] = str(_SYSTEM_CHROMIUM)
    try:
        return fig.to_image(format=fmt, width=width, height=height, scale=2 if fmt == "png" else 1)
    except Exception as exc:  # kaleido raises many types when Chromium is missing or crashes
        raise NotAvailableError(f"static {fmt.upper()} export needs Chromium for kaleido ({type(exc).__name__}: {exc})") from exc


def _altair_bytes(chart: Any, fmt: str) -> bytes:
    import vl_convert as vlc

    spec = chart.to_json()
    if fmt == "png":
        return vlc.vegalite_to_png(spec, scale=2)
    if fmt == "svg":
        return vlc.vegalite_to_svg(spec).encode("utf-8")
    return vlc.vegalite_to_html(spec, bundle=True).encode("utf-8")


# ----------------------------------------------------------------------------- export all


@dataclass(frozen=True)
class ExportItem:
    """One figure (plotly / altair) or table (DataFrame) of a page, with what produced it."""

    name: str
    payload: Any
    provenance: Provenance


def _unique(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "item"
    candidate, n = base, 2
    while candidate in used:
        candidate, n = f"{base}-{n}", n + 1
    used.add(candidate)
    return candidate


def bundle_zip(items: Sequence[ExportItem], page: str, figure_formats: Sequence[str] = ("png", "html")) -> bytes:
    """Every figure and table of a page in one zip: each figure as PNG and HTML, each table as CSV, all with their
    provenance, plus ``manifest.json`` (page, time, app version, one entry per file with its record).

    Plotly HTML files share one ``plotly.min.js`` in the zip (they open offline). A format that cannot be rendered
    here (PNG without Chromium) is left out and the manifest says why; nothing else is skipped.
    """
    for fmt in figure_formats:
        if fmt not in FIGURE_FORMATS:
            raise InputError(f"unknown figure format {fmt!r}; choose from {', '.join(FIGURE_FORMATS)}")
    buffer = io.BytesIO()
    used: set[str] = set()
    manifest: dict[str, Any] = {"page": page, "exported_at": _now_utc(), "app_version": app_version(), "files": []}
    needs_plotlyjs = False
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for item in items:
            stem = _unique(item.name, used)
            record = item.provenance.fields()
            if isinstance(item.payload, pd.DataFrame):
                zf.writestr(f"{stem}.csv", table_to_csv(item.payload, item.provenance))
                manifest["files"].append({"file": f"{stem}.csv", "kind": "table", "provenance": record})
                continue
            for fmt in figure_formats:
                entry = {"file": f"{stem}.{fmt}", "kind": "figure", "provenance": record}
                try:
                    if fmt == "html" and hasattr(item.payload, "to_plotly_json"):
                        raw = item.payload.to_html(include_plotlyjs="directory", full_html=True).encode("utf-8")
                        data = embed_provenance(raw, "html", item.provenance)
                        needs_plotlyjs = True
                    else:
                        data = figure_to_bytes(item.payload, fmt, item.provenance)
                except NotAvailableError as exc:
                    manifest["files"].append({**entry, "skipped": str(exc)})
                    continue
                zf.writestr(entry["file"], data)
                manifest["files"].append(entry)
        if needs_plotlyjs:
            from plotly.offline import get_plotlyjs

            zf.writestr("plotly.min.js", get_plotlyjs())
        zf.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    return buffer.getvalue()
