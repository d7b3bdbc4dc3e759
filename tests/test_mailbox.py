"""The returning witness without a browser: read replies (JS-off page and the JSON API),
neutral answers for unknown mailboxes, and follow-ups linked to the first submission.

Real crypto, real store (SQLite; PostgreSQL when GUWAH_TEST_DATABASE_URL is set). Replies are
made the real way (tests/conftest.py ``store_real_reply``: a guwah-reply/1 document encrypted
to the witness's reply recipient and the desk's keys).
"""

from __future__ import annotations

import base64
import json
import re

import pytest

from app.crypto import decrypt
from app.crypto.mailbox import derive_mailbox
from app.web.errors import MSG

pytestmark = [pytest.mark.database]

TOKEN_VALUE = re.compile(r'value="v1\.[^"]+"')  # form tokens and mailbox tickets


def page_token(client, path: str = "/submit") -> str:
    page = client.get(path)
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def first_submission(client, text: str = "I saw it.") -> str:
    parts = [
        ("csrf", (None, page_token(client))),
        ("desk", (None, "default")),
        ("lang", (None, "en")),
        ("website", (None, "")),
        ("testimony", (None, text)),
        ("kept_codename", (None, "yes")),
    ]
    r = client.post("/submit", files=parts)
    assert r.status_code == 200, r.text[:400]
    return re.search(r'id="codename"[^>]*>([^<]+)<', r.text).group(1)


def open_mailbox(client, codename: str):
    return client.post("/return", data={"csrf": page_token(client, "/return"),
                                        "codename": codename})


def follow_up_fields(html: str) -> tuple[str, str]:
    form = html[html.index('id="follow-up-form"'):]
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    ticket = re.search(r'name="mailbox" value="([^"]+)"', form).group(1)
    return csrf, ticket


def send_follow_up(client, csrf: str, ticket: str, text: str, files=()):
    parts = [
        ("csrf", (None, csrf)),
        ("mailbox", (None, ticket)),
        ("lang", (None, "en")),
        ("website", (None, "")),
        ("testimony", (None, text)),
    ] + [("files", f) for f in files]
    return client.post("/mailbox/follow-up", files=parts)


def count_kdf(monkeypatch) -> list[str]:
    """Count real KDF runs of the return page (the real scrypt still runs)."""
    import app.web.mailbox as routes

    calls: list[str] = []
    real = routes.kdf

    def counting(normalized: str) -> bytes:
        calls.append("kdf")
        return real(normalized)

    monkeypatch.setattr(routes, "kdf", counting)
    return calls


# ----------------------------------------------------------------------------- reading
def test_reply_is_decrypted_and_rendered_escaped(web_client, store, make_reply):
    codename = first_submission(web_client)
    [sub] = store.list_submissions()
    text = "Thank you. <script>alert(1)</script>\nSecond line & more — ئۇيغۇرچە"
    make_reply(store, sub.id, text)
    make_reply(store, sub.id, "A second reply.")
    r = open_mailbox(web_client, codename)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert "set-cookie" not in r.headers
    assert 'id="no-replies"' not in r.text
    assert "<script>alert(1)</script>" not in r.text
    assert "Thank you. &lt;script&gt;alert(1)&lt;/script&gt;<br>Second line &amp; more" in r.text
    assert "A second reply." in r.text
    assert r.text.count('class="reply"') == 2
    day = sub.day.isoformat()
    assert f"Received on <bdi>{day}</bdi>" in r.text  # the date isolated in its sentence
    # the codename is never echoed: the follow-up form carries a sealed ticket
    assert codename not in r.text and codename.replace(" ", "+") not in r.text


def test_neutral_answer_is_identical_and_always_runs_the_kdf(web_client, store, make_reply,
                                                             monkeypatch):
    """Existing mailbox without reply, wrong-but-valid codename: the same bytes, one KDF each."""
    codename = first_submission(web_client)
    calls = count_kdf(monkeypatch)
    known = open_mailbox(web_client, codename)
    wrong = open_mailbox(web_client, "abacus abdomen abdominal abide abiding ability ablaze")
    assert calls == ["kdf", "kdf"]
    assert known.status_code == wrong.status_code == 200
    assert 'id="no-replies"' in wrong.text
    assert TOKEN_VALUE.sub("", known.text) == TOKEN_VALUE.sub("", wrong.text)
    assert dict(known.headers) | {"content-length": ""} == dict(wrong.headers) | {
        "content-length": ""}
    # once the mailbox has a reply, a wrong codename still gets the neutral page
    [sub] = store.list_submissions()
    make_reply(store, sub.id, "only for the real codename")
    wrong2 = open_mailbox(web_client, "abacus abdomen abdominal abide abiding ability ablaze")
    assert TOKEN_VALUE.sub("", wrong2.text) == TOKEN_VALUE.sub("", wrong.text)
    assert "only for the real codename" in open_mailbox(web_client, codename).text
    assert calls == ["kdf"] * 4


def test_bad_codenames_are_refused_before_the_kdf(web_client, monkeypatch):
    calls = count_kdf(monkeypatch)
    token = page_token(web_client, "/return")
    r = web_client.post("/return", data={"csrf": token, "codename": "abacus zoom"})
    assert r.status_code == 422 and MSG["codename_words"] in r.text
    r = web_client.post("/return", data={"csrf": "v1.nope.nope", "codename": "abacus " * 7})
    assert r.status_code == 403
    assert calls == []


# ----------------------------------------------------------------------------- JSON API
def test_api_returns_ciphertext_only_and_the_same_shape_for_unknown(web_client, store,
                                                                    make_reply, editor_identity):
    codename = first_submission(web_client)
    [sub] = store.list_submissions()
    make_reply(store, sub.id, "api canary reply")
    mailbox = derive_mailbox(codename, "X25519")
    r = web_client.post("/api/mailbox", json={"token": mailbox.token.hex()})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert b"api canary reply" not in r.content
    [item] = r.json()["replies"]
    assert set(item) == {"day", "age"} and item["day"] == sub.day.isoformat()
    plain = decrypt(base64.b64decode(item["age"]), [mailbox.reply_identity])
    doc = json.loads(plain.rstrip(b" "))
    assert doc == {"format": "guwah-reply/1", "submission_id": sub.id,
                   "day": doc["day"], "text": "api canary reply"}
    desk = {"name": "default", "kind": "X25519",
            "recipients": [str(editor_identity.recipient())]}
    assert r.json()["desk"] == desk
    # unknown token: the same shape, no replies, the same desk (a follow-up would go there)
    unknown = web_client.post("/api/mailbox", json={"token": "ab" * 32})
    assert unknown.status_code == 200 and unknown.json() == {"replies": [], "desk": desk}
    # the token hash (what a leaked database holds) opens nothing
    by_hash = web_client.post("/api/mailbox", json={"token": mailbox.token_hash})
    assert by_hash.json() == {"replies": [], "desk": desk}


def test_api_answer_is_identical_for_unknown_and_reply_less_mailboxes(web_client, store):
    codename = first_submission(web_client)
    token = derive_mailbox(codename, "X25519").token.hex()
    known = web_client.post("/api/mailbox", json={"token": token})
    unknown = web_client.post("/api/mailbox", json={"token": "cd" * 32})
    assert known.status_code == unknown.status_code == 200
    assert known.content == unknown.content
    assert dict(known.headers) == dict(unknown.headers)


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b'{"token": "xyz"}', "application/json", 400),
        (b'{"token": "' + b"AB" * 32 + b'"}', "application/json", 400),
        (b"[]", "application/json", 400),
        (b"not json", "application/json", 400),
        (b'{"token": "' + b"ab" * 600 + b'"}', "application/json", 413),
        (b"token=" + b"ab" * 32, "application/x-www-form-urlencoded", 415),
    ],
)
def test_api_refuses_bad_requests(web_client, body, ctype, status):
    r = web_client.post("/api/mailbox", content=body, headers={"content-type": ctype})
    assert r.status_code == status
    assert set(r.json()) == {"error"}


def test_api_refuses_cross_site_and_get(web_client):
    r = web_client.post("/api/mailbox", json={"token": "ab" * 32},
                        headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    assert web_client.get("/api/mailbox?token=" + "ab" * 32).status_code == 405


# ----------------------------------------------------------------------------- follow-ups
def test_follow_up_is_sealed_and_linked(web_client, store, editor_identity, make_reply):
    codename = first_submission(web_client, "first testimony")
    [first] = store.list_submissions()
    make_reply(store, first.id, "please send the photo")
    page = open_mailbox(web_client, codename)
    assert "please send the photo" in page.text
    csrf, ticket = follow_up_fields(page.text)
    r = send_follow_up(web_client, csrf, ticket, "here it is",
                       files=[("photo.jpg", b"\xff\xd8photo-bytes", "image/jpeg")])
    assert r.status_code == 200, r.text[:500]
    assert 'id="follow-up-received"' in r.text and codename not in r.text
    subs = store.list_submissions()
    assert len(subs) == 2
    [follow] = [s for s in subs if s.id != first.id]
    assert follow.parent_id == first.id
    assert follow.token_hash == first.token_hash
    assert follow.reply_recipient == first.reply_recipient
    assert follow.desk == first.desk
    doc = json.loads(decrypt(store.open_blob_for_read(follow.id, "message").read(),
                             [editor_identity]).rstrip(b" "))
    assert doc["format"] == "guwah-testimony/1"
    assert doc["protection"] == "server-sealed"
    assert doc["parent_id"] == first.id
    assert doc["testimony"] == "here it is"
    assert doc["reply_recipient"] == first.reply_recipient
    [meta] = doc["files"]
    photo = decrypt(store.open_blob_for_read(follow.id, "file-1").read(), [editor_identity])
    assert photo[: meta["size"]] == b"\xff\xd8photo-bytes"
    # the same form cannot be sent twice
    again = send_follow_up(web_client, csrf, ticket, "twice")
    assert again.status_code == 409
    # a second follow-up (new page) links to the first submission too, not to the follow-up
    csrf2, ticket2 = follow_up_fields(open_mailbox(web_client, codename).text)
    assert send_follow_up(web_client, csrf2, ticket2, "and one more").status_code == 200
    third = [s for s in store.list_submissions() if s.id not in (first.id, follow.id)]
    assert [s.parent_id for s in third] == [first.id]


def test_follow_up_with_a_forged_ticket_keeps_nothing(web_client, store):
    codename = first_submission(web_client)
    csrf, ticket = follow_up_fields(open_mailbox(web_client, codename).text)
    body = ticket[3:]
    flipped = ("A" if body[5] != "A" else "B")
    forged = "v1." + body[:5] + flipped + body[6:]
    for bad in (forged, "", codename, "v1." + "A" * 200):
        r = send_follow_up(web_client, csrf, bad, "should not be kept",
                           files=[("a.txt", b"abc", "text/plain")])
        assert r.status_code == 403, r.text[:300]
    assert len(store.list_submissions()) == 1
    # the ticket is not the codename in any readable form
    assert codename.split()[0] not in base64.urlsafe_b64decode(body + "==").decode("latin-1")


def test_follow_up_from_an_unused_codename_opens_that_mailbox(web_client, store):
    """The page was the same as for a real mailbox, so nothing the witness wrote is lost."""
    wrong = "abacus abdomen abdominal abide abiding ability ablaze"
    csrf, ticket = follow_up_fields(open_mailbox(web_client, wrong).text)
    assert send_follow_up(web_client, csrf, ticket, "typed my codename wrong").status_code == 200
    [sub] = store.list_submissions()
    expected = derive_mailbox(wrong, "X25519")
    assert sub.parent_id is None and sub.desk == "default"
    assert sub.token_hash == expected.token_hash
    assert sub.reply_recipient == expected.reply_recipient


def test_follow_up_busy_kdf_is_503(web_app, web_client, store, monkeypatch):
    import threading

    import app.web.sealing as sealing

    codename = first_submission(web_client)
    csrf, ticket = follow_up_fields(open_mailbox(web_client, codename).text)
    monkeypatch.setattr(sealing, "KDF_WAIT_SECONDS", 0.05)
    slots: threading.BoundedSemaphore = web_app.state.web.kdf_slots
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    try:
        r = send_follow_up(web_client, csrf, ticket, "x")
        assert r.status_code == 503 and MSG["busy"] in r.text
        r = open_mailbox(web_client, codename)
        assert r.status_code == 503
    finally:
        for _ in range(taken):
            slots.release()
    assert len(store.list_submissions()) == 1


def test_hybrid_desk_reply_and_follow_up(settings, store, private_tmpdir, make_reply):
    """A post-quantum desk: the reply identity is hybrid, on the page and in the follow-up."""
    import secrets as _secrets
    import warnings

    from app.crypto import HybridIdentity, fingerprint
    from app.web.app import create_app

    editor = HybridIdentity.generate()
    ed_pub = _secrets.token_bytes(32)
    store.add_desk("pq", "Post-quantum desk")
    store.add_recipient("pq", "PQ Editor", str(editor.recipient()),
                        base64.b64encode(ed_pub).decode(), fingerprint(ed_pub))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    app = create_app(settings, store=store)
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
        parts = [("csrf", (None, page_token(client))), ("desk", (None, "pq")),
                 ("testimony", (None, "pq testimony")), ("kept_codename", (None, "yes"))]
        r = client.post("/submit", files=parts)
        codename = re.search(r'id="codename"[^>]*>([^<]+)<', r.text).group(1)
        [first] = store.list_submissions()
        assert first.reply_recipient.startswith("age1pq1")
        make_reply(store, first.id, "hybrid reply text")
        page = open_mailbox(client, codename)
        assert "hybrid reply text" in page.text
        csrf, ticket = follow_up_fields(page.text)
        assert send_follow_up(client, csrf, ticket, "pq follow-up").status_code == 200
    [follow] = [s for s in store.list_submissions() if s.id != first.id]
    assert follow.parent_id == first.id and follow.reply_recipient == first.reply_recipient
    doc = json.loads(decrypt(store.open_blob_for_read(follow.id, "message").read(),
                             [editor]).rstrip(b" "))
    assert doc["parent_id"] == first.id and doc["testimony"] == "pq follow-up"


# ----------------------------------------------------------------------------- delete my replies
def delete_fields(html: str) -> tuple[str, str]:
    form = html[html.index('id="delete-replies-form"'):]
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    ticket = re.search(r'name="mailbox" value="([^"]+)"', form).group(1)
    return csrf, ticket


@pytest.mark.database
def test_witness_deletes_the_replies_leaving_tombstones(web_client, store, make_reply):

    codename = first_submission(web_client)
    [sub] = store.list_submissions()
    assert 'id="delete-replies-form"' not in open_mailbox(web_client, codename).text  # none yet
    ids = {make_reply(store, sub.id, "Please tell us more."), make_reply(store, sub.id, "Thanks.")}
    other = first_submission(web_client, "someone else")
    [other_sub] = [s for s in store.list_submissions() if s.id != sub.id]
    kept = make_reply(store, other_sub.id, "for the other witness")
    page = open_mailbox(web_client, codename)
    csrf, ticket = delete_fields(page.text)
    # without the confirmation nothing is deleted
    r = web_client.post("/mailbox/delete-replies", data={"csrf": csrf, "mailbox": ticket})
    assert r.status_code == 422
    assert len(store.replies(sub.token_hash)) == 2
    r = web_client.post("/mailbox/delete-replies",
                        data={"csrf": csrf, "mailbox": ticket, "confirm_delete": "yes"})
    assert r.status_code == 200 and 'id="replies-deleted"' in r.text
    assert store.replies(sub.token_hash) == []
    assert [x.id for x in store.replies(other_sub.token_hash)] == [kept]  # only this mailbox
    gone = store.withdrawn_replies(ids | {kept})
    assert {g[0] for g in gone} == ids and all(g[1] == sub.day for g in gone)
    again = open_mailbox(web_client, codename)
    assert 'id="no-replies"' in again.text
    assert open_mailbox(web_client, other).text.count('class="reply"') == 1
    # a forged or expired ticket deletes nothing
    r = web_client.post("/mailbox/delete-replies",
                        data={"csrf": csrf, "mailbox": "v1.AAAA", "confirm_delete": "yes"})
    assert r.status_code == 403
    assert len(store.replies(other_sub.token_hash)) == 1


def test_api_delete_replies_needs_the_confirmation(web_client, store, make_reply):
    codename = first_submission(web_client)
    [sub] = store.list_submissions()
    make_reply(store, sub.id, "to be deleted")
    token = derive_mailbox(codename, "X25519").token.hex()
    r = web_client.post("/api/mailbox/delete-replies", json={"token": token})
    assert r.status_code == 422 and len(store.replies(sub.token_hash)) == 1
    r = web_client.post("/api/mailbox/delete-replies", json={"token": "zz", "confirm": True})
    assert r.status_code == 400
    r = web_client.post("/api/mailbox/delete-replies", json={"token": token, "confirm": True},
                        headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403 and len(store.replies(sub.token_hash)) == 1
    r = web_client.post("/api/mailbox/delete-replies", json={"token": token, "confirm": True})
    assert r.status_code == 200 and r.json() == {"deleted": True}
    assert store.replies(sub.token_hash) == []
