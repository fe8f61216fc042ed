"""The running app in headless Chromium: every page by sidebar click and by deep link, right sidebar, no exceptions."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from _app_server import CHROMIUM, CHROMIUM_ARGS, REPO_ROOT, streamlit_server
from _uploads import tiny_hf_zip

from pages import _ui

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
]

SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"
# url path -> (sidebar title, heading on the page or None where another team owns the page)
OWN_PAGES = {
    "overview": ("Overview", "Law of Vision Representation"),
    "law": ("The law, per benchmark", "The law, per benchmark"),
    "policy": ("AC policy", "AC policy: which encoders deserve a finetune"),
    "data": ("Studies & data", "Studies & data"),
}
TIMEOUT_MS = 90_000


def _expected_nav() -> dict[str, str]:
    """url path -> sidebar title of every page app.py shows, in sidebar order."""
    return {e.url: e.title for entries in _ui.NAVIGATION.values() for e in entries}


NAV_LINK = '[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]'
# Snapshots of the sidebar and of every exception box, from the very first paint (see _record_first_load).
RECORDER = """
window.__lx = {sidebars: [], exceptions: []};
new MutationObserver(() => {
  const side = document.querySelector('[data-testid="stSidebar"]');
  const text = side ? side.innerText : '';
  if (text && !window.__lx.sidebars.includes(text)) window.__lx.sidebars.push(text);
  document.querySelectorAll('[data-testid="stException"]').forEach(e => window.__lx.exceptions.push(e.innerText));
}).observe(document, {subtree: true, childList: true, characterData: true});
"""
# The files of pages/ as Streamlit's legacy auto-discovered menu names them (app.py, _ui.py, score_encoder.py ...).
RAW_PAGE_NAMES = {"app", "ui", "_ui", "overview", "law", "policy", "data", "encoders", "matches", "score encoder",
                  "score_encoder", "jobs"}


def _sidebar_titles(page) -> list[str]:
    # a link's text is "<material icon name>\n\n<title>"
    return [t.strip().splitlines()[-1] for t in page.locator(NAV_LINK).all_inner_texts()]


def _current_titles(page) -> list[str]:
    """Titles of the highlighted sidebar links (the current page has a tinted background)."""
    return page.evaluate(
        "sel => [...document.querySelectorAll(sel)].filter(e => getComputedStyle(e).backgroundColor !== 'rgba(0, 0, 0, 0)')"
        ".map(e => e.innerText.trim().split('\\n').pop())", NAV_LINK)


def _assert_no_raw_listing(page) -> None:
    record = page.evaluate("window.__lx")
    for snapshot in record["sidebars"]:
        raw = RAW_PAGE_NAMES & {line.strip() for line in snapshot.splitlines()}
        assert not raw, f"the sidebar listed raw files of pages/: {sorted(raw)} in {snapshot!r}"
    assert not record["exceptions"], record["exceptions"][0]


def _wait_ready(page, expected: list[str]) -> None:
    """Wait for our sidebar links and for the run to finish."""
    page.wait_for_selector(NAV_LINK, timeout=TIMEOUT_MS)
    deadline = time.monotonic() + 30
    while _sidebar_titles(page) != expected and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=TIMEOUT_MS,
    )
    page.wait_for_selector('[data-testid="stMainBlockContainer"] [data-testid="stElementContainer"]',
                           timeout=TIMEOUT_MS)
    _wait_stable(page)


def _wait_stable(page, quiet_s: float = 1.5, limit_s: float = 30.0) -> None:
    """Wait until the number of rendered elements has not changed for ``quiet_s`` (the run has finished)."""
    count = "() => document.querySelectorAll('[data-testid=\"stElementContainer\"]').length"
    deadline = time.monotonic() + limit_s
    last, since = page.evaluate(count), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        page.wait_for_timeout(250)
        now = page.evaluate(count)
        if now != last:
            last, since = now, time.monotonic()


def _screenshot(page, name: str) -> None:
    """Full-height screenshot once every plotly chart on the page has drawn."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')].every(e => e.querySelector('.main-svg'))",
        timeout=TIMEOUT_MS,
    )
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _check_page(page, url_path: str, expected_nav: dict[str, str]) -> None:
    _wait_ready(page, list(expected_nav.values()))
    titles = _sidebar_titles(page)
    assert titles == list(expected_nav.values()), f"sidebar shows {titles}"
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0, "Streamlit's own (auto-discovered) menu is shown"
    assert _current_titles(page) == [expected_nav[url_path]]
    _assert_no_raw_listing(page)
    heading = OWN_PAGES.get(url_path, (None, None))[1]
    if heading:
        page.get_by_role("heading", name=heading).first.wait_for(timeout=TIMEOUT_MS)
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator('[data-testid="stException"]').first.inner_text()
    assert page.get_by_text("Page not found").count() == 0, f"'Page not found' shown for /{url_path}"


def test_every_page_by_deep_link_and_by_sidebar(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    expected_nav = _expected_nav()
    assert set(OWN_PAGES) <= set(expected_nav)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with streamlit_server(home=tmp_path) as base, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 2000})
            page.add_init_script(RECORDER)
            # the first visit of a fresh server is a deep link to another team's page (or to ours when
            # theirs are absent): the legacy pages/ mode must not take over
            first = next((p for p in expected_nav if p not in OWN_PAGES), "law")
            for url_path in [first, *[p for p in expected_nav if p != first]]:
                # the default page lives at the root URL (Streamlit gives the default page no path of its own)
                page.goto(base if url_path == "overview" else f"{base}/{url_path}")
                _check_page(page, url_path, expected_nav)
                _screenshot(page, f"deeplink-{url_path}")
            page.goto(f"{base}/overview")  # the overview's own name, like /law: a hidden alias of the root URL
            _check_page(page, "overview", expected_nav)
            page.goto(base)
            _check_page(page, "overview", expected_nav)
            page.get_by_text("Settings", exact=True).first.wait_for(timeout=TIMEOUT_MS)
            for url_path, title in expected_nav.items():
                page.locator(NAV_LINK, has_text=title).first.click()
                page.wait_for_url(re.compile(rf"/{url_path}(\?.*)?$") if url_path != "overview" else re.compile(".*"))
                _check_page(page, url_path, expected_nav)
                _screenshot(page, f"click-{url_path}")
            page.goto(f"{base}/law?benchmark=mme")
            _check_page(page, "law", expected_nav)
            page.get_by_text("predicted vs actual", exact=False).first.wait_for(timeout=TIMEOUT_MS)
            _screenshot(page, "deeplink-law-mme")
        finally:
            browser.close()


@pytest.mark.parametrize("first", ["app", "ui", "score-encoder"])
def test_first_load_of_a_fresh_server_never_lists_raw_files_nor_fails(tmp_path, first):
    """The very first visit of a server process (Streamlit's legacy pages/ mode) shows only our sidebar."""
    sync_api = pytest.importorskip("playwright.sync_api")
    expected_nav = _expected_nav()
    with streamlit_server(home=tmp_path) as base, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.add_init_script(RECORDER)
            page.goto(f"{base}/{first}")
            _wait_ready(page, list(expected_nav.values()))
            _assert_no_raw_listing(page)
            assert _sidebar_titles(page) == list(expected_nav.values())
            assert page.locator('[data-testid="stException"]').count() == 0
            assert "ImportError" not in page.locator('[data-testid="stMain"]').inner_text()
            # (a first visit to a URL that is not a file name of pages/, e.g. /app, /ui, /score-encoder, gets
            # Streamlit's own "Page not found" notice from its legacy mode before app.py takes over)
            page.goto(f"{base}/app")  # /app is a hidden alias of the overview once the app's navigation is in place
            _wait_ready(page, list(expected_nav.values()))
            assert page.get_by_text("Page not found").count() == 0
            assert _current_titles(page) == ["Overview"]
            _assert_no_raw_listing(page)
        finally:
            browser.close()


# ----------------------------------------------------------------------------- a researcher's flow

LABEL = "browser tiny dino"
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def _tiny_hf_zip(folder) -> str:
    return str(tiny_hf_zip(folder, top="tiny-dino", name="tiny-dino.zip"))


def _no_errors(page, allowed: tuple[str, ...] = ()) -> None:
    """No exception and no error box, except the flags named in ``allowed`` (an intended st.error)."""
    texts = page.locator(ERRORS).all_inner_texts()
    # a box's text starts with its icon's name; the message is the last paragraph
    unexpected = [t for t in texts if not any(t.strip().split("\n")[-1].startswith(a) for a in allowed)]
    assert not unexpected, unexpected[0]


def _settle(page) -> None:
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=TIMEOUT_MS,
    )
    _wait_stable(page)


def _pick(page, label: str, typed: str) -> None:
    """Choose in a (searchable) selectbox by typing part of the option's text."""
    box = page.locator('[data-testid="stSelectbox"]', has=page.get_by_text(label, exact=True)).first
    box.click()
    page.keyboard.type(typed)
    page.locator('[role="option"]', has_text=typed).first.click()
    _settle(page)


@pytest.mark.slow
def test_upload_evaluate_score_and_export(tmp_path, monkeypatch):
    """Upload a checkpoint, evaluate its C, score it (leaving the page after Launch), export; no error anywhere."""
    import io
    import json
    import zipfile

    sync_api = pytest.importorskip("playwright.sync_api")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LAW_EXPLORER_HOME", str(home))
    monkeypatch.delenv("LAW_EXPLORER_DB", raising=False)
    from engine import export, jobs, pipeline

    archive = _tiny_hf_zip(tmp_path)
    with streamlit_server(home=home) as base, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1800}, accept_downloads=True)
            page.add_init_script(RECORDER)
            # 1. upload
            page.goto(f"{base}/encoders")
            _wait_ready(page, list(_expected_nav().values()))
            page.get_by_label("Label").fill(LABEL)
            page.get_by_label("Label").press("Enter")
            _settle(page)
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(archive)
            _settle(page)
            page.get_by_role("button", name="Upload and validate").click()
            page.get_by_text("probe it", exact=False).first.wait_for(timeout=TIMEOUT_MS)
            _settle(page)
            _no_errors(page)
            banner = page.locator('[data-testid="stAlertContentSuccess"]').first.inner_text()
            upload_id = re.search(r"upload:[0-9a-f]{12}", banner).group(0)
            assert LABEL in banner
            # 2. evaluate C: the next-step button opens the matches page with the upload selected
            page.get_by_role("button", name="Evaluate C (keypoint matches)").click()
            page.get_by_role("heading", name="Keypoint matches").wait_for(timeout=TIMEOUT_MS)
            _settle(page)
            assert LABEL in page.locator('[data-testid="stMultiSelect"]').first.inner_text()
            page.get_by_role("tab", name="PCK per category").click()
            page.get_by_label("pairs (0 = all)").fill("6")
            page.get_by_label("pairs (0 = all)").press("Enter")
            _settle(page)
            page.get_by_role("button", name="Evaluate", exact=True).click()
            page.get_by_text("evaluation finished", exact=False).wait_for(timeout=300_000)
            _settle(page)
            _no_errors(page)
            # 3. score: pick the upload by typing its label, reuse the stored C, launch, then leave the page
            page.locator(NAV_LINK, has_text="Score an encoder").click()
            page.get_by_role("heading", name="Score an encoder").wait_for(timeout=TIMEOUT_MS)
            _settle(page)
            _pick(page, "Encoder", LABEL)
            page.get_by_label("Pairs (0 = all)").fill("6")
            page.get_by_label("Pairs (0 = all)").press("Enter")
            _settle(page)
            _no_errors(page)
            page.get_by_role("button", name=re.compile(r"Launch \d missing job")).click()
            page.get_by_text("Background jobs:", exact=False).wait_for(timeout=TIMEOUT_MS)
            page.locator(NAV_LINK, has_text="Jobs").click()  # leave: the A job must still start, server-side
            page.get_by_role("heading", name="Jobs").first.wait_for(timeout=TIMEOUT_MS)
            deadline = time.monotonic() + 600
            while not (found := jobs.list_jobs(target=pipeline.LOGLIK_TARGET)) and time.monotonic() < deadline:
                time.sleep(1)
            assert found, "the A job never started after leaving the page"
            assert jobs.wait(found[0].id, timeout=max(1.0, deadline - time.monotonic())).status == "done"
            page.locator(NAV_LINK, has_text="Score an encoder").click()
            page.get_by_role("heading", name="Score an encoder").wait_for(timeout=TIMEOUT_MS)
            _settle(page)
            _pick(page, "Encoder", LABEL)
            page.get_by_label("Pairs (0 = all)").fill("6")
            page.get_by_label("Pairs (0 = all)").press("Enter")
            heading = page.get_by_role("heading", name=re.compile(r"Where it (falls|would fall) on the law"))
            heading.wait_for(timeout=TIMEOUT_MS)
            _settle(page)
            _screenshot(page, "flow-score")
            # demo-scale A and C (builtin pairs, demo LLM, default protocol) on paper-v3: flagged as not comparable
            assert "illustration only" in heading.inner_text()
            flags = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
            assert any(t.strip().split("\n")[-1].startswith("Not comparable") for t in flags), flags
            _no_errors(page, allowed=("Not comparable",))
            # 4. export: one table as CSV, and the whole page as a zip
            with page.expect_download() as csv_download:
                page.locator('[data-testid="stDownloadButton"]', has_text="CSV").first.click()
            record = export.read_provenance(Path(csv_download.value.path()).read_bytes(), "csv")
            assert record["encoder"] == upload_id and record["encoder_weights_hash"] not in ("", "None")
            assert record["candidate_c_protocol"].startswith("default on builtin")
            assert record["exported_at"] and record["app_version"]
            assert "method_mismatch" in record["flags"]  # the placement's flags travel with its exports
            with page.expect_download(timeout=300_000) as zip_download:
                page.locator('[data-testid="stSidebar"] [data-testid="stDownloadButton"]', has_text="Export all").click()
            with zipfile.ZipFile(io.BytesIO(Path(zip_download.value.path()).read_bytes())) as zf:
                manifest = json.loads(zf.read("manifest.json"))
                assert manifest["page"] == "score-encoder"
                assert any(f["file"].endswith(".png") and "skipped" not in f for f in manifest["files"])
                assert any(f["file"].endswith(".csv") for f in manifest["files"])
            # 5. keep it: the flags travel with the setting
            page.get_by_role("button", name=re.compile(r"^Add '.*' to study")).click()
            kept = page.get_by_text("with its flags", exact=False).first
            kept.wait_for(timeout=TIMEOUT_MS)
            assert "method_mismatch" in kept.inner_text() and LABEL in kept.inner_text()
            _no_errors(page, allowed=("Not comparable",))
            _assert_no_raw_listing(page)
        finally:
            browser.close()
