"""Resumable uploads (tus 1.0.0) and the commit API, in-process, over the real store.

Every refusal is checked for its status, its sentence and that nothing was stored. Runs on
SQLite, on PostgreSQL when GUWAH_TEST_DATABASE_URL is set, and with both blob backends
where the bytes' location matters.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
from typing import Any

import pytest
from sqlalchemy import update

from app.crypto import (
    HybridIdentity,
    X25519Identity,
    decrypt,
    encrypt,
    fingerprint,
    padme,
)
from app.crypto.mailbox import derive_mailbox, new_codename
from app.crypto.stream import payload_size, plaintext_length
from app.store.models import UploadRow
from app.web.commit import CMSG, stream_payload_ok
from app.web.errors import MSG
from app.web.uploads import UMSG

pytestmark = pytest.mark.database

TUS = {"Tus-Resumable": "1.0.0"}


def form_token(client: Any) -> str:
    page = client.get("/submit")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def meta(**items: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in items.items())


def create(client: Any, length: int, role: str = "message", desk: str = "default",
           token: str | None = None) -> Any:
    return client.post(
        "/api/uploads",
        headers={**TUS, "Upload-Length": str(length), "Upload-Metadata": meta(desk=desk, role=role),
                 "Guwah-Form-Token": token or form_token(client)},
    )


def patch(client: Any, url: str, offset: int, data: bytes) -> Any:
    return client.patch(url, content=data, headers={
        **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})


def upload(client: Any, data: bytes, role: str = "message", step: int = 300_000) -> str:
    r = create(client, len(data), role)
    assert r.status_code == 201, r.text
    url = r.headers["Location"]
    for off in range(0, len(data), step):
        r = patch(client, url, off, data[off:off + step])
        assert r.status_code == 204, r.text
        assert int(r.headers["Upload-Offset"]) == min(len(data), off + step)
    return url.rsplit("/", 1)[1]


def stored_upload_bytes(store: Any) -> int:
    """Bytes held by uploads (files in the uploads area, or staged db chunks)."""
    return store.pending_bytes()


def commit(client: Any, mailbox: Any, message: str, files: list[str], token: str | None = None,
           **extra: Any) -> Any:
    body = {
        "csrf": token or form_token(client),
        "desk": "default",
        "message_upload": message,
        "files": [{"role": f"file-{i}", "upload": u} for i, u in enumerate(files, 1)],
        "token_hash": mailbox.token_hash,
        "reply_recipient": str(mailbox.reply_recipient),
    }
    body.update(extra)
    return client.post("/api/submissions", json=body)


def pad(data: bytes) -> bytes:
    """Attachments are Padmé-padded with zeros before encryption (docs/formats.md §2)."""
    return data + bytes(padme(len(data)) - len(data))


def error(r: Any) -> str:
    return r.json()["error"]


@pytest.fixture
def mailbox() -> Any:
    return derive_mailbox(new_codename(), "X25519")


def test_options_advertises_tus(web_client, settings):
    r = web_client.options("/api/uploads")
    assert r.status_code == 204
    assert r.headers["Tus-Version"] == "1.0.0"
    assert set(r.headers["Tus-Extension"].split(",")) == {"creation", "termination",
                                                          "expiration"}
    assert int(r.headers["Tus-Max-Size"]) >= settings.max_file_bytes


def test_round_trip_with_files(web_client, store, editor_identity, mailbox):
    recipients = [editor_identity.recipient()]
    message = encrypt(b'{"format":"guwah-testimony/1"}' + b" " * 226, recipients)
    blob = os.urandom(700_000)
    attachment = encrypt(pad(blob), recipients)
    m = upload(web_client, message)
    f = upload(web_client, attachment, role="file-1")
    assert store.pending_bytes() == len(message) + len(attachment)
    r = commit(web_client, mailbox, m, [f])
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert r.json()["keys"][0]["fingerprint"]
    info = store.submission(sid)
    assert {x.role: x.size for x in info.files} == {"message": len(message),
                                                    "file-1": len(attachment)}
    with store.open_blob_for_read(sid, "file-1") as fh:
        stored = fh.read()
    assert stored == attachment  # byte for byte: no chunk stored twice, none missing
    assert info.files[0].sha256 == hashlib.sha256(attachment).hexdigest()
    assert decrypt(stored, [editor_identity])[:len(blob)] == blob
    assert info.token_hash == mailbox.token_hash
    assert store.pending_bytes() == 0  # adopted by rename: nothing left in the uploads area
    # HEAD on an adopted upload: it is no longer an upload
    assert web_client.head(f"/api/uploads/{f}", headers=TUS).status_code == 404


def test_uploads_with_db_blob_backend(settings, private_tmpdir, editor_identity, mailbox):
    from fastapi.testclient import TestClient

    from app.settings import load_settings
    from app.store import Store
    from app.store.schema import init_store
    from app.web.app import create_app

    s = load_settings(settings.data_dir, database_url=settings.database_url, blob_backend="db")
    with Store(s) as st:
        init_store(st)
        st.add_desk("default")
        ed = os.urandom(32)
        st.add_recipient("default", "E", str(editor_identity.recipient()),
                         base64.b64encode(ed).decode(), fingerprint(ed))
        with TestClient(create_app(s, store=st)) as client:
            message = encrypt(b"x" * 256, [editor_identity.recipient()])
            big = encrypt(pad(os.urandom(2_500_000)), [editor_identity.recipient()])
            m = upload(client, message)
            f = upload(client, big, role="file-1", step=1_300_000)
            # a refused PATCH (bad offset) writes nothing
            assert patch(client, f"/api/uploads/{f}", 5, b"zz").status_code == 409
            r = commit(client, mailbox, m, [f])
            assert r.status_code == 201, r.text
            with st.open_blob_for_read(r.json()["id"], "file-1") as fh:
                assert fh.read() == big
            assert st.pending_bytes() == 0


def test_offset_protocol_no_chunk_twice(web_client, store):
    data = os.urandom(100_000)
    r = create(web_client, len(data))
    url = r.headers["Location"]
    assert patch(web_client, url, 0, data[:40_000]).status_code == 204
    # a retry of the same chunk (the client missed the answer) is refused: 409 + real offset
    r = patch(web_client, url, 0, data[:40_000])
    assert r.status_code == 409 and r.headers["Upload-Offset"] == "40000"
    assert error(r) == UMSG["upload_offset"]
    r = web_client.head(url, headers=TUS)
    assert r.status_code == 200
    assert r.headers["Upload-Offset"] == "40000" and r.headers["Upload-Length"] == "100000"
    assert "GMT" in r.headers["Upload-Expires"]
    assert patch(web_client, url, 40_000, data[40_000:]).status_code == 204
    assert store.pending_bytes() == len(data)
    # more than announced: refused, and the upload keeps exactly what it had
    assert patch(web_client, url, 100_000, b"x").status_code == 413
    assert store.pending_bytes() == len(data)


def test_too_long_patch_is_rolled_back(web_client, store):
    r = create(web_client, 1000)
    url = r.headers["Location"]
    assert patch(web_client, url, 0, b"a" * 600).status_code == 204
    r = patch(web_client, url, 600, b"b" * 500)
    assert r.status_code == 413 and error(r) == UMSG["upload_long"]
    assert web_client.head(url, headers=TUS).headers["Upload-Offset"] == "600"


def test_termination(web_client, store):
    r = create(web_client, 1000)
    url = r.headers["Location"]
    patch(web_client, url, 0, b"a" * 500)
    assert web_client.delete(url, headers=TUS).status_code == 204
    assert web_client.head(url, headers=TUS).status_code == 404
    assert store.pending_bytes() == 0


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("no_tus_header", 412, UMSG["tus_version"]),
        ("bad_csrf", 403, MSG["csrf"]),
        ("cross_site", 403, MSG["cross_site"]),
        ("oversized", 413, MSG["file_big"]),
        ("filename_metadata", 400, UMSG["upload_bad"]),
        ("unknown_desk", 422, MSG["unknown_desk"]),
        ("too_many_files", 413, MSG["too_many_files"]),
        ("pending", 507, MSG["pending"]),
    ],
)
def test_creation_refusals(web_app, web_client, store, settings, case, status, message):
    headers = {**TUS, "Upload-Length": "1000", "Upload-Metadata": meta(desk="default",
                                                                       role="file-1"),
               "Guwah-Form-Token": form_token(web_client)}
    if case == "no_tus_header":
        del headers["Tus-Resumable"]
    elif case == "bad_csrf":
        headers["Guwah-Form-Token"] = "v1.AAAA.BBBB"
    elif case == "cross_site":
        headers["Sec-Fetch-Site"] = "cross-site"
    elif case == "oversized":
        headers["Upload-Length"] = str(settings.max_file_bytes * 2)
    elif case == "filename_metadata":
        headers["Upload-Metadata"] = meta(desk="default", role="file-1", filename="me.jpg")
    elif case == "unknown_desk":
        headers["Upload-Metadata"] = meta(desk="nope", role="file-1")
    elif case == "too_many_files":
        headers["Upload-Metadata"] = meta(desk="default", role=f"file-{settings.max_files + 1}")
    elif case == "pending":
        # the cap counts bytes that arrived (600 here), never what Upload-Length announced
        web_app.state.web.budget.cap = 1500
        first = create(web_client, 600)
        assert first.status_code == 201
        assert patch(web_client, first.headers["Location"], 0, b"a" * 600).status_code == 204
    r = web_client.post("/api/uploads", headers=headers)
    assert r.status_code == status, r.text
    assert error(r) == message
    assert store.pending_bytes() == (600 if case == "pending" else 0)
    assert store.list_submissions() == []
    assert len(store.uploads.refs()) == (1 if case == "pending" else 0)


def test_patch_refusals(web_client, store):
    r = create(web_client, 1000)
    url = r.headers["Location"]
    r = web_client.patch(url, content=b"x", headers={**TUS, "Upload-Offset": "0",
                                                     "Content-Type": "text/plain"})
    assert r.status_code == 415 and error(r) == UMSG["upload_type"]
    r = patch(web_client, "/api/uploads/doesnotexist", 0, b"x")
    assert r.status_code == 404 and error(r) == UMSG["upload_gone"]
    r = web_client.patch(url, content=b"x", headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
        "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert store.pending_bytes() == 0


def test_expired_upload_is_gone_and_cleaned(web_client, store, settings):
    r = create(web_client, 1000)
    url = r.headers["Location"]
    patch(web_client, url, 0, b"a" * 500)
    r2 = create(web_client, 1000)
    patch(web_client, r2.headers["Location"], 0, b"b" * 300)
    old = dt.date.today() - dt.timedelta(days=settings.upload_expiry_hours // 24 + 2)
    with store.engine.begin() as conn:
        conn.execute(update(UploadRow).values(day=old))
    r = patch(web_client, url, 500, b"a")
    assert r.status_code == 410 and error(r) == UMSG["upload_gone"]
    # `guwah cleanup` removes the other abandoned one
    assert store.pending_bytes() == 300
    assert store.cleanup_expired() >= 1
    assert store.pending_bytes() == 0
    assert web_client.head(r2.headers["Location"], headers=TUS).status_code == 404


def test_uploads_survive_startup_cleanup(web_client, store):
    r = create(web_client, 1000)
    patch(web_client, r.headers["Location"], 0, b"a" * 400)
    store.cleanup_staging()  # what a restart does
    assert web_client.head(r.headers["Location"], headers=TUS).headers["Upload-Offset"] == "400"


def test_stream_arithmetic():
    for plain in (0, 1, 255, 65535, 65536, 65537, 3 * 65536, 1_000_000):
        chunks = max(1, -(-plain // 65536))
        assert payload_size(plain) == 16 + plain + 16 * chunks
        assert plaintext_length(16 + plain + 16 * chunks) == plain
        assert stream_payload_ok(16 + plain + 16 * chunks) == (padme(plain) == plain)
    assert plaintext_length(16 + 15) is None
    assert plaintext_length(16 + 65536 + 16 + 16) is None  # empty chunk after a full one
    assert plaintext_length(16 + 65536 + 16 + 5) is None


@pytest.mark.parametrize("case", ["plaintext", "wrong_desk_key_count", "hybrid_for_x25519",
                                  "truncated", "incomplete", "bad_csrf", "used_token",
                                  "wrong_role", "cross_site"])
def test_commit_refusals(web_client, store, editor_identity, mailbox, case):
    recipients = [editor_identity.recipient()]
    body = pad(os.urandom(200_000))
    good = encrypt(body, recipients)
    message = upload(web_client, encrypt(b" " * 256, recipients))
    token = form_token(web_client)
    extra: dict[str, Any] = {}
    status, sentence = 422, None
    if case == "plaintext":
        f = upload(web_client, pad(b"I saw it happen. " * 1000), role="file-1")
        sentence = CMSG["not_age"]
    elif case == "wrong_desk_key_count":
        f = upload(web_client, encrypt(body, [*recipients, X25519Identity.generate().recipient()]),
                   role="file-1")
        sentence = CMSG["wrong_desk"]
    elif case == "hybrid_for_x25519":
        f = upload(web_client, encrypt(body, [HybridIdentity.generate().recipient()]),
                   role="file-1")
        sentence = CMSG["wrong_desk"]
    elif case == "truncated":
        f = upload(web_client, good[:-7], role="file-1")
        sentence = CMSG["truncated"]
    elif case == "incomplete":
        r = create(web_client, len(good), role="file-1")
        patch(web_client, r.headers["Location"], 0, good[:1000])
        f = r.headers["Location"].rsplit("/", 1)[1]
        sentence = CMSG["incomplete"]
    elif case == "wrong_role":
        f = upload(web_client, good, role="file-2")
        sentence = CMSG["wrong_desk"]
    else:
        f = upload(web_client, good, role="file-1")
        if case == "bad_csrf":
            token, status, sentence = "v1.xx.yy", 403, MSG["csrf"]
        elif case == "used_token":
            m2 = upload(web_client, encrypt(b" " * 256, recipients))
            other = derive_mailbox(new_codename(), "X25519")
            assert commit(web_client, other, m2, [], token=token).status_code == 201
            status, sentence = 409, MSG["used"]
        elif case == "cross_site":
            status, sentence = 403, MSG["cross_site"]
    before = len(store.list_submissions())
    if case == "cross_site":
        r = web_client.post("/api/submissions", headers={"Sec-Fetch-Site": "cross-site"}, json={
            "csrf": token, "desk": "default", "message_upload": message,
            "files": [{"role": "file-1", "upload": f}], "token_hash": mailbox.token_hash,
            "reply_recipient": str(mailbox.reply_recipient)})
    else:
        r = commit(web_client, mailbox, message, [f], token=token, **extra)
    assert r.status_code == status, r.text
    assert error(r) == sentence
    assert len(store.list_submissions()) == before  # nothing became visible
    if status == 422 and case != "incomplete":
        assert store.pending_bytes() == 0  # the refused uploads were removed: nothing kept


def test_commit_sent_again_answers_the_same_receipt(web_client, store, editor_identity,
                                                    mailbox):
    """A commit whose answer was lost is sent again: the same receipt, one submission. The
    same token with anything else (other uploads, another mailbox) is still refused."""
    recipients = [editor_identity.recipient()]
    message = upload(web_client, encrypt(b" " * 256, recipients))
    f = upload(web_client, encrypt(pad(os.urandom(100_000)), recipients), role="file-1")
    token = form_token(web_client)
    first = commit(web_client, mailbox, message, [f], token=token)
    assert first.status_code == 201, first.text
    again = commit(web_client, mailbox, message, [f], token=token)
    assert again.status_code == 201 and again.json() == first.json()
    assert [s.id for s in store.list_submissions()] == [first.json()["id"]]
    other_message = upload(web_client, encrypt(b" " * 256, recipients))
    r = commit(web_client, mailbox, other_message, [], token=token)
    assert r.status_code == 409 and error(r) == MSG["used"]
    other = derive_mailbox(new_codename(), "X25519")
    r = commit(web_client, other, message, [f], token=token)
    assert r.status_code == 409 and error(r) == MSG["used"]
    assert len(store.list_submissions()) == 1


def test_follow_up_joins_the_mailbox(web_client, store, editor_identity):
    codename = new_codename()
    mb = derive_mailbox(codename, "X25519")
    recipients = [editor_identity.recipient()]
    first = commit(web_client, mb, upload(web_client, encrypt(b" " * 256, recipients)), [])
    assert first.status_code == 201
    r = commit(web_client, mb, upload(web_client, encrypt(b" " * 256, recipients)), [],
               mailbox_token=mb.token.hex(), token_hash="")
    assert r.status_code == 201, r.text
    assert store.submission(r.json()["id"]).parent_id == first.json()["id"]
    # another reply recipient for that mailbox is not refused: a refusal would tell that the
    # mailbox is used (tests/hostile/test_mailbox_oracle.py); it is linked like the rest
    other = derive_mailbox(new_codename(), "X25519")
    r = web_client.post("/api/submissions", json={
        "csrf": form_token(web_client), "desk": "default",
        "message_upload": upload(web_client, encrypt(b" " * 256, recipients)), "files": [],
        "token_hash": "", "reply_recipient": str(other.reply_recipient),
        "mailbox_token": mb.token.hex()})
    assert r.status_code == 201, r.text
    assert store.submission(r.json()["id"]).parent_id == first.json()["id"]
    # an unknown mailbox token starts a new mailbox: the answer never tells whether a
    # codename was used before
    r = web_client.post("/api/submissions", json={
        "csrf": form_token(web_client), "desk": "default",
        "message_upload": upload(web_client, encrypt(b" " * 256, recipients)), "files": [],
        "token_hash": "", "reply_recipient": str(other.reply_recipient),
        "mailbox_token": other.token.hex()})
    assert r.status_code == 201, r.text
    new = store.submission(r.json()["id"])
    assert new.parent_id is None and new.token_hash == other.token_hash


def test_cut_mid_patch_keeps_the_prefix_and_resumes(guwah_server, editor_identity):
    """A connection cut in the middle of a PATCH body (a dropped Tor circuit): the server keeps
    exactly the bytes that arrived, HEAD says where to continue, and the rest completes it."""
    import socket
    import time
    import urllib.parse

    import httpx

    data = os.urandom(3_000_000)
    with httpx.Client(base_url=guwah_server.url) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/submit").text).group(1)
        r = create(client, len(data), role="file-1", token=token)
        assert r.status_code == 201
        url = r.headers["Location"]
        host = urllib.parse.urlsplit(guwah_server.url)
        with socket.create_connection((host.hostname, host.port)) as sock:
            sock.sendall(
                f"PATCH {url} HTTP/1.1\r\nHost: {host.netloc}\r\nTus-Resumable: 1.0.0\r\n"
                f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:1_234_567]
            )
        offset, deadline = -1, time.monotonic() + 30
        while time.monotonic() < deadline:  # wait for the server to notice the cut
            head = client.head(url, headers=TUS)
            if int(head.headers["Upload-Offset"]) == 1_234_567:
                offset = 1_234_567
                break
            time.sleep(0.1)
        assert offset == 1_234_567
        r = patch(client, url, offset, data[offset:])
        assert r.status_code == 204 and int(r.headers["Upload-Offset"]) == len(data)
    settings_ = __import__("app.settings", fromlist=["load_settings"]).load_settings(
        guwah_server.data_dir, database_url=guwah_server.database_url)
    from app.store import Store

    with Store(settings_) as st, st.uploads.open(url.rsplit("/", 1)[1]) as fh:
        assert fh.read() == data  # every byte once, in order


def test_big_patch_lands_every_byte_once_in_order(guwah_server):
    """One fast PATCH of 13 MiB and an odd tail over a real socket: the server's writing thread
    takes the pieces as they arrive (app/web/write_behind.py); what is stored is exactly what
    was sent."""
    import httpx

    data = os.urandom(13 * 1024 * 1024 + 12_345)
    with httpx.Client(base_url=guwah_server.url, timeout=120) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/submit").text).group(1)
        r = create(client, len(data), role="file-1", token=token)
        assert r.status_code == 201
        url = r.headers["Location"]
        r = patch(client, url, 0, data)
        assert r.status_code == 204 and int(r.headers["Upload-Offset"]) == len(data)
    settings_ = __import__("app.settings", fromlist=["load_settings"]).load_settings(
        guwah_server.data_dir, database_url=guwah_server.database_url)
    from app.store import Store

    with Store(settings_) as st, st.uploads.open(url.rsplit("/", 1)[1]) as fh:
        assert fh.read() == data


def test_one_writer_per_upload(store, desk):
    """Two PATCHes at once on one upload: the second is refused (409), never interleaved."""
    from app.store.uploads import UploadConflict

    info = store.uploads.create(desk.id, "message", 100)
    first = store.uploads.appender(info.id)
    with pytest.raises(UploadConflict):
        store.uploads.appender(info.id)
    first.write(b"x" * 10)
    first.finish()
    first.close()
    with store.uploads.appender(info.id) as again:
        assert again.offset == 10
    assert store.uploads.info(info.id, durable=True).offset == 10
