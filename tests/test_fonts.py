"""The bundled Arabic-script font: Uyghur renders with it, from this origin only, and only when
a page shows Arabic-script text (Latin pages keep to the first-page budget)."""

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.screenshots import screenshot

pytestmark = [pytest.mark.browser]

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
UYGHUR = "مەن كۆرگەنلىرىمنى يازىمەن"  # "I write what I saw"


def test_uyghur_text_uses_the_bundled_font(guwah_server) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            page = browser.new_page(java_script_enabled=True)
            fonts: list[str] = []
            page.on("request", lambda r: fonts.append(r.url) if "/fonts/" in r.url else None)
            page.goto(guwah_server.url + "/")
            page.wait_for_load_state("networkidle")
            assert fonts == []  # a Latin-only page does not download the font
            page.goto(guwah_server.url + "/submit")
            page.fill("#testimony", UYGHUR)
            page.wait_for_function(
                "() => document.fonts.check('16px \"Guwah Arabic\"', %r)" % UYGHUR)
            page.wait_for_function("() => document.fonts.status === 'loaded'")
            loaded = page.evaluate(
                "() => [...document.fonts].filter(f => f.status === 'loaded')"
                ".map(f => f.family)")
            assert '"Guwah Arabic"' in loaded or "Guwah Arabic" in loaded
            assert fonts and all(u.startswith(guwah_server.url + "/static/fonts/") for u in fonts)
            shots = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
            screenshot(page, shots / "uyghur-testimony.png", full_page=False)
        finally:
            browser.close()
