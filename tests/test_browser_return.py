"""The returning witness in Debian's Chromium (Playwright), JavaScript off and on.

A witness submits through the plain form, an editor reply is stored for that mailbox (a real
guwah-reply/1 age file, tests/conftest.py ``store_real_reply``), the witness opens the mailbox
with the codename and reads it, then sends a follow-up that arrives linked to the first
submission. With JavaScript on, every request and response is recorded: the codename and the
reply identity never leave the browser, the mailbox token travels only in the body of
POST /api/mailbox, and no response carries the reply text in plaintext.
Screenshots go to artifacts/screenshots/. SQLite, and PostgreSQL with GUWAH_TEST_DATABASE_URL.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path

import pytest

from app.crypto import decrypt
from app.crypto.mailbox import derive_mailbox
from app.web.errors import MSG
from tests.screenshots import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.database, pytest.mark.slow]

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
WRONG = "abacus abdomen abdominal abide abiding ability ablaze"


@pytest.fixture
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shot(page, name: str) -> None:
    db = "postgresql" if os.environ.get("GUWAH_TEST_DATABASE_URL") else "sqlite"
    screenshot(page, SHOTS / f"return-{db}-{name}.png")


def server_store(server):
    from app.settings import load_settings
    from app.store import Store

    return Store(load_settings(server.data_dir, database_url=server.database_url))


def submit_js_off(browser, server, text: str) -> str:
    """A first submission through the plain form (JavaScript off); returns the codename."""
    context = browser.new_context(java_script_enabled=False, locale="en-US")
    try:
        page = context.new_page()
        page.goto(server.url + "/submit")
        page.locator("#testimony").fill(text)
        page.locator("#kept-codename").check()
        page.get_by_role("button", name="Send").click()
        page.wait_for_load_state("load")
        codename = page.locator("#codename").inner_text().strip()
        assert len(codename.split()) == 8
        return codename
    finally:
        context.close()


def send_follow_up(page, text: str, file_path: Path) -> None:
    page.locator("#follow-up-text").fill(text)
    page.locator("#follow-up-files").set_input_files([str(file_path)])
    page.get_by_role("button", name="Send the follow-up").click()
    page.wait_for_load_state("load")
    assert page.locator("#follow-up-received").is_visible()


def check_follow_up(server, first_id: str, text: str, file_bytes: bytes,
                    protection: str = "server-sealed") -> None:
    with server_store(server) as store:
        first = store.submission(first_id)
        [follow] = [s for s in store.list_submissions() if s.id != first_id]
        assert follow.parent_id == first_id
        assert follow.token_hash == first.token_hash
        assert follow.reply_recipient == first.reply_recipient
        message = store.open_blob_for_read(follow.id, "message").read()
        attachment = store.open_blob_for_read(follow.id, "file-1").read()
    doc = json.loads(decrypt(message, [server.identity]).rstrip(b" "))
    assert doc["protection"] == protection
    # the server links it (store row above); the browser is never told the first id
    assert doc["parent_id"] == (first_id if protection == "server-sealed" else None)
    assert doc["reply_recipient"] == first.reply_recipient
    assert doc["testimony"] == text
    [meta] = doc["files"]
    assert decrypt(attachment, [server.identity])[: meta["size"]] == file_bytes


def test_return_js_off_reads_reply_and_follows_up(chromium, guwah_server, make_reply, tmp_path):
    server = guwah_server
    codename = submit_js_off(chromium, server, "What I saw at the checkpoint.")
    reply_text = "Thank you. Could you tell us the day? <b>not bold</b>"
    with server_store(server) as store:
        [first] = store.list_submissions()
        make_reply(store, first.id, reply_text)

    context = chromium.new_context(java_script_enabled=False, locale="en-US")
    page = context.new_page()
    try:
        # a wrong (but well-formed) codename: the neutral page
        page.goto(server.url + "/return")
        shot(page, "jsoff-1-return")
        page.locator("#codename").fill(WRONG)
        page.get_by_role("button", name="Open", exact=True).click()
        page.wait_for_load_state("load")
        assert page.locator("#no-replies").is_visible()
        assert page.locator("#replies").count() == 0
        shot(page, "jsoff-2-wrong-codename")

        page.goto(server.url + "/return")
        page.locator("#codename").fill(codename)
        page.get_by_role("button", name="Open", exact=True).click()
        page.wait_for_load_state("load")
        replies = page.locator("#replies .reply-text")
        assert replies.count() == 1
        assert replies.first.inner_text() == reply_text  # shown as text, not markup
        assert page.locator("#replies b").count() == 0
        assert first.day.isoformat() in page.locator("#replies .day").inner_text()
        assert codename not in page.content()
        shot(page, "jsoff-3-mailbox")

        attachment = tmp_path / "day.txt"
        attachment.write_bytes(b"It was a Tuesday.\n")
        send_follow_up(page, "It was on Tuesday.", attachment)
        shot(page, "jsoff-4-follow-up-received")
        assert context.cookies() == []
    finally:
        context.close()
    check_follow_up(server, first.id, "It was on Tuesday.", b"It was a Tuesday.\n")
    # the server decrypted in memory only: nothing readable in its data dir, TMPDIR or logs
    needles = [reply_text.encode(), codename.encode(), b"It was on Tuesday", b"It was a Tuesday"]
    for root in (server.data_dir, server.tmpdir):
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for needle in needles:
                    assert needle not in data, f"{needle!r} found in {path}"
    logs = server.stdout.read_bytes() + server.stderr.read_bytes()
    for needle in needles:
        assert needle not in logs


def test_return_js_on_decrypts_in_the_browser(chromium, guwah_server, make_reply, tmp_path):
    server = guwah_server
    codename = submit_js_off(chromium, server, "Testimony for the JS-on return.")
    reply_text = "JS-on reply canary 7f3a: please keep the photo safe."
    follow_text = "JS-on follow-up canary 91c2: here is the photo."
    with server_store(server) as store:
        [first] = store.list_submissions()
        make_reply(store, first.id, reply_text)
    mailbox = derive_mailbox(codename, "X25519")
    token_hex = mailbox.token.hex()
    secrets_out = {
        "codename": [codename, codename.replace(" ", "+"), urllib.parse.quote(codename),
                     codename.upper()],
        "reply identity": [str(mailbox.reply_identity)],
        "follow-up text": [follow_text],
    }

    context = chromium.new_context(java_script_enabled=True, locale="en-US")
    page = context.new_page()
    requests: list[dict] = []
    bodies: list[tuple[str, bytes]] = []
    foreign: list[str] = []
    errors: list[str] = []

    def on_request(request):
        requests.append({
            "url": request.url,
            "method": request.method,
            "headers": json.dumps(request.headers),
            "body": request.post_data_buffer or b"",
        })
        if not request.url.startswith(server.url):
            foreign.append(request.url)

    def on_response(response):
        try:
            bodies.append((response.url, response.body()))
        except Exception:
            bodies.append((response.url, b""))

    page.on("request", on_request)
    page.on("response", on_response)
    page.on("pageerror", lambda e: errors.append(str(e)))
    photo = b"\xff\xd8\xff\xe0" + os.urandom(20_000)
    try:
        page.goto(server.url + "/return")
        # the script (SRI-checked) took over the form
        page.wait_for_function(
            "document.getElementById('return-protection').textContent.includes('JavaScript is on')")
        shot(page, "json-1-return")

        # a word that is not a codename word: told at once, nothing sent
        page.locator("#codename").fill("abacus abacus abacus abacus abacus abacus zzzq")
        page.get_by_role("button", name="Open", exact=True).click()
        page.wait_for_selector("#return-error")
        # the page's translated sentence, the same as without JavaScript
        assert page.locator("#return-error").inner_text().strip() == MSG["codename_word"]

        # a wrong codename: the same neutral answer, from an empty list
        page.locator("#codename").fill(WRONG)
        page.get_by_role("button", name="Open", exact=True).click()
        page.wait_for_selector("#mailbox-js #no-replies", timeout=60_000)
        shot(page, "json-2-wrong-codename")

        page.locator("#codename").fill(codename)
        page.get_by_role("button", name="Open", exact=True).click()
        page.wait_for_selector("#mailbox-js #replies", timeout=60_000)
        assert page.locator("#replies .reply-text").inner_text() == reply_text
        assert first.day.isoformat() in page.locator("#replies .day").inner_text()
        assert page.locator("#codename").input_value() == ""
        shot(page, "json-3-mailbox")

        # follow-up, encrypted in the browser and committed with the mailbox token
        attachment = tmp_path / "photo.jpg"
        attachment.write_bytes(photo)
        page.locator("#follow-up-text").fill(follow_text)
        page.locator("#follow-up-files").set_input_files([str(attachment)])
        page.get_by_role("button", name="Send the follow-up").click()
        page.wait_for_selector("#follow-up-received", timeout=60_000)
        shot(page, "json-4-follow-up-received")
        assert page.url.endswith("/return")  # no navigation: the page never posted a form
        assert context.cookies() == []
        storage = page.evaluate("[localStorage.length, sessionStorage.length]")
        assert storage == [0, 0]
    finally:
        context.close()

    assert errors == [], errors
    assert foreign == [], foreign
    assert not [r for r in requests if r["method"] == "POST" and r["url"].endswith("/return")]
    api = [r for r in requests if r["url"] == server.url + "/api/mailbox"]
    assert len(api) == 2 and all(r["method"] == "POST" for r in api)
    assert json.loads(api[1]["body"]) == {"token": token_hex}
    commits = [r for r in requests if r["url"].startswith(server.url + "/api/submissions")]
    [commit] = commits
    assert json.loads(commit["body"])["mailbox_token"] == token_hex
    token_bodies = (api[1], commit)
    for r in requests:
        where = f"{r['method']} {r['url']}"
        blob = r["url"] + r["headers"] + r["body"].decode("latin-1")
        for what, forms in secrets_out.items():
            for form in forms:
                assert form not in blob, f"the {what} was sent in {where}"
        assert photo[:2000] not in r["body"], f"the photo in plaintext in {where}"
        # the token: never in a URL or header; in a body only to find or link the mailbox
        assert token_hex not in r["url"] + r["headers"], where
        if not any(r is t for t in token_bodies):
            assert token_hex not in r["body"].decode("latin-1"), where
    for url, body in bodies:
        assert reply_text.encode() not in body, f"reply text in plaintext from {url}"
        assert b"canary 7f3a" not in body and b"canary 91c2" not in body, url

    check_follow_up(server, first.id, follow_text, photo, protection="browser-encrypted")
    # the server never logged any of it
    logs = server.stdout.read_bytes() + server.stderr.read_bytes()
    for needle in (codename, token_hex, reply_text, follow_text, mailbox.token_hash):
        assert needle.encode() not in logs


def test_return_js_on_post_quantum_desk(chromium, guwah_server, make_reply, tmp_path):
    """A hybrid (ML-KEM-768 + X25519) desk: the browser opens the reply with the hybrid reply
    identity made from the same seed, and its follow-up carries the hybrid reply recipient."""
    import base64
    import secrets as _secrets

    from app.crypto import HybridIdentity, fingerprint

    server = guwah_server
    editor = HybridIdentity.generate()
    with server_store(server) as store:
        store.add_desk("pq", "Post-quantum desk")
        ed_pub = _secrets.token_bytes(32)
        store.add_recipient("pq", "PQ Editor", str(editor.recipient()),
                            base64.b64encode(ed_pub).decode(), fingerprint(ed_pub))
    context = chromium.new_context(java_script_enabled=False, locale="en-US")
    page = context.new_page()
    page.goto(server.url + "/submit")
    page.get_by_label("pq").check()
    page.locator("#testimony").fill("testimony to the pq desk")
    page.locator("#kept-codename").check()
    page.get_by_role("button", name="Send").click()
    page.wait_for_load_state("load")
    codename = page.locator("#codename").inner_text().strip()
    context.close()
    with server_store(server) as store:
        [first] = store.list_submissions()
        assert first.desk == "pq" and first.reply_recipient.startswith("age1pq1")
        make_reply(store, first.id, "hybrid reply for the browser")

    context = chromium.new_context(java_script_enabled=True, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(server.url + "/return")
        page.wait_for_function(
            "document.getElementById('return-protection').textContent.includes('JavaScript is on')")
        page.locator("#codename").fill(codename)
        page.get_by_role("button", name="Open", exact=True).click()
        page.wait_for_selector("#mailbox-js #replies", timeout=60_000)
        assert page.locator("#replies .reply-text").inner_text() == "hybrid reply for the browser"
        page.locator("#follow-up-text").fill("pq follow-up from the browser")
        page.get_by_role("button", name="Send the follow-up").click()
        page.wait_for_selector("#follow-up-received, #follow-up-status .error", timeout=60_000)
        assert page.locator("#follow-up-received").count() == 1, page.locator(
            "#follow-up-status").inner_text()
        shot(page, "json-pq-follow-up-received")
    finally:
        context.close()
    assert errors == [], errors
    with server_store(server) as store:
        [follow] = [s for s in store.list_submissions() if s.id != first.id]
        assert follow.parent_id == first.id and follow.desk == "pq"
        assert follow.reply_recipient == first.reply_recipient
        message = store.open_blob_for_read(follow.id, "message").read()
    doc = json.loads(decrypt(message, [editor]).rstrip(b" "))
    assert doc["testimony"] == "pq follow-up from the browser"
    assert doc["protection"] == "browser-encrypted"


def test_return_js_on_follow_up_survives_a_lost_commit_answer(chromium, guwah_server, tmp_path):
    """The server stores the follow-up but its answer never reaches the browser (the
    connection drops after the commit): the client sends the commit again, gets 409 (the form
    is used) and, knowing the first attempt may have landed, still confirms it to the witness.
    One follow-up is stored, linked to the first submission."""
    server = guwah_server
    codename = submit_js_off(chromium, server, "Testimony before a lost answer.")
    with server_store(server) as store:
        [first] = store.list_submissions()
    follow_text = "Follow-up whose answer is lost on the way back."
    commits: list[int] = []

    def drop_first_answer(route):
        commits.append(route.request.method == "POST")
        if len(commits) == 1:
            response = route.fetch()  # the server stores it and answers...
            assert response.status == 201
            route.abort("connectionreset")  # ...but the answer is lost
        else:
            route.continue_()

    context = chromium.new_context(java_script_enabled=True, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("**/api/submissions*", drop_first_answer)
    try:
        page.goto(server.url + "/return")
        page.wait_for_function(
            "document.getElementById('return-protection').textContent.includes('JavaScript is on')")
        page.locator("#codename").fill(codename)
        page.get_by_role("button", name="Open", exact=True).click()
        page.wait_for_selector("#mailbox-js #follow-up-js", timeout=60_000)
        attachment = tmp_path / "note.txt"
        attachment.write_bytes(b"a note for the editors")
        page.locator("#follow-up-text").fill(follow_text)
        page.locator("#follow-up-files").set_input_files([str(attachment)])
        page.get_by_role("button", name="Send the follow-up").click()
        page.wait_for_selector("#follow-up-received, #follow-up-status .error", timeout=60_000)
        assert page.locator("#follow-up-received").count() == 1, page.locator(
            "#follow-up-status").inner_text()
        shot(page, "json-follow-up-lost-answer")
    finally:
        context.close()
    assert errors == [], errors
    assert len(commits) == 2  # the lost one and the retry
    check_follow_up(server, first.id, follow_text, b"a note for the editors",
                    protection="browser-encrypted")


def test_return_js_on_follow_up_busy_server_keeps_the_words(chromium, guwah_server):
    """The server stays busy (503) at the commit: the follow-up form says so with the page's
    translated sentence, keeps the text and gives Send back; sending again then works."""
    server = guwah_server
    codename = submit_js_off(chromium, server, "Testimony before a busy server.")
    with server_store(server) as store:
        [first] = store.list_submissions()
    follow_text = "Follow-up sent while the server is busy."
    busy = {"on": True}

    def commit(route):
        if busy["on"]:
            route.fulfill(status=503, content_type="application/json", body='{"error": "x"}')
        else:
            route.continue_()

    context = chromium.new_context(java_script_enabled=True, locale="en-US")
    page = context.new_page()
    page.route("**/api/submissions*", commit)
    try:
        page.goto(server.url + "/return")
        page.wait_for_function(
            "document.getElementById('return-protection').textContent.includes('JavaScript is on')")
        page.locator("#codename").fill(codename)
        page.get_by_role("button", name="Open", exact=True).click()
        page.wait_for_selector("#mailbox-js #follow-up-js", timeout=60_000)
        page.locator("#follow-up-text").fill(follow_text)
        send = page.get_by_role("button", name="Send the follow-up")
        send.click()
        page.wait_for_selector("#follow-up-status .error", timeout=60_000)
        expected = page.locator("#return-js").get_attribute("data-busy")
        assert expected and page.locator("#follow-up-status .error").inner_text() == expected
        assert page.locator("#follow-up-text").input_value() == follow_text
        assert send.is_enabled()
        with server_store(server) as store:
            assert len(store.list_submissions()) == 1
        busy["on"] = False
        send.click()
        page.wait_for_selector("#follow-up-received", timeout=60_000)
    finally:
        context.close()
    with server_store(server) as store:
        [follow] = [s for s in store.list_submissions() if s.id != first.id]
        assert follow.parent_id == first.id


@pytest.mark.parametrize("js", [False, True], ids=["jsoff", "json"])
def test_witness_deletes_the_replies(chromium, guwah_server, make_reply, js):
    """The mailbox page's "Delete these replies": refused without the tick, then the replies
    are gone from the server (tombstones left), JavaScript off and on."""

    server = guwah_server
    codename = submit_js_off(chromium, server, "Testimony whose replies will be deleted.")
    with server_store(server) as store:
        [first] = [s for s in store.list_submissions() if s.parent_id is None][-1:]
        reply_id = make_reply(store, first.id, "A reply the witness will delete.")
    context = chromium.new_context(java_script_enabled=js, locale="en-US")
    page = context.new_page()
    try:
        page.goto(server.url + "/return")
        page.locator("#codename").fill(codename)
        page.get_by_role("button", name="Open", exact=True).click()
        page.wait_for_selector("#replies", timeout=60_000)
        button = page.get_by_role("button", name="Delete the replies")
        if js:
            page.evaluate("document.getElementById('confirm-delete').required = false")
            button.click()
            page.wait_for_selector("#delete-replies-form [role=status]:has-text('Nothing was deleted')")
        else:  # the browser itself asks for the tick
            button.click()
            page.wait_for_timeout(300)
            assert page.locator("#confirm-delete:invalid").count() == 1
        with server_store(server) as store:
            assert len(store.replies(first.token_hash)) == 1  # nothing deleted without the tick
        page.locator("#confirm-delete").check()
        button.click()
        page.wait_for_selector("#replies-deleted", timeout=60_000)
        shot(page, f"{'json' if js else 'jsoff'}-replies-deleted")
    finally:
        context.close()
    with server_store(server) as store:
        assert store.replies(first.token_hash) == []
        assert [w[0] for w in store.withdrawn_replies({reply_id})] == [reply_id]
