"""The codename in Debian's Chromium (Playwright), JavaScript off and on.

A one-word typo is refused with "one of the words is wrong" while a well-formed unused codename
gets the neutral page; the numeric form (here in Persian and Arabic-Indic digits) opens the same
mailbox as the words; the receipt shows both forms; a follow-up from a wrong codename or after
the editors deleted the first testimony never claims a link. SQLite, and PostgreSQL with
GUWAH_TEST_DATABASE_URL.
"""

from __future__ import annotations

import pytest

from app.crypto import codename as cn
from app.web.errors import MSG
from tests.conftest import apply_outbox
from tests.test_browser_return import ARGS, CHROMIUM, server_store, shot, submit_js_off

pytestmark = [pytest.mark.browser, pytest.mark.database, pytest.mark.slow]

PERSIAN = str.maketrans("0123456789", "\u06f0\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6\u06f7\u06f8\u06f9")
ARABIC = str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")


@pytest.fixture
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def typo_of(codename: str) -> str:
    c = cn.parse(codename)
    words = c.as_words.split()
    words[4] = cn.words()[(c.indices[4] + 17) % cn.LIST_SIZE]
    return " ".join(words)


def open_with(page, base: str, typed: str) -> None:
    page.goto(base + "/return")
    page.locator("#codename").fill(typed)
    page.get_by_role("button", name="Open", exact=True).click()
    page.wait_for_load_state("load")


@pytest.mark.parametrize("js", [False, True], ids=["js-off", "js-on"])
def test_typo_refused_unused_neutral_numbers_accepted(chromium, guwah_server, make_reply, js):
    server = guwah_server
    codename = submit_js_off(chromium, server, "Testimony for the codename test.")
    reply_text = "Reply canary 5d1e for the numeric codename."
    with server_store(server) as store:
        [first] = store.list_submissions()
        make_reply(store, first.id, reply_text)
    context = chromium.new_context(java_script_enabled=js, locale="en-US")
    page = context.new_page()
    tag = "js-on" if js else "js-off"
    try:
        open_with(page, server.url, typo_of(codename))
        error = page.locator("#return-error" if js else ".error").first
        error.wait_for(timeout=30_000)
        assert error.inner_text().strip() == MSG["codename_check"]
        assert page.locator("#no-replies").count() == 0
        shot(page, f"codename-{tag}-typo")

        open_with(page, server.url, cn.new().as_words)
        page.locator("#no-replies").wait_for(timeout=60_000)
        assert page.locator("#replies").count() == 0

        numbers = cn.parse(codename).as_numbers.translate(PERSIAN if js else ARABIC)
        open_with(page, server.url, numbers)
        page.locator("#replies .reply-text").first.wait_for(timeout=60_000)
        assert page.locator("#replies .reply-text").first.inner_text() == reply_text
        shot(page, f"codename-{tag}-numbers-open-the-mailbox")
    finally:
        context.close()


def test_receipt_shows_words_and_numbers(chromium, guwah_server):
    context = chromium.new_context(java_script_enabled=False, locale="en-US")
    page = context.new_page()
    try:
        page.goto(guwah_server.url + "/submit")
        page.locator("#testimony").fill("Receipt test.")
        page.locator("#kept-codename").check()
        page.get_by_role("button", name="Send").click()
        page.wait_for_load_state("load")
        words = page.locator("#codename").inner_text().strip()
        numbers = page.locator("bdi#codename-numbers")
        assert numbers.get_attribute("dir") == "ltr"
        assert cn.parse(numbers.inner_text()).as_words == words
        assert "destroy the paper" in page.locator("main").inner_text()
        shot(page, "codename-receipt")
    finally:
        context.close()


@pytest.mark.parametrize("case", ["wrong-codename", "after-done"])
def test_follow_up_never_claims_a_link(chromium, guwah_server, case):
    server = guwah_server
    codename = submit_js_off(chromium, server, "First testimony.")
    if case == "after-done":
        with server_store(server) as store:
            [first] = store.list_submissions()
            apply_outbox(store, done=[first.id])  # the editor marked it done
        typed = codename
    else:
        typed = cn.new().as_words
    context = chromium.new_context(java_script_enabled=False, locale="en-US")
    page = context.new_page()
    try:
        open_with(page, server.url, typed)
        assert "linked" not in page.locator("main").inner_text()
        page.locator("#follow-up-text").fill("More words.")
        page.get_by_role("button", name="Send the follow-up").click()
        page.wait_for_load_state("load")
        assert page.locator("#follow-up-received").is_visible()
        text = page.locator("main").inner_text()
        assert "linked" not in text and "same editors" not in text
        assert "kept under the codename you used" in text
        shot(page, f"codename-follow-up-{case}")
    finally:
        context.close()
    with server_store(server) as store:
        follow = [s for s in store.list_submissions() if s.parent_id is None]
        assert follow  # stored, as a first submission of that mailbox
