"""JavaScript on, and the encrypted path has no room: the page says so and offers the plain form.

Real ``guwah serve`` with ``max_open_uploads = 1`` and one upload already held by an attacker;
real Debian Chromium. The witness's create is refused (507); the page shows the server's
sentence, the "no room" note from the page's translated strings and a button that sends the
same form the other way, which the server encrypts in memory: the witness gets a codename.
"""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import sync_playwright

from app.web.errors import MSG

from .clients import tus_create

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def test_no_room_offers_the_plain_form(hostile_server, tmp_path):
    server = hostile_server(MAX_OPEN_UPLOADS="1", UPLOAD_IDLE_SECONDS="600")
    with httpx.Client(base_url=server.url) as client:
        assert tus_create(client, 0).status_code == 201  # the attacker's one upload
    attachment = tmp_path / "notes.txt"
    attachment.write_bytes(b"Names I will not forget.\n")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            page.goto(server.url + "/submit")
            page.wait_for_selector("#submit-form[data-enhanced='1']")
            no_room = page.get_attribute("#js-strings", "data-no-room")
            plain_label = page.get_attribute("#js-strings", "data-plain-send")
            assert no_room and plain_label
            page.fill("#testimony", "What I saw at the camp gate.")
            page.set_input_files("#files", [str(attachment)])
            page.check("#kept-codename")
            page.click("#submit-form button[type=submit]")
            page.wait_for_selector("#js-status .error")
            assert page.text_content("#js-status .error") == MSG["pending"]
            assert no_room in page.text_content("#js-status")
            # the plain form is stored under the server's codename: it is shown first, and
            # the tick is asked for again before anything is sent
            browser_codename = page.text_content("#ahead-codename").strip()
            page.click(f"#js-status button:has-text('{plain_label}')")
            server_codename = page.text_content("#ahead-codename").strip()
            assert server_codename != browser_codename
            assert not page.is_checked("#kept-codename")
            page.check("#kept-codename")
            with page.expect_navigation():
                page.click(f"#js-status button:has-text('{plain_label}')")
            codename = page.text_content("#codename").strip()
            assert codename == server_codename, codename
        finally:
            browser.close()
