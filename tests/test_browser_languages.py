"""Every language, in Debian's Chromium (Playwright), JavaScript off and on.

For each shipped language the whole witness flow completes in that language: the landing page
and the Tor guide, a submission with a file, the receipt, a return with the codename, an
editor's reply read (a real guwah-reply/1 age file, tests/conftest.py ``store_real_reply``),
and a follow-up. On every page ``<html lang dir>`` is right (Uyghur right to left), and no
English sentence of the catalog shows on a translated page: the visible text, the title and the
title/aria-label/placeholder attributes are checked against the English msgids of
messages.pot. Screenshots of every page in Uyghur and Kazakh go to artifacts/screenshots/.

Page weight, as transferred: the English first page stays within 25 KB and 4 requests; the
Uyghur first page within 90 KB with its font.

One server for the module (SQLite): languages share nothing a test changes.
"""

from __future__ import annotations

import gettext
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po
from conftest import GuwahServer, run_guwah_server, store_real_reply

from app.web.i18n import KNOWN, TRANSLATIONS_DIR
from tests.screenshots import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
SHOT_LANGUAGES = {"ug", "kk"}
# words a translated page keeps in Latin letters on purpose: names of programs, services and
# buttons of an English Tor Browser, the language names in the picker, the codename words
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\w+\}")
MIN_WORDS = 3  # a fragment of an English sentence this long is English, not a product name


def english_sentences() -> tuple[list[str], set[str]]:
    """(fragments of three words or more, whole short msgids) of the English catalog."""
    with (TRANSLATIONS_DIR / "messages.pot").open("rb") as fh:
        pot = read_po(fh)
    fragments: set[str] = set()
    short: set[str] = set()
    for message in pot:
        if not message.id:
            continue
        for msgid in message.id if isinstance(message.id, tuple) else (message.id,):
            parts = [p.strip(" .,:;—“”") for p in PLACEHOLDER.split(msgid)]
            for part in parts:
                if len(part.split()) >= MIN_WORDS:
                    fragments.add(part)
            if len(msgid.split()) < MIN_WORDS and not PLACEHOLDER.search(msgid):
                short.add(msgid.strip())
    return sorted(fragments, key=len), short


FRAGMENTS, SHORT = english_sentences()

VISIBLE_TEXT = """() => {
  const attrs = [...document.querySelectorAll('[title],[aria-label],[placeholder],[alt]')]
    .flatMap((e) => ['title', 'aria-label', 'placeholder', 'alt']
      .map((a) => e.getAttribute(a)).filter(Boolean));
  const lines = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_ELEMENT);
  for (let e = walk.currentNode; e; e = walk.nextNode()) {
    if (e.closest('nav.langs, .codename, #codename, [lang="en"]')) continue;
    if (!e.checkVisibility || !e.checkVisibility()) continue;
    for (const n of e.childNodes) if (n.nodeType === 3 && n.textContent.trim()) lines.push(n.textContent.trim());
    if (e.matches('button, a, label, h1, h2, h3, p, li, strong, legend, summary')) lines.push(e.innerText.trim());
  }
  return { title: document.title, attrs, lines };
}"""


def english_on(page: Any) -> list[str]:
    """English catalog sentences visible on ``page`` (a translated page should show none)."""
    seen = page.evaluate(VISIBLE_TEXT)
    texts = [seen["title"].split(" · ")[0], *seen["attrs"], *seen["lines"]]
    found = []
    for text in texts:
        if text in SHORT:
            found.append(text)
        found += [f for f in FRAGMENTS if f in text]
    return sorted(set(found))


def check_page(page: Any, code: str, name: str, js: bool) -> None:
    lang = KNOWN[code]
    assert page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == \
        [lang.tag, lang.dir], (code, name)
    if code != "en":
        assert english_on(page) == [], (code, name)
    else:  # the check sees the page's text: on an English page it finds the catalog's English
        assert english_on(page), name
    if code in SHOT_LANGUAGES:
        mode = "json" if js else "jsoff"
        screenshot(page, SHOTS / f"lang-{code}-{mode}-{name}.png")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuwahServer]:
    tmp = tmp_path_factory.mktemp("languages")
    with run_guwah_server(tmp, "sqlite://") as running:
        yield running


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def server_store(server: GuwahServer) -> Any:
    from app.settings import load_settings
    from app.store import Store

    return Store(load_settings(server.data_dir, database_url=server.database_url))


def submission_ids(server: GuwahServer) -> set[str]:
    with server_store(server) as store:
        return {s.id for s in store.list_submissions()}


def count_sentence(code: str) -> str:
    """The receipt's "1 file was attached." as the catalog words it for this language (the form
    its Plural-Forms picks for 1), with the number isolated as the script inserts it."""
    if code == "en":
        return "\u20681\u2069 file was attached."
    with (TRANSLATIONS_DIR / code / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh, locale=code)
    message = catalog.get(("{n} file was attached.", "{n} files were attached."))
    assert message is not None
    form = list(message.string)[int(gettext.c2py(catalog.plural_expr)(1))]
    return form.replace("{n}", "\u20681\u2069")


def submit(page: Any, server: GuwahServer, prefix: str, code: str, js: bool, file: Path) -> str:
    """Send testimony with one file; returns the codename from the receipt."""
    page.goto(server.url + prefix + "/submit")
    if js:
        page.wait_for_function("document.querySelector('#submit-form').dataset.enhanced")
    check_page(page, code, "3-submit", js)
    page.locator("#testimony").fill(f"Testimony {code} {'js' if js else 'plain'}.")
    page.locator("#files").set_input_files([str(file)])
    page.locator("#kept-codename").check()  # the codename before Send, written down
    page.locator('#submit-form button[type="submit"]').click()
    page.locator("#codename:not(:empty), #js-continue").first.wait_for(timeout=120_000)
    if page.locator("#js-continue").count():
        page.locator("#js-continue").click()
        page.locator("#codename:not(:empty)").wait_for(timeout=120_000)
    codename = page.locator("#codename").inner_text().strip()
    assert len(codename.split()) == 8, codename
    if js:  # the count, in the plural form Intl.PluralRules picked from the page's forms
        count = page.locator(".files-count").inner_text()
        assert re.fullmatch(r"\D*\u2068?1\u2069?\D*", count), count
        assert count == count_sentence(code), count
    check_page(page, code, "4-receipt", js)
    return codename


def read_reply_and_follow_up(page: Any, server: GuwahServer, prefix: str, code: str, js: bool,
                             codename: str, reply: str, file: Path) -> None:
    page.goto(server.url + prefix + "/return")
    if js:
        page.wait_for_function("""() => {
          const note = document.getElementById('return-protection');
          const data = document.querySelector('[data-msg-protection]');
          return note && data && note.textContent === data.dataset.msgProtection; }""")
    check_page(page, code, "5-return", js)
    page.locator("#codename").fill(codename)
    page.locator("#return-form button").click()
    page.locator("#replies .reply-text").wait_for(timeout=120_000)
    assert page.locator("#replies .reply-text").inner_text() == reply
    assert page.locator("#replies .reply-text").get_attribute("dir") == "auto"
    check_page(page, code, "6-mailbox", js)
    assert page.locator("#follow-up-text").get_attribute("dir") == "auto"
    page.locator("#follow-up-text").fill(f"Follow-up {code}.")
    page.locator("#follow-up-files").set_input_files([str(file)])
    form = "#follow-up-js" if js else "#follow-up-form"
    page.locator(f'{form} button[type="submit"]').click()
    page.locator("#follow-up-received").wait_for(timeout=120_000)
    check_page(page, code, "7-follow-up-received", js)


@pytest.mark.parametrize("js", [False, True], ids=["jsoff", "json"])
@pytest.mark.parametrize("code", list(KNOWN))
def test_witness_flow_in_every_language(chromium, server, tmp_path, code, js):
    prefix = "" if code == "en" else "/" + code
    context = chromium.new_context(java_script_enabled=js, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    file = tmp_path / "note.txt"
    file.write_bytes(f"a file in {code}\n".encode())
    reply = f"{code}: رەھمەت, спасибо, 谢谢 <b>7f3a</b>"
    try:
        for path, name in (("/", "1-landing"), ("/tor", "2-tor")):
            page.goto(server.url + prefix + path)
            check_page(page, code, name, js)
        assert page.locator(f'a[href="{prefix}/"]').count() >= 1
        before = submission_ids(server)
        codename = submit(page, server, prefix, code, js, file)
        [first] = submission_ids(server) - before
        with server_store(server) as store:
            store_real_reply(store, first, reply)
        read_reply_and_follow_up(page, server, prefix, code, js, codename, reply, file)
        with server_store(server) as store:
            follow = [s for s in store.list_submissions() if s.id not in before and s.id != first]
        assert len(follow) == 1 and follow[0].token_hash == store.submission(first).token_hash
        assert context.cookies() == []
    finally:
        context.close()
    assert errors == [], errors


def first_page_weight(chromium: Any, url: str) -> tuple[int, list[str]]:
    """Bytes as transferred (headers and encoded bodies) and the URLs fetched for ``url``."""
    context = chromium.new_context(locale="en-US")
    page = context.new_page()
    requests: list[Any] = []
    page.on("requestfinished", lambda request: requests.append(request))
    try:
        page.goto(url, wait_until="networkidle")
        page.evaluate("document.fonts.ready.then(() => true)")
        page.wait_for_load_state("networkidle")
        total = 0
        for request in requests:
            sizes = request.sizes()
            total += sizes["responseBodySize"] + sizes["responseHeadersSize"]
        return total, [r.url for r in requests]
    finally:
        context.close()


def test_first_page_weight(chromium, server):
    english, urls = first_page_weight(chromium, server.url + "/")
    assert english <= 25 * 1024, (english, urls)
    assert len(urls) <= 4, urls
    assert not [u for u in urls if "/fonts/" in u], urls  # the picker needs no Arabic font
    uyghur, urls = first_page_weight(chromium, server.url + "/ug/")
    assert [u for u in urls if "/fonts/" in u], urls  # its font is counted, not missing
    assert uyghur <= 90 * 1024, (uyghur, urls)
    assert all(u.startswith(server.url) for u in urls), urls
    print(f"first page as transferred: en {english} B, ug {uyghur} B ({len(urls)} requests)")
