"""The witness site's scripts in Chromium: light on the wire, every script pinned, and the
one upload client's answers to a lost commit answer and a busy server.

- The JavaScript-on submit page, up to the moment before Send, costs at most 120 KB on the
  wire (bodies as transferred: the server sends the build's gzip twins), and the encryption
  worker is not fetched before Send.
- A page script whose bytes differ from what SRI.json pins is not run: the page stays the
  plain form, which still works. (Each page is one self-contained file: a code-split shared
  module pinned only by a modulepreload was refetched and run unchecked by Chromium once its
  preload had failed; tests/js/build.mjs says so.)
- A commit whose answer is lost (the server stored it) still ends on the receipt with a
  codename, and one submission is stored.
- A server that stays busy (503) at the commit: the page explains with its own translated
  sentence, keeps every word, enables Send again; pressing it then sends.

The site runs in this process (the fixtures of tests/test_browser_witness.py).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from test_browser_witness import (  # noqa: F401  (fixtures)
    WORDS,
    assert_words_kept,
    browser,
    fill_form,
    new_page,
    shot,
    site,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIRE_BUDGET = 120 * 1024  # bytes on the wire for the JS-on submit page before Send


def open_enhanced(page: Any, url: str) -> None:
    page.goto(url + "/submit")
    page.wait_for_function("document.querySelector('#submit-form').dataset.enhanced")


def test_submit_page_is_light_on_the_wire(site, browser):  # noqa: F811  (fixtures)
    url, _app = site()
    with new_page(browser, js=True) as page:
        responses: list[Any] = []
        page.on("requestfinished", lambda request: responses.append(request))
        open_enhanced(page, url)
        page.wait_for_load_state("networkidle")
        sizes = {r.url: r.sizes()["responseBodySize"] for r in responses}
        scripts = [r for r in responses if r.url.endswith(".js")]
        encodings = {r.url: (r.response().headers if r.response() else {}) for r in scripts}
    total = sum(sizes.values())
    print(f"submit page, JS on, before Send: {total} bytes on the wire: {sizes}")
    assert not [u for u in sizes if u.endswith("/worker.js")], "the worker is fetched on Send"
    assert any(u.endswith("/static/js/submit.js") for u in sizes), "the page script loaded"
    for u, headers in encodings.items():
        assert headers.get("content-encoding") == "gzip", u
        assert "accept-encoding" in headers.get("vary", "").lower(), u
    assert total <= WIRE_BUDGET, f"{total} bytes on the wire before Send (budget {WIRE_BUDGET})"


def test_a_page_script_that_does_not_match_is_not_run(site, browser):  # noqa: F811  (fixtures)
    url, _app = site()
    with new_page(browser, js=True) as page:
        def tamper(route: Any) -> None:
            response = route.fetch(headers={**route.request.headers, "accept-encoding": "identity"})
            route.fulfill(response=response, body=response.body() + b"\n;globalThis.tampered=1;\n")

        page.route(re.compile(r".*/static/js/submit\.js$"), tamper)
        page.goto(url + "/submit")
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.querySelector('#submit-form').dataset.enhanced") is None
        assert page.evaluate("globalThis.tampered") is None
        # the plain form is still there, as with JavaScript off
        assert page.locator("#protection").inner_text().startswith("JavaScript is off")


def test_lost_commit_answer_still_shows_the_receipt(site, browser, store):  # noqa: F811  (fixtures)
    url, _app = site()
    before = len(store.list_submissions())
    commits: list[int] = []

    def drop_first_answer(route: Any) -> None:
        commits.append(1)
        if len(commits) == 1:
            assert route.fetch().status == 201  # stored by the server...
            route.abort("connectionreset")  # ...and the answer lost on the way back
        else:
            route.continue_()

    with new_page(browser, js=True) as page:
        page.route("**/api/submissions*", drop_first_answer)
        open_enhanced(page, url)
        fill_form(page, file=("note.txt", b"a note"))
        page.locator("#kept-codename").check()  # the codename shown before Send is kept
        page.locator('#submit-form button[type="submit"]').click()
        page.locator("#codename").wait_for()
        assert re.fullmatch(r"[a-z]+( [a-z]+){7}", page.locator("#codename").inner_text())
    assert len(commits) == 2
    assert len(store.list_submissions()) == before + 1


def test_busy_server_keeps_the_words_and_lets_the_witness_retry(site, browser, store):  # noqa: F811  (fixtures)
    url, _app = site()
    before = len(store.list_submissions())
    busy = {"on": True, "answered": 0}

    def commit(route: Any) -> None:
        if busy["on"]:
            busy["answered"] += 1
            route.fulfill(status=503, content_type="application/json",
                          body='{"error": "server sentence"}', headers={"Retry-After": "60"})
        else:
            route.continue_()

    with new_page(browser, js=True) as page:
        page.route("**/api/submissions*", commit)
        open_enhanced(page, url)
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        fill_form(page)
        page.locator("#kept-codename").check()  # the codename shown before Send is kept
        send = page.locator('#submit-form button[type="submit"]')
        send.click()
        page.locator("#js-status .error").wait_for(timeout=60_000)
        # the page's own translated sentence (data-busy), not a dead end
        busy_text = page.locator("#js-strings").get_attribute("data-busy")
        assert busy_text and page.locator("#js-status .error").inner_text() == busy_text
        assert navigations == []
        assert_words_kept(page)
        assert send.is_enabled()
        assert page.evaluate("document.activeElement.type") == "submit"
        assert busy["answered"] >= 2  # it tried more than once before asking
        assert len(store.list_submissions()) == before
        shot(page, "json-busy")
        busy["on"] = False
        send.click()
        page.locator("#codename").wait_for(timeout=60_000)
        assert WORDS not in page.content()  # the receipt replaced the form
    assert len(store.list_submissions()) == before + 1
