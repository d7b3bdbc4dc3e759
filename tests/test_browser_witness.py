"""The witness in Chromium, JavaScript off and on: words survive refusals, pages are accessible.

- A refused form (a file too large, a full server, the server busy, an expired form) comes
  back with the testimony and the answers refilled, the reason on top and a fresh token; the
  witness can send it again at once.  With JavaScript on, the page never navigates away.
- axe-core (npm, pinned in package-lock.json) reports no serious or critical violation on
  any page, JavaScript off and on.  It is put into the page by the test only, through
  ``add_script_tag(path=...)``; the site never serves it.  "JavaScript off" there means the
  site's scripts are blocked (axe itself needs the browser's JavaScript).
- The spam trap is not in the accessibility tree, yet a robot that fills it is refused.
- A keyboard alone (Tab, Enter, Space) completes a submission, JavaScript off and on.

The site runs in this process (uvicorn on 127.0.0.1 in a thread) so a test can give it small
caps, hold its KDF slot or move its clock.  Screenshots at 1280 and 400 px go to
artifacts/screenshots/ (kept by CI as artifacts).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port
from tests.screenshots import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
WORDS = "They took my brother at night. Ата-анам ілгері. ئۇلار ئاكامنى ئېلىپ كەتتى"
WHERE = "Near the river market"


# --------------------------------------------------------------------------- the site
@contextlib.contextmanager
def live_site(settings: Any, store: Any, **overrides: Any) -> Iterator[tuple[str, Any]]:
    """The witness site over the real store, served by uvicorn with Guwah's options."""
    import uvicorn

    from app.web.app import create_app
    from app.web.security import UVICORN_OPTIONS

    app = create_app(settings.model_copy(update=overrides), store=store)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           **UVICORN_OPTIONS))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the site did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def site(settings, store, desk, private_tmpdir):  # type: ignore[no-untyped-def]
    """``site(**setting_overrides)`` → (url, app), stopped at the end of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda **kw: stack.enter_context(live_site(settings, store, **kw))


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@contextlib.contextmanager
def new_page(browser: Any, *, js: bool, width: int = 1280) -> Iterator[Any]:
    # bypass_csp: only so the test's own axe script tag may run; the site's CSP is checked
    # elsewhere (tests/test_web.py) and the site's scripts still load by SRI
    context = browser.new_context(java_script_enabled=js, locale="en-US", bypass_csp=js,
                                  viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    """The page at 1280 and at 400 px (a phone), full height."""
    db = "postgresql" if os.environ.get("GUWAH_TEST_DATABASE_URL") else "sqlite"
    size = page.viewport_size
    for width in (1280, 400):
        page.set_viewport_size({"width": width, "height": 900})
        screenshot(page, SHOTS / f"witness-{db}-{name}-{width}.png")
    page.set_viewport_size(size)


def fill_form(page: Any, *, file: tuple[str, bytes] | None = None) -> None:
    page.locator("#testimony").fill(WORDS)
    page.locator("#where").fill(WHERE)
    page.locator('input[name="consent"][value="yes"]').check()
    if file is not None:
        page.locator("#files").set_input_files(
            {"name": file[0], "mimeType": "application/octet-stream", "buffer": file[1]})


def _new_since(store: Any, before_ids: set[str]) -> list[Any]:
    """The submissions stored since ``before_ids`` were (ids are random: order says nothing)."""
    return [s for s in store.list_submissions() if s.id not in before_ids]


def assert_words_kept(page: Any) -> None:
    assert page.locator("#testimony").input_value() == WORDS
    assert page.locator("#where").input_value() == WHERE
    assert page.locator('input[name="consent"][value="yes"]').is_checked()


def send_plain(page: Any, *, tick: bool = True) -> int:
    """Press Send (JavaScript off), the codename confirmed first; the status of the answer."""
    if tick:
        page.locator("#kept-codename").check()
    with page.expect_navigation() as nav:
        page.locator('#submit-form button[type="submit"]').click()
    response = nav.value
    return response.status if response is not None else 0


# --------------------------------------------------------------------------- JS off: words kept
@pytest.mark.parametrize("case", ["too_big", "pending", "busy", "expired"])
def test_js_off_refusal_gives_the_form_back_with_the_words(case, site, browser, store,
                                                           monkeypatch):
    from app.web import forms, sealing

    overrides: dict[str, Any] = {}
    file: tuple[str, bytes] | None = ("photo.jpg", os.urandom(300_000))
    expected = {"too_big": 413, "pending": 429, "busy": 503, "expired": 403}[case]
    if case == "too_big":
        overrides = {"max_file_bytes": 100_000}
    elif case == "pending":
        overrides = {"max_pending_bytes": 64 * 1024, "budget_wait_seconds": 0}
    elif case in ("busy", "expired"):
        file = None
    url, app = site(**overrides)
    before = len(store.list_submissions())
    with new_page(browser, js=False) as page:
        page.goto(url + "/submit")
        old_token = page.locator('input[name="csrf"]').input_value()
        old_codename = page.locator("#ahead-codename").inner_text()
        fill_form(page, file=file)
        if case == "busy":  # every KDF slot taken: the codename cannot be made now
            monkeypatch.setattr(sealing, "KDF_WAIT_SECONDS", 0.5)
            for _ in range(app.state.web.settings.kdf_concurrency):
                app.state.web.kdf_slots.acquire()
        if case == "expired":  # the form was opened more than a day ago
            real = forms._hour
            monkeypatch.setattr(forms, "_hour", lambda: real() + 48)
        status = send_plain(page)
        assert status == expected
        assert page.locator("#refusal").is_visible()
        assert page.locator("#error").get_attribute("data-status") == str(expected)
        assert page.locator("#files-again").is_visible()
        assert page.locator("#text-kept").is_visible()
        assert_words_kept(page)
        new_token = page.locator('input[name="csrf"]').input_value()
        if case == "expired":  # a new token, so a new codename, and the page says so
            assert new_token and new_token != old_token
            assert page.locator("#ahead-changed").is_visible()
            assert page.locator("#ahead-codename").inner_text() != old_codename
        else:  # the same token: the codename the witness wrote down stays
            assert new_token == old_token
            assert page.locator("#ahead-codename").inner_text() == old_codename
        assert len(store.list_submissions()) == before  # nothing was kept
        shot(page, f"jsoff-refused-{case}")
        # the witness can act on it at once: the cause is gone, the same words are sent
        # (an expired form: the fresh token is valid on the moved clock, so it stays moved)
        if case != "expired":
            monkeypatch.undo()
        if case == "busy":
            for _ in range(app.state.web.settings.kdf_concurrency):
                app.state.web.kdf_slots.release()
        if file is not None:  # files must be chosen again; send without them here
            assert page.locator("#files").input_value() == ""
        assert send_plain(page) == 200
        assert page.locator("#codename").is_visible()
    assert len(store.list_submissions()) == before + 1


def test_js_off_refusal_before_the_text_says_so(site, browser, store):
    """A body cut before the testimony arrived: the form is shown, and says the text was lost."""
    import httpx

    url, _app = site(max_pending_bytes=1024, budget_wait_seconds=0)
    boundary = "b0undary"
    with httpx.Client() as client:
        form = client.get(url + "/submit").text
        token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        junk = "x" * 4000  # fills the tiny budget before the testimony part
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}"
                f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"where\"\r\n\r\n"
                f"{junk}\r\n--{boundary}--\r\n").encode()
        r = client.post(url + "/submit", content=body,
                        headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 429
    assert 'id="text-lost"' in r.text and 'id="submit-form"' in r.text


def test_follow_up_refusal_keeps_the_words(site, browser, store):
    """The JS-off follow-up form: a file too large brings back the form with the text."""
    url, _app = site(max_file_bytes=10_000)
    with new_page(browser, js=False) as page:
        page.goto(url + "/submit")
        page.locator("#testimony").fill("first")
        send_plain(page)
        codename = page.locator("#codename").inner_text()
        page.goto(url + "/return")
        page.locator("#codename").fill(codename)
        with page.expect_navigation():
            page.locator("#return-form button").click()
        page.locator("#follow-up-text").fill(WORDS)
        page.locator("#follow-up-files").set_input_files(
            {"name": "big.bin", "mimeType": "application/octet-stream",
             "buffer": os.urandom(50_000)})
        with page.expect_navigation() as nav:
            page.locator("#follow-up-form button").click()
        assert nav.value.status == 413
        assert page.locator("#follow-up-text").input_value() == WORDS
        assert page.locator("#files-again").is_visible()
        shot(page, "jsoff-follow-up-refused")
        with page.expect_navigation() as nav:
            page.locator("#follow-up-form button").click()
        assert nav.value.status == 200
        assert page.locator("#follow-up-received").is_visible()


# --------------------------------------------------------------------------- JS on: never leaves
def test_js_on_refusal_keeps_the_page_and_offers_without_files(site, browser, store):
    url, _app = site(max_file_bytes=100_000)
    before = len(store.list_submissions())
    with new_page(browser, js=True) as page:
        page.goto(url + "/submit")
        page.wait_for_function("document.querySelector('#submit-form').dataset.enhanced")
        fill_form(page, file=("video.mp4", os.urandom(200_000)))
        page.locator("#kept-codename").check()
        page.locator('#submit-form button[type="submit"]').click()
        page.locator("#js-status .error").wait_for()
        assert page.url == url + "/submit"
        assert_words_kept(page)
        shot(page, "json-refused-too-big")
        page.get_by_role("button", name="Send without the files").click()
        page.locator("#codename").wait_for()
        assert re.fullmatch(r"[a-z]+( [a-z]+){7}", page.locator("#codename").inner_text())
    assert len(store.list_submissions()) == before + 1


def test_js_on_server_refusal_never_navigates(site, browser, store, monkeypatch):
    """An expired form refused by the server: the page explains; the words stay."""
    from app.web import forms

    url, _app = site()
    with new_page(browser, js=True, width=400) as page:  # a phone
        page.goto(url + "/submit")
        page.wait_for_function("document.querySelector('#submit-form').dataset.enhanced")
        fill_form(page, file=("note.txt", b"a note"))
        real = forms._hour
        monkeypatch.setattr(forms, "_hour", lambda: real() + 48)
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        page.locator("#kept-codename").check()
        page.locator('#submit-form button[type="submit"]').click()
        page.locator("#js-status .error").wait_for()
        assert navigations == []
        assert_words_kept(page)
        assert page.locator('#submit-form button[type="submit"]').is_enabled()
        # the progress says what step it is and how far, on its own line, in view
        labels = page.locator(".js-bar-label").all_inner_texts()
        assert labels[:2] == ["Encryption 0 %", "Upload 0 %"] or all(
            re.fullmatch(r"(Encryption|Upload) \d+ %", t) for t in labels), labels
        sync_api = pytest.importorskip("playwright.sync_api")
        sync_api.expect(page.locator(".js-file").first).to_be_in_viewport()
        box = page.locator(".js-file").first.bounding_box()
        assert box is not None and box["width"] <= 400
        shot(page, "json-refused-expired")


# --------------------------------------------------------------------------- accessibility
def axe_serious(page: Any) -> list[str]:
    """Serious and critical axe-core violations on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => (await axe.run(document)).violations"
                           ".map(v => [v.id, v.impact, v.nodes.map(n => n.target.join(' '))])")
    return [f"{rule} ({impact}): {nodes}" for rule, impact, nodes in result
            if impact in ("serious", "critical")]


@pytest.mark.parametrize("js", [False, True], ids=["jsoff", "json"])
def test_axe_finds_nothing_serious_on_any_page(js, site, browser, store):
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run npm ci")
    url, _app = site(max_file_bytes=10_000)
    found: dict[str, list[str]] = {}
    # JavaScript off for the site: its scripts are never loaded, so the page is exactly what
    # a browser without JavaScript shows; the browser's own JavaScript stays on for axe-core
    # (with it off, axe's timers never run)
    with new_page(browser, js=True) as page:
        if not js:
            page.route("**/static/js/**", lambda route: route.abort())
        for path in ("/", "/submit", "/return", "/no-such-page", "/ug/", "/ug/submit"):
            page.goto(url + path)
            found[path] = axe_serious(page)
            name = path.strip("/").replace("/", "-") or "landing"
            if path in ("/", "/submit"):
                shot(page, f"{'json' if js else 'jsoff'}-{name}")
        page.goto(url + "/submit")
        page.locator("#testimony").fill(WORDS)
        if not js:  # the refused form, shown again
            page.locator("#files").set_input_files(
                {"name": "big.bin", "mimeType": "application/octet-stream",
                 "buffer": os.urandom(20_000)})
            send_plain(page)
            found["refused"] = axe_serious(page)
            page.locator("#files").set_input_files([])
            send_plain(page)
        else:
            page.wait_for_function("document.querySelector('#submit-form').dataset.enhanced")
            page.locator("#kept-codename").check()
            page.locator('#submit-form button[type="submit"]').click()
        page.locator("#codename").wait_for()
        found["receipt"] = axe_serious(page)
        shot(page, f"{'json' if js else 'jsoff'}-receipt")
        codename = page.locator("#codename").inner_text()
        page.goto(url + "/return")
        page.locator("#codename").fill(codename)
        page.locator("#return-form button").click()
        page.locator("#no-replies").wait_for()
        found["mailbox"] = axe_serious(page)
        shot(page, f"{'json' if js else 'jsoff'}-mailbox")
    assert not any(found.values()), found


def test_trap_field_is_hidden_from_assistive_technology_yet_works(site, browser, store):
    url, _app = site()
    before = len(store.list_submissions())
    with new_page(browser, js=False) as page:
        page.goto(url + "/submit")
        tree = page.locator("body").aria_snapshot()
        assert "Leave this empty" not in tree and "textbox" in tree
        trap = page.locator('input[name="website"]')
        assert trap.get_attribute("tabindex") == "-1"
        assert trap.get_attribute("autocomplete") == "off"
        page.locator("#testimony").fill(WORDS)
        trap.fill("http://spam.example", force=True)  # what a robot does
        assert send_plain(page) == 400
        assert page.locator("#error").get_attribute("data-status") == "400"
        assert page.locator("#submit-form").count() == 0  # a robot gets no form back
    assert len(store.list_submissions()) == before


# --------------------------------------------------------------------------- keyboard only
def _tab_to(page: Any, selector: str, limit: int = 40) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


@pytest.mark.parametrize("js", [False, True], ids=["jsoff", "json"])
def test_keyboard_alone_sends_testimony(js, site, browser, store):
    url, _app = site()
    before = len(store.list_submissions())
    with new_page(browser, js=js, width=400) as page:
        page.goto(url + "/")
        _tab_to(page, 'a.button[href$="/submit"]')
        page.keyboard.press("Enter")
        page.locator("#submit-form").wait_for()
        if js:
            page.wait_for_function("document.querySelector('#submit-form').dataset.enhanced")
        _tab_to(page, "#testimony")
        page.keyboard.type("I saw it myself.")
        _tab_to(page, 'input[name="consent"]')  # the group: arrows move the choice
        page.keyboard.press("ArrowDown")
        _tab_to(page, "#kept-codename")
        page.keyboard.press("Space")
        _tab_to(page, '#submit-form button[type="submit"]')
        page.keyboard.press("Space" if js else "Enter")
        page.locator("#codename").wait_for()
        assert page.locator("#codename").is_visible()
    assert len(store.list_submissions()) == before + 1


# --------------------------------------------------------------------------- codename before Send
def _mailbox_of(codename: str) -> str:
    from app.crypto.mailbox import derive_mailbox

    return derive_mailbox(codename, "X25519").token_hash


def _twice(route: Any) -> None:
    """A double Send as the network sees it: the same request reaches the server twice, the
    browser gets the second answer."""
    route.fetch()
    route.fulfill(response=route.fetch())


def _answer_lost(route: Any) -> None:
    """The server answers, the answer never reaches the browser (a Tor circuit drops)."""
    route.fetch()
    route.abort("connectionreset")


def test_js_off_codename_before_send_survives_a_lost_answer(
        site, browser, store):
    url, _app = site()
    before = len(store.list_submissions())
    before_ids = {s.id for s in store.list_submissions()}
    with new_page(browser, js=False) as page:
        page.goto(url + "/submit")
        shown = page.locator("#ahead-codename").inner_text()
        fill_form(page)
        page.locator("#kept-codename").check()
        lost: list[int] = []
        page.route("**/submit", lambda route: (_answer_lost(route), lost.append(1)))
        page.locator('#submit-form button[type="submit"]').click(no_wait_after=True)
        for _ in range(300):  # the handler runs while Playwright waits
            if lost:
                break
            page.wait_for_timeout(100)
        # the failed POST ends on the browser's own error page; wait for that navigation, or
        # it interrupts the next one
        for _ in range(100):
            if page.url.startswith("chrome-error:"):
                break
            page.wait_for_timeout(100)
        page.wait_for_load_state()
        # the answer was lost, but it was stored, under the codename the witness wrote down
        added = _new_since(store, before_ids)
        assert [s.token_hash for s in added] == [_mailbox_of(shown)]
        # the codename written down before Send opens that mailbox
        page.goto(url + "/return")
        page.locator("#codename").fill(shown)
        page.locator("#return-form button").click()
        page.locator("#no-replies").wait_for()
    assert len(store.list_submissions()) == before + 1


def test_js_off_double_send_makes_one_submission_and_the_same_receipt(site, browser, store):
    url, _app = site()
    before = len(store.list_submissions())
    with new_page(browser, js=False) as page:
        page.goto(url + "/submit")
        shown = page.locator("#ahead-codename").inner_text()
        fill_form(page, file=("note.txt", b"a note"))
        page.route("**/submit", _twice)
        assert send_plain(page) == 200
        assert page.locator("#codename").inner_text() == shown
        assert page.locator("#again").is_visible()  # the receipt of what arrived first
        shot(page, "jsoff-receipt-again")
    assert len(store.list_submissions()) == before + 1


def test_js_off_send_needs_the_codename_confirmation(site, browser, store):
    url, _app = site()
    before = len(store.list_submissions())
    with new_page(browser, js=False) as page:
        page.goto(url + "/submit")
        fill_form(page)
        sent: list[str] = []
        page.on("request", lambda r: sent.append(r.method))
        page.locator('#submit-form button[type="submit"]').click()
        page.wait_for_timeout(500)
        assert "POST" not in sent  # the browser asks for the tick first
        assert page.locator("#kept-codename:invalid").count() == 1
        shot(page, "jsoff-codename-ahead")
    assert len(store.list_submissions()) == before


def test_js_on_codename_before_send_survives_a_lost_answer(site, browser, store):
    url, _app = site()
    before = len(store.list_submissions())
    before_ids = {s.id for s in store.list_submissions()}
    with new_page(browser, js=True) as page:
        html = page.goto(url + "/submit").text()
        server_made = re.search(r'id="ahead-codename"[^>]*>([^<]+)<', html).group(1)
        page.wait_for_function("document.querySelector('#submit-form').dataset.enhanced")
        shown = page.locator("#ahead-codename").inner_text()
        assert shown != server_made  # the browser's own: the server never saw it
        fill_form(page, file=("note.txt", b"a note"))
        page.locator('#submit-form button[type="submit"]').click()
        page.wait_for_timeout(500)
        assert len(store.list_submissions()) == before  # no tick, nothing sent
        lost: list[int] = []

        def commit(route: Any) -> None:  # the first answer is lost, the retry gets one
            if not lost:
                lost.append(1)
                _answer_lost(route)
            else:
                route.continue_()

        page.route("**/api/submissions*", commit)
        page.locator("#kept-codename").check()
        page.locator('#submit-form button[type="submit"]').click()
        page.locator("#codename").wait_for()
        assert page.locator("#codename").inner_text() == shown
        assert page.locator(".desk-name").inner_text() == "default"  # the real answer
    added = _new_since(store, before_ids)
    assert [s.token_hash for s in added] == [_mailbox_of(shown)]


def test_js_on_double_commit_makes_one_submission(site, browser, store):
    url, _app = site()
    before_ids = {s.id for s in store.list_submissions()}
    with new_page(browser, js=True) as page:
        page.goto(url + "/submit")
        page.wait_for_function("document.querySelector('#submit-form').dataset.enhanced")
        shown = page.locator("#ahead-codename").inner_text()
        fill_form(page)
        page.route("**/api/submissions*", _twice)
        page.locator("#kept-codename").check()
        page.locator('#submit-form button[type="submit"]').click()
        page.locator("#codename").wait_for()
        assert page.locator("#codename").inner_text() == shown
    added = _new_since(store, before_ids)
    assert [s.token_hash for s in added] == [_mailbox_of(shown)]
