"""The JavaScript-off witness flow in Debian's Chromium (Playwright, JS disabled).

Landing → pick a desk → text + 3 files through the plain form → codename on the receipt →
return page → leave quickly.  Screenshots of every page go to artifacts/screenshots/.
Runs on SQLite, and on PostgreSQL when GUWAH_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from app.crypto import decrypt
from tests.screenshots import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"


@pytest.fixture
def browser_page():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(java_script_enabled=False, locale="en-US")
        page = context.new_page()
        try:
            yield page
        finally:
            context.close()
            browser.close()


def shot(page, name: str) -> None:
    db = "postgresql" if os.environ.get("GUWAH_TEST_DATABASE_URL") else "sqlite"
    screenshot(page, SHOTS / f"jsoff-{db}-{name}.png")


def test_js_off_flow_in_chromium(browser_page, guwah_server_two_desks, tmp_path):
    page = browser_page
    server = guwah_server_two_desks
    requests: list[str] = []
    sizes: list[int] = []
    foreign: list[str] = []

    def on_response(response):
        requests.append(response.url)
        if not response.url.startswith(server.url):
            foreign.append(response.url)
        try:
            sizes.append(len(response.body()))
        except Exception:
            sizes.append(0)

    page.on("response", on_response)
    blocked: list[str] = []

    def on_failed(request):
        # With JavaScript off, Chromium refuses the page's module preloads before any byte is
        # asked for (reported as a "csp" failure): same-origin scripts that never load are
        # what a JavaScript-off page should show. Anything else that fails is a defect.
        if (request.failure == "csp" and request.resource_type == "script"
                and request.url.startswith(server.url + "/static/js/")):
            blocked.append(request.url)
        else:
            foreign.append("failed:" + request.url)

    page.on("requestfailed", on_failed)

    # landing: light, nothing from another origin
    page.goto(server.url + "/")
    page.wait_for_load_state("load")
    page.wait_for_timeout(300)  # a favicon request, if any, arrives after load
    assert page.locator("h1").inner_text() == "Tell what you saw, safely"
    assert len(requests) <= 4, requests
    assert sum(sizes) <= 25 * 1024, (sizes, requests)
    assert page.locator("a.leave").is_visible()
    shot(page, "1-landing")

    page.get_by_role("link", name="Send testimony").first.click()
    page.wait_for_url("**/submit")
    shot(page, "2-submit-form")

    # three files: one of 1 MiB, a photo-like binary, a text note
    files = {
        "big.bin": os.urandom(1024 * 1024 + 7),
        "photo.jpg": b"\xff\xd8\xff\xe0" + os.urandom(50_000),
        "note.txt": "notes, ئۇيغۇرچە, 中文\n".encode(),
    }
    paths = []
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content)
        paths.append(str(path))
    page.get_by_label("desk-2").check()
    page.locator("#testimony").fill("What I saw in the market on Tuesday.")
    page.locator("#where").fill("Main market")
    page.locator("input[name=consent][value=yes]").check()
    page.locator("#files").set_input_files(paths)
    shown = page.locator("#ahead-codename").inner_text().strip()
    page.get_by_label("I have written down or memorised my codename.").check()
    page.get_by_role("button", name="Send").click()
    page.wait_for_load_state("load")
    assert page.locator("h1").inner_text() == "Your testimony was received"
    codename = page.locator("#codename").inner_text().strip()
    assert len(codename.split()) == 8 and codename == shown  # the one shown before Send
    assert "JavaScript was off" in page.locator("#protection-used").inner_text()
    shot(page, "3-receipt")

    # what was stored is ciphertext to desk-2's editor and decrypts to what was sent
    from app.settings import load_settings
    from app.store import Store

    with Store(load_settings(server.data_dir, database_url=server.database_url)) as store:
        [sub] = store.list_submissions()
        assert sub.desk == "desk-2"
        blobs = {f.role: store.open_blob_for_read(sub.id, f.role).read() for f in sub.files}
    doc = json.loads(decrypt(blobs["message"], [server.identity]))
    assert doc["testimony"] == "What I saw in the market on Tuesday."
    assert doc["answers"]["consent"] == "yes" and doc["desk"] == "desk-2"
    assert [f["name"] for f in doc["files"]] == list(files)
    for meta in doc["files"]:
        plain = decrypt(blobs[meta["role"]], [server.identity])[: meta["size"]]
        assert plain == files[meta["name"]]
        assert meta["sha256"] == hashlib.sha256(plain).hexdigest()

    # return page with the codename: a neutral "no replies yet"
    page.get_by_role("link", name="Check for a reply later").click()
    page.wait_for_url("**/return")
    shot(page, "4-return")
    page.locator("#codename").fill(codename)
    page.get_by_role("button", name="Open").click()
    page.wait_for_load_state("load")
    assert page.locator("#no-replies").is_visible()
    shot(page, "5-mailbox")

    # an error page, and a refusal in plain words
    page.goto(server.url + "/no-such-page")
    assert re.search("no page", page.locator("#error").inner_text())
    shot(page, "6-error-404")

    # leave quickly: a blank same-origin page
    page.goto(server.url + "/")
    page.locator("a.leave").click()
    page.wait_for_url("**/leave")
    assert page.locator("body").inner_text().strip() == ""
    shot(page, "7-leave")

    assert foreign == [], foreign
    assert not [u for u in requests if u.endswith(".js")], "a JavaScript-off page loaded a script"
    # nothing kept in the browser: no cookies
    assert page.context.cookies() == []
