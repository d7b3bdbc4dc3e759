"""The whole chain, as the people in it would live it ("End-to-end test").

A witness submits through the real site in Chromium, once with JavaScript on and once with it
off -> the operator runs `guwah export` -> an editor runs `guwah-editor import` on a separate
keyring folder (in an interpreter where the web stack cannot even be imported) -> replies and
marks both submissions done -> `guwah-editor outbox` -> `guwah import` on the server -> each
witness opens their mailbox with the codename in Chromium (JS on and JS off) and reads the
reply -> the submissions' ciphertext is gone from the server, and the reply text never appears
in the server's data dir.  SQLite by default, PostgreSQL when GUWAH_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.ports import free_port
from tests.roundtrip_helper import Chain
from tests.screenshots import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.database, pytest.mark.slow]

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"


@contextmanager
def serve(chain: Chain, database_url: str | None, tmp: Path) -> Iterator[str]:
    port = free_port()
    tmpdir = tmp / "server-tmp"
    tmpdir.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    env.update({"TMPDIR": str(tmpdir), "GUWAH_DATA_DIR": str(chain.data_dir)})
    if database_url:
        env["GUWAH_DATABASE_URL"] = database_url
    guwah = str(Path(sys.executable).with_name("guwah"))
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen([guwah, "serve", "--data-dir", str(chain.data_dir), "--port",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp / "server.log").read_text()
            with suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert time.monotonic() < deadline, "guwah serve did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def shot(page, name: str) -> None:
    db = "postgresql" if os.environ.get("GUWAH_TEST_DATABASE_URL") else "sqlite"
    screenshot(page, SHOTS / f"chain-{db}-{name}.png")


def submit(browser: Browser, url: str, js: bool, text: str, attachment: Path,
           sent: list[bytes]) -> str:
    """Fill the real form; return the codename shown on the receipt."""
    context = browser.new_context(java_script_enabled=js, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.on("request", lambda r: sent.append(r.post_data_buffer or b""))
    try:
        page.goto(url + "/submit")
        if js:
            page.wait_for_selector("#submit-form[data-enhanced='1']")
        page.fill("#testimony", text)
        page.set_input_files("#files", [str(attachment)])
        page.check("#kept-codename")
        page.click("#submit-form button[type=submit]")
        page.wait_for_function(
            "() => { const c = document.querySelector('#codename');"
            " return c && c.textContent.trim().split(/\\s+/).length === 8; }"
        ) if js else page.wait_for_selector("#codename")
        shot(page, f"receipt-js-{'on' if js else 'off'}")
        codename = " ".join(page.text_content("#codename").split())
        assert len(codename.split()) == 8
        assert context.cookies() == [] or all(
            c["name"].startswith("__Host-") for c in context.cookies())
        return codename
    finally:
        context.close()


def read_mailbox(browser: Browser, url: str, js: bool, codename: str,
                 sent: list[bytes]) -> str:
    context = browser.new_context(java_script_enabled=js, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.on("request", lambda r: sent.append(r.post_data_buffer or b""))
    try:
        page.goto(url + "/return")
        page.fill("#codename", codename)
        page.get_by_role("button", name="Open", exact=True).click()
        page.wait_for_selector("#replies .reply-text")
        shot(page, f"mailbox-js-{'on' if js else 'off'}")
        return page.inner_text("#replies")
    finally:
        context.close()


def test_witness_editor_witness(tmp_path: Path, database_url: str) -> None:
    pg = None if database_url.startswith("sqlite") else database_url
    chain = Chain(tmp_path / "chain", database_url=pg)
    chain.setup()
    canary = secrets.token_hex(12)
    texts = {True: f"JS-on testimony {canary}-on", False: f"JS-off testimony {canary}-off"}
    replies = {True: f"Reply for the JS-on witness {canary}-r1",
               False: f"Reply for the JS-off witness {canary}-r2"}
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + f"photo bytes {canary}".encode() * 2000)
    sent: list[bytes] = []
    with serve(chain, pg, tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            codenames = {js: submit(browser, url, js, texts[js], photo, sent)
                         for js in (True, False)}

            # the operator exports; the editor imports on the air-gapped laptop
            bundle = chain.export()
            assert bundle is not None
            chain.editor_import(bundle)
            dirs = chain.submission_dirs()
            assert len(dirs) == 2
            by_js: dict[bool, Path] = {}
            for d in dirs:
                testimony = (d / "testimony.txt").read_text()
                js = texts[True] in testimony
                assert texts[js] in testimony
                assert ("browser-encrypted" if js else "server-sealed") in testimony
                assert "SHA-256 verified" in testimony
                attachment = next(f for f in d.iterdir() if f.name.endswith("photo.jpg"))
                assert attachment.read_bytes() == photo.read_bytes()
                by_js[js] = d

            for js, d in by_js.items():
                chain.reply(d, replies[js])
                chain.done(d)
            outbox = chain.outbox()
            chain.server_import(outbox)

            for js in (True, False):
                shown = read_mailbox(browser, url, js, codenames[js], sent)
                assert replies[js] in shown
                assert replies[not js] not in shown
        finally:
            browser.close()

    # JS on: nothing readable ever left the browser (JS off posts the form, by design)
    on_codename = codenames[True].encode()
    for body in sent:
        assert f"{canary}-on".encode() not in body
        assert on_codename not in body
    # the submissions' ciphertext is gone; only tombstones remain
    with chain.store() as store:
        assert store.list_submissions() == []
        assert len(store.tombstones()) == 2
    # the reply text, the testimony and the codenames never reached the server's disk
    needles = [canary.encode(), codenames[True].encode(), codenames[False].encode()]
    for path in chain.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in needles:
                assert needle not in data, f"{needle!r} in {path}"
