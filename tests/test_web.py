"""The witness site in-process: pages, the JS-off form, refusals, languages, headers.

Real parts only: the real store (SQLite, or PostgreSQL with GUWAH_TEST_DATABASE_URL), real
age encryption, decryption with the editor's identity.
"""

from __future__ import annotations

import json
import re
import threading

import pytest

from app.crypto import decrypt
from app.crypto.mailbox import derive_mailbox
from app.web.errors import MSG
from app.web.security import SECURITY_HEADERS

REQUIRED = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
}


def assert_headers(response) -> None:
    for name, value in REQUIRED.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    policy = response.headers["permissions-policy"]
    assert all(item.strip().endswith("=()") for item in policy.split(","))
    assert "camera=()" in policy and "geolocation=()" in policy and "microphone=()" in policy
    assert "server" not in response.headers
    # design, section 6: CSP directives each present
    csp = response.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ):
        assert directive in csp


def form_token(client, path: str = "/submit") -> str:
    page = client.get(path)
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def error_of(response) -> str:
    m = re.search(r'id="error" data-status="(\d+)">([^<]*)<', response.text)
    assert m, response.text[:500]
    assert int(m.group(1)) == response.status_code
    return m.group(2)


def submit(
    client, *, token=None, desk="default", text="I saw it.", files=(), extra=(), headers=None
):
    token = form_token(client) if token is None else token
    parts = [
        ("csrf", (None, token)),
        ("desk", (None, desk)),
        ("lang", (None, "en")),
        ("website", (None, "")),
        ("testimony", (None, text)),
        ("where", (None, "the market")),
        ("when", (None, "last week")),
        ("consent", (None, "ask")),
        ("never_name", (None, "my cousin")),
        ("kept_codename", (None, "yes")),
        *extra,
    ]
    parts += [("files", f) for f in files]
    return client.post("/submit", files=parts, headers=headers or {})


def stored(store):
    return store.list_submissions()


def staging_files(settings) -> list:
    return [p for p in settings.blob_path.rglob("*") if p.is_file()]


# ----------------------------------------------------------------------------- headers
def all_routes(routes) -> list:
    """The app's routes, with those of each included router (FastAPI keeps them nested)."""
    out = []
    for route in routes:
        included = getattr(route, "original_router", None)
        out += all_routes(included.routes) if included is not None else [route]
    return out


def test_security_headers_on_every_route_and_status(web_app, web_client):
    seen = set()
    for route in all_routes(web_app.routes):
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None) or {"GET"}
        if path is None:
            continue
        if "{" in path:  # the static mount: a real file
            continue
        for method in methods:
            if method == "HEAD":
                continue
            r = web_client.request(method, path)
            assert_headers(r)
            seen.add((method, path, r.status_code))
        # every route also answers a wrong method with 405 (and the headers)
        r = web_client.request("DELETE", path)
        assert r.status_code in (404, 405)
        assert_headers(r)
    assert ("GET", "/", 200) in seen and any(s[1] == "/submit" for s in seen)
    for path, status in (
        ("/static/css/site.css", 200),
        ("/static/favicon.svg", 200),
        ("/static/nothing.css", 404),
        ("/no/such/page", 404),
    ):
        r = web_client.get(path)
        assert r.status_code == status
        assert_headers(r)
    r = web_client.post("/submit", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert_headers(r)
    r = web_client.put("/")
    assert r.status_code == 405
    assert_headers(r)
    assert error_of(r) == MSG["method"]


def test_413_has_headers(settings, store, desk, private_tmpdir):
    from fastapi.testclient import TestClient

    from app.web.app import create_app

    small = settings.model_copy(update={"max_file_bytes": 1000})
    client = TestClient(create_app(small, store=store), raise_server_exceptions=False)
    r = submit(client, files=[("big.bin", b"x" * 5000, "application/octet-stream")])
    assert r.status_code == 413
    assert_headers(r)
    assert error_of(r) == MSG["file_big"]
    assert stored(store) == [] and staging_files(settings) == []


def test_500_is_a_translated_page_with_headers_and_no_traceback(
    settings, store, desk, private_tmpdir, capfd
):
    from fastapi.testclient import TestClient

    from app.web.app import create_app

    class BrokenStore:
        """The real store, except that reading desks fails (a database outage)."""

        def __getattr__(self, name):
            return getattr(store, name)

        def list_desks(self):
            raise RuntimeError("database is gone: secret-detail-xyz")

    client = TestClient(create_app(settings, store=BrokenStore()), raise_server_exceptions=False)
    r = client.get("/submit")
    assert r.status_code == 500
    assert_headers(r)
    assert error_of(r) == MSG["server"]
    assert "Traceback" not in r.text and "secret-detail-xyz" not in r.text
    out, err = capfd.readouterr()
    assert "secret-detail-xyz" not in out + err and "Traceback" not in out + err


# ----------------------------------------------------------------------------- pages
def test_pages_render_and_load_nothing_from_elsewhere(web_client):
    for path in ("/", "/submit", "/return", "/leave", "/nothing-here"):
        r = web_client.get(path)
        html = r.text
        assert "<html" in html
        for attr in re.findall(r'(?:src|href|action)="([^"]*)"', html):
            assert not re.match(r"^[a-z]+:|^//", attr), (path, attr)
        assert "<script>" not in html and " style=" not in html and "onclick" not in html
        if path != "/leave":
            assert 'class="leave" href="/leave"' in html


def test_landing_page_is_light(web_client):
    r = web_client.get("/")
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', r.text)
    sizes = [len(r.content)] + [len(web_client.get(a).content) for a in assets]
    assert 1 + len(assets) <= 4
    assert sum(sizes) <= 25 * 1024, sizes


def test_leave_page_is_blank_and_clears_site_data(web_client):
    r = web_client.get("/leave")
    assert r.status_code == 200
    assert r.headers["clear-site-data"] == '"cache", "storage"'
    assert "<body></body>" in r.text
    assert_headers(r)


def test_submit_form_puts_token_and_desk_before_files(web_client):
    html = web_client.get("/submit").text
    order = [m for m in re.findall(r'name="([a-z_]+)"', html)]
    assert order.index("csrf") < order.index("files")
    assert order.index("desk") < order.index("files")
    assert order.index("website") < order.index("files")
    assert 'enctype="multipart/form-data"' in html


def test_two_desks_show_a_choice(web_client, store, editor_identity):
    import base64
    import secrets

    from app.crypto import fingerprint

    store.add_desk("second", "Another newsroom")
    pub = secrets.token_bytes(32)
    store.add_recipient(
        "second",
        "Other",
        str(editor_identity.recipient()),
        base64.b64encode(pub).decode(),
        fingerprint(pub),
    )
    html = web_client.get("/submit").text
    assert html.count('type="radio" name="desk"') == 2
    r = submit(web_client, desk="second")
    assert r.status_code == 200
    assert stored(store)[0].desk == "second"
    # no desk chosen with two desks: a sentence, not a guess
    r = submit(web_client, desk="")
    assert r.status_code == 422 and error_of(r) == MSG["no_desk"]


# ----------------------------------------------------------------------------- submitting
def test_js_off_submission_round_trip(web_client, store, editor_identity, settings):
    canary = "canary-" + "ÿ✓-" * 3
    files = [
        ("report.pdf", b"%PDF-1.4 " + b"\x00\x01" * 70000, "application/pdf"),
        ("../../etc/pass\x07wd", b"second file " + canary.encode(), "text/plain"),
        ("empty.txt", b"", "text/plain"),
    ]
    r = submit(web_client, text="What I saw: " + canary, files=files)
    assert r.status_code == 200, r.text[:400]
    codename = re.search(r'id="codename"[^>]*>([^<]+)<', r.text).group(1)
    assert len(codename.split()) == 8
    assert (
        "JavaScript was off: the server encrypted your testimony as it arrived, in memory" in r.text
    )
    desk = store.get_desk("default")
    assert desk.recipients[0].fingerprint in r.text
    [sub] = stored(store)
    roles = sorted(f.role for f in sub.files)
    assert roles == ["file-1", "file-2", "message"]  # the empty file input adds nothing
    raw = store.open_blob_for_read(sub.id, "message").read()
    assert raw.startswith(b"age-encryption.org/v1\n") and canary.encode() not in raw
    plain = decrypt(raw, [editor_identity])
    assert (len(plain) >= 256 and plain.endswith(b" ")) or len(plain) == 256
    doc = json.loads(plain)
    assert doc["protection"] == "server-sealed"
    assert doc["testimony"] == "What I saw: " + canary
    assert doc["answers"]["where"] == "the market" and doc["answers"]["consent"] == "ask"
    assert doc["answers"]["never_name"] == "my cousin"
    assert doc["reply_recipient"] == sub.reply_recipient
    assert doc["day"] == sub.day.isoformat() and "T" not in doc["day"]
    names = [f["name"] for f in doc["files"]]
    assert names[0] == "report.pdf"
    assert names[1] in ("passwd", "pass%07wd")  # no path, no control character
    import hashlib

    from app.crypto import padme
    from app.crypto.mailbox import derive_mailbox

    for meta, (_, content, ctype) in zip(doc["files"], files[:2], strict=True):
        blob = decrypt(store.open_blob_for_read(sub.id, meta["role"]).read(), [editor_identity])
        assert len(blob) == padme(len(content))
        assert blob[: meta["size"]] == content and set(blob[meta["size"] :]) <= {0}
        assert meta["sha256"] == hashlib.sha256(content).hexdigest()
        assert meta["content_type"] == ctype
    mailbox = derive_mailbox(codename, "X25519")
    assert sub.token_hash == mailbox.token_hash
    assert sub.reply_recipient == mailbox.reply_recipient
    # the codename is nowhere in what was stored
    for f in sub.files:
        assert codename.encode() not in store.open_blob_for_read(sub.id, f.role).read()


def shown_ahead(page_text: str) -> str:
    """The codename the submit page shows before Send."""
    return re.search(r'id="ahead-codename"[^>]*>([^<]+)<', page_text).group(1)


def receipt_codename(response) -> str:
    return re.search(r'id="codename"[^>]*>([^<]+)<', response.text).group(1)


def test_codename_is_shown_before_send_and_is_the_one_stored(web_client, store):
    page = web_client.get("/submit")
    ahead = shown_ahead(page.text)
    assert len(ahead.split()) == 8 and 'name="kept_codename"' in page.text
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = submit(web_client, token=token)
    assert r.status_code == 200 and receipt_codename(r) == ahead
    [sub] = stored(store)
    assert sub.token_hash == derive_mailbox(ahead, "X25519").token_hash
    # another form shows another codename
    assert shown_ahead(web_client.get("/submit").text) != ahead


def test_same_form_twice_gives_the_same_receipt_and_one_submission(web_client, store):
    token = form_token(web_client)
    first = submit(web_client, token=token, files=[("a.txt", b"one file", "text/plain")])
    assert first.status_code == 200
    again = submit(web_client, token=token, files=[("a.txt", b"one file", "text/plain")])
    assert again.status_code == 200
    assert receipt_codename(again) == receipt_codename(first)
    assert 'id="again"' in again.text and "<bdi>1</bdi> file was attached." in again.text
    assert store.pending_bytes() == 0  # the second copy was sealed, then dropped


def test_send_refused_without_the_codename_confirmation_keeps_text_and_codename(
        web_client, store):
    page = web_client.get("/submit")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    parts = [("csrf", (None, token)), ("desk", (None, "default")),
             ("testimony", (None, "words I typed for an hour"))]
    r = web_client.post("/submit", files=parts)
    assert r.status_code == 422
    assert "words I typed for an hour" in r.text
    assert shown_ahead(r.text) == shown_ahead(page.text)  # the same codename, still unused
    assert 'id="ahead-changed"' not in r.text
    assert stored(store) == []
    # ticked, the same form is stored under that codename
    ok = web_client.post("/submit", files=[*parts, ("kept_codename", (None, "yes"))])
    assert ok.status_code == 200 and receipt_codename(ok) == shown_ahead(page.text)
    assert len(stored(store)) == 1


def test_expired_token_refusal_says_the_codename_is_new(web_client, store):
    r = submit(web_client, token="v1.AAAA.AAAA")
    assert r.status_code == 403 and 'id="ahead-changed"' in r.text
    assert stored(store) == []


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("no_token", 403, "csrf"),
        ("bad_token", 403, "csrf"),
        ("cross_site", 403, "cross_site"),
        ("foreign_origin", 403, "cross_site"),
        ("honeypot", 400, "honeypot"),
        ("file_first", 400, "order"),
        ("unknown_desk", 422, "unknown_desk"),
        ("empty", 422, "empty"),
        ("bad_consent", 422, "bad_choice"),
        ("text_long", 413, "text_long"),
        ("bad_utf8", 400, "bad_text"),
        ("truncated", 400, "bad_form"),
        ("garbage", 400, "bad_form"),
        ("not_multipart", 415, "content_type"),
        ("too_many_files", 413, "too_many_files"),
        ("duplicate_field", 400, "bad_form"),
    ],
)
def test_refusals_say_why_and_keep_nothing(web_client, store, settings, case, status, message):
    file = ("a.txt", b"data " * 1000, "text/plain")
    if case == "no_token":
        r = submit(web_client, token="", files=[file])
    elif case == "bad_token":
        r = submit(web_client, token="v1.AAAA.BBBB", files=[file])
    elif case == "cross_site":
        r = submit(web_client, files=[file], headers={"sec-fetch-site": "cross-site"})
    elif case == "foreign_origin":
        r = submit(web_client, headers={"origin": "http://evil.example"})
    elif case == "honeypot":
        r = submit(web_client, extra=[("website", (None, "http://spam"))], files=[file])
        r = web_client.post(
            "/submit",
            files=[
                ("csrf", (None, form_token(web_client))),
                ("desk", (None, "default")),
                ("website", (None, "spam")),
                ("files", file),
            ],
        )
    elif case == "file_first":
        r = web_client.post(
            "/submit",
            files=[
                ("files", file),
                ("csrf", (None, form_token(web_client))),
                ("desk", (None, "default")),
            ],
        )
    elif case == "unknown_desk":
        r = submit(web_client, desk="nope", files=[file])
    elif case == "empty":
        r = submit(web_client, text="   ")
    elif case == "bad_consent":
        r = web_client.post(
            "/submit",
            files=[
                ("csrf", (None, form_token(web_client))),
                ("desk", (None, "default")),
                ("testimony", (None, "x")),
                ("consent", (None, "maybe")),
            ],
        )
    elif case == "text_long":
        r = submit(web_client, text="x" * (settings.max_text_chars + 1), files=[file])
    elif case == "bad_utf8":
        r = web_client.post(
            "/submit",
            files=[
                ("csrf", (None, form_token(web_client))),
                ("desk", (None, "default")),
                ("testimony", (None, b"\xff\xfe bad")),
            ],
        )
    elif case in ("truncated", "garbage"):
        token = form_token(web_client)
        boundary = "b0undary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{token}'
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="desk"\r\n\r\n'
            f'default\r\n--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="x.bin"\r\n\r\n' + "z" * 100000
        ).encode()
        if case == "garbage":
            body = b"--" + boundary.encode() + b"\r\nno headers at all\x00\r\n\r\n" + body
        r = web_client.post(
            "/submit",
            content=body,
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
    elif case == "not_multipart":
        r = web_client.post("/submit", data={"testimony": "x"})
    elif case == "too_many_files":
        r = submit(web_client, files=[file] * (settings.max_files + 1))
    elif case == "duplicate_field":
        r = submit(web_client, extra=[("testimony", (None, "again"))])
    assert r.status_code == status, (case, r.text[:300])
    assert error_of(r) == MSG[message]
    assert_headers(r)
    assert stored(store) == []
    assert staging_files(settings) == []


def test_caps_from_settings(settings, store, desk, private_tmpdir):
    from fastapi.testclient import TestClient

    from app.web.app import create_app

    def client_with(**update):
        app = create_app(settings.model_copy(update=update), store=store)
        return TestClient(app, raise_server_exceptions=False)

    file = ("a.txt", b"data " * 1000, "text/plain")
    r = submit(client_with(min_free_bytes=1 << 60), files=[file])
    assert r.status_code == 507 and error_of(r) == MSG["disk"]
    r = submit(client_with(max_pending_bytes=1000), files=[file])
    assert r.status_code == 429 and error_of(r) == MSG["pending"]
    r = submit(client_with(max_files=1), files=[file, file])
    assert r.status_code == 413
    r = client_with(max_files=1, max_file_bytes=10).post(
        "/submit", content=b"x" * 3_000_000,
        headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413  # a declared length beyond any acceptable form
    r = submit(client_with(max_text_chars=10), text="x" * 11)
    assert r.status_code == 413 and error_of(r) == MSG["text_long"]
    assert stored(store) == [] and staging_files(settings) == []


def test_kdf_busy_is_503(web_app, web_client, store, monkeypatch):
    import app.web.sealing as sealing

    monkeypatch.setattr(sealing, "KDF_WAIT_SECONDS", 0.05)
    slots: threading.BoundedSemaphore = web_app.state.web.kdf_slots
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    try:
        r = submit(web_client, files=[("a.txt", b"abc", "text/plain")])
        assert r.status_code == 503 and error_of(r) == MSG["busy"]
        token = form_token(web_client, "/return")
        r = web_client.post("/return", data={"csrf": token, "codename": "abacus " * 6 + "abdomen"})
        assert r.status_code == 503
    finally:
        for _ in range(taken):
            slots.release()
    assert stored(store) == []
    assert submit(web_client).status_code == 200


# ----------------------------------------------------------------------------- return page
def test_return_page(web_client, store):
    r = submit(web_client)
    codename = re.search(r'id="codename"[^>]*>([^<]+)<', r.text).group(1)
    token = form_token(web_client, "/return")
    ok = web_client.post("/return", data={"csrf": token, "codename": codename.upper()})
    assert ok.status_code == 200 and 'id="no-replies"' in ok.text
    # a well-formed codename that opens no mailbox looks exactly the same
    other = web_client.post("/return", data={"csrf": token, "codename": "abacus " * 7})
    assert other.status_code == 200
    strip = lambda html: re.sub(r'value="v1\.[^"]+"', "", html)  # noqa: E731
    assert strip(other.text) == strip(ok.text)
    r = web_client.post("/return", data={"csrf": token, "codename": "abacus zoom"})
    assert r.status_code == 422 and error_of(r) == MSG["codename_words"]
    r = web_client.post("/return", data={"csrf": token, "codename": "abacus " * 6 + "zzzq"})
    assert r.status_code == 422 and error_of(r) == MSG["codename_word"]
    r = web_client.post("/return", data={"csrf": token, "codename": "zoom " * 8})
    assert r.status_code == 422 and error_of(r) == MSG["codename_check"]
    r = web_client.post("/return", data={"csrf": "nope", "codename": codename})
    assert r.status_code == 403
    r = web_client.post(
        "/return",
        content=b"codename=" + b"a" * 10000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413


# ----------------------------------------------------------------------------- languages
def _fake_catalog(tmp_path, code: str, pairs: dict[str, str]):
    from babel.messages.catalog import Catalog
    from babel.messages.mofile import write_mo

    catalog = Catalog(locale=code.replace("zh_Hans", "zh"))
    for msgid, msgstr in pairs.items():
        catalog.add(msgid, msgstr)
    target = tmp_path / "translations" / code / "LC_MESSAGES"
    target.mkdir(parents=True)
    with (target / "messages.mo").open("wb") as fh:
        write_mo(fh, catalog)
    return tmp_path / "translations"


def test_language_by_prefix_or_query_and_rtl(settings, store, desk, private_tmpdir, tmp_path):
    from fastapi.testclient import TestClient

    from app.web.app import create_app

    # a stand-in Uyghur catalog (one string) to exercise right-to-left and the links
    directory = _fake_catalog(
        tmp_path, "ug", {"Leave quickly": "تېز ئايرىلىش", MSG["not_found"]: "بۇ ئادرېستا بەت يوق."}
    )
    en = directory / "en" / "LC_MESSAGES"
    en.mkdir(parents=True)
    client = TestClient(
        create_app(settings, store=store, translations_dir=directory), raise_server_exceptions=False
    )
    for r in (client.get("/ug/"), client.get("/?lang=ug"), client.get("/submit?lang=ug")):
        assert r.status_code == 200
        assert '<html lang="ug-Arab" dir="rtl">' in r.text
        assert "تېز ئايرىلىش" in r.text
    page = client.get("/ug/submit").text
    assert 'action="/ug/submit"' in page and 'href="/submit"' in page  # English link
    assert client.get("/ug/no-such").status_code == 404
    assert "بۇ ئادرېستا بەت يوق." in client.get("/ug/no-such").text
    # no cookie is ever set, and an unknown language falls back to English
    assert "set-cookie" not in client.get("/ug/").headers
    assert '<html lang="en" dir="ltr">' in client.get("/en/submit").text
    r = client.get("/?lang=xx")
    assert '<html lang="en" dir="ltr">' in r.text
    assert client.get("/xx/").status_code == 404


def test_css_uses_logical_properties():
    from pathlib import Path

    import app.web

    css = (Path(app.web.__file__).parent / "static" / "css" / "site.css").read_text()
    physical = re.findall(
        r"(?<![-\w])(?:margin|padding|border)-(?:left|right)\b|"
        r"(?<![-\w])(?:left|right)\s*:|text-align\s*:\s*(?:left|right)|"
        r"float\s*:\s*(?:left|right)",
        css,
    )
    assert physical == []
    assert "margin-inline" in css and "padding-inline" in css and "@import" not in css
    # the only url()s are the bundled fonts, on this origin
    urls = re.findall(r"url\(([^)]*)\)", css)
    assert urls and all(u.startswith("/static/fonts/") and u.endswith(".woff2") for u in urls)


def test_every_message_is_in_the_english_catalog():
    from pathlib import Path

    import app.web

    pot = (Path(app.web.__file__).parent / "translations" / "messages.pot").read_text()
    for message in MSG.values():
        first_line = message.split("\n")[0][:40].replace('"', '\\"')
        assert first_line in pot, message


def test_no_cookie_anywhere(web_client):
    for path in ("/", "/submit", "/return", "/leave"):
        assert "set-cookie" not in web_client.get(path).headers
    assert "set-cookie" not in submit(web_client).headers


def test_header_names_match_design():
    assert set(REQUIRED) <= set(SECURITY_HEADERS)


def test_message_catalog_is_up_to_date(tmp_path):
    """Every gettext string in templates/ and app/web is in messages.pot and the English .po."""
    import subprocess
    import sys
    from pathlib import Path

    from babel.messages.pofile import read_po

    root = Path(__file__).resolve().parents[1]
    translations = root / "app" / "web" / "translations"
    fresh = tmp_path / "fresh.pot"
    subprocess.run([str(Path(sys.executable).with_name("pybabel")), "-q", "extract",
                    "-F", str(translations / "babel.cfg"), "-k", "N_", "--no-location",
                    "-o", str(fresh), "app/web", "templates"], cwd=root, check=True)

    def ids(path: Path) -> set:
        with path.open("rb") as fh:
            return {m.id for m in read_po(fh) if m.id}

    extracted = ids(fresh)
    assert len(extracted) > 50
    assert extracted == ids(translations / "messages.pot")
    assert extracted == ids(translations / "en" / "LC_MESSAGES" / "messages.po")


def test_no_spooling_path_is_used(web_client, store, monkeypatch):
    """A large JS-off upload never reaches python-multipart's File/FormParser, Starlette's
    UploadFile/form parser or tempfile: each is booby-trapped here, the upload still works."""
    import tempfile

    import python_multipart.multipart as pm
    import starlette.formparsers
    import starlette.requests

    def trap(*_a, **_k):
        raise AssertionError("a spooling code path was used")

    for name in ("NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile", "mkstemp",
                 "mkdtemp"):
        monkeypatch.setattr(tempfile, name, trap)
    monkeypatch.setattr(pm.File, "__init__", trap)
    monkeypatch.setattr(pm.FormParser, "__init__", trap)
    monkeypatch.setattr(starlette.formparsers.MultiPartParser, "__init__", trap)
    monkeypatch.setattr(starlette.requests.Request, "form", trap)
    monkeypatch.setattr(starlette.requests.Request, "body", trap)
    big = b"0123456789abcdef" * (3 * 1024 * 1024 // 16)
    r = submit(web_client, files=[("big.bin", big, "application/octet-stream")])
    assert r.status_code == 200, r.text[:300]
    [sub] = stored(store)
    assert {f.role for f in sub.files} == {"message", "file-1"}


def test_web_code_has_no_spooling_calls():
    """Belt and braces: the source never calls the APIs that spool plaintext."""
    from pathlib import Path

    import app.web

    for path in Path(app.web.__file__).parent.rglob("*.py"):
        text = re.sub(r"``[^`]*``", "", path.read_text())  # mentions in docs are fine
        for banned in ("request.form(", "UploadFile", "request.body(", "await request.json(",
                       "FormParser(", "tempfile"):
            assert banned not in text, (path.name, banned)
