"""The running app in headless Chromium: every page by sidebar click and by deep link, right sidebar, no exceptions."""

from __future__ import annotations

import re
import time

import pytest
from _app_server import CHROMIUM, CHROMIUM_ARGS, REPO_ROOT, streamlit_server

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


def _sidebar_titles(page) -> list[str]:
    # a link's text is "<material icon name>\n\n<title>"
    return [t.strip().splitlines()[-1] for t in page.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()]


def _wait_ready(page, expected: list[str]) -> None:
    """Wait for the expected sidebar (a legacy auto-discovered one may show first) and for the run to finish."""
    page.wait_for_selector('[data-testid="stSidebarNav"]', timeout=TIMEOUT_MS)
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
    assert not any(t.lower() in {"app", "ui", "_ui"} for t in titles), "auto-discovered page list in the sidebar"
    current = page.locator('[data-testid="stSidebarNavLink"][aria-current="page"]')
    assert current.count() == 1 and current.inner_text().strip().splitlines()[-1] == expected_nav[url_path]
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
            # the first visit of a fresh server is a deep link to another team's page (or to ours when
            # theirs are absent): the legacy pages/ mode must not take over
            first = next((p for p in expected_nav if p not in OWN_PAGES), "law")
            for url_path in [first, *[p for p in expected_nav if p != first]]:
                # the default page lives at the root URL (Streamlit gives the default page no path of its own)
                page.goto(base if url_path == "overview" else f"{base}/{url_path}")
                _check_page(page, url_path, expected_nav)
                _screenshot(page, f"deeplink-{url_path}")
            page.goto(base)
            _check_page(page, "overview", expected_nav)
            page.get_by_text("Settings", exact=True).first.wait_for(timeout=TIMEOUT_MS)
            for url_path, title in expected_nav.items():
                page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first.click()
                page.wait_for_url(re.compile(rf"/{url_path}(\?.*)?$") if url_path != "overview" else re.compile(".*"))
                _check_page(page, url_path, expected_nav)
                _screenshot(page, f"click-{url_path}")
            page.goto(f"{base}/law?benchmark=mme")
            _check_page(page, "law", expected_nav)
            page.get_by_text("predicted vs actual", exact=False).first.wait_for(timeout=TIMEOUT_MS)
            _screenshot(page, "deeplink-law-mme")
        finally:
            browser.close()
