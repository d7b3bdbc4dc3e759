"""Crash debris: a real ``guwah serve`` killed with SIGKILL mid-upload, then ``guwah cleanup``.

Witnesses run over real sockets: JavaScript-off posts (some held half-sent, some racing to the
end) and JavaScript-on resumable uploads. After the kill, ``guwah cleanup`` (a separate
process, as the systemd timer runs it) must leave no debris at any age, keep every acknowledged
submission decryptable and every acknowledged upload offset, and say what it removed in counts.
A cleanup that runs while uploads are in progress must leave them to finish.
Both blob backends, on SQLite and (GUWAH_TEST_DATABASE_URL) PostgreSQL.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import GuwahServer
from sqlalchemy import select
from witness_traffic import (
    FILE_BYTES,
    TUS,
    HeldWitness,
    jsoff_witness,
    json_witness,
    message_document,
    run_guwah,
    serve_with_backend,
    store_of,
    upload,
    wait_for,
)

from app.crypto import decrypt, encrypt, padme
from app.crypto.mailbox import derive_mailbox, new_codename
from app.store.models import BlobChunkRow, BlobStagingRow

pytestmark = [pytest.mark.database, pytest.mark.slow]


@pytest.fixture(params=["fs", "db"])
def server(request, tmp_path: Path, database_url: str) -> Iterator[GuwahServer]:
    yield from serve_with_backend(tmp_path, database_url, request.param)


def debris(server: GuwahServer) -> int:
    """Blobs no row references and no upload owns: staging files/rows, renamed orphans."""
    with store_of(server) as store:
        keep = store.referenced_refs()
        if server.extra["backend"] == "fs":
            root = store.settings.blob_path
            files = [p for p in root.rglob("*") if p.is_file()]
            return sum(1 for p in files if p.parent.name == "staging" or p.name not in keep)
        with store.engine.connect() as conn:
            staged = {r for (r,) in conn.execute(select(BlobStagingRow.ref))}
            chunks = {r for (r,) in conn.execute(select(BlobChunkRow.ref).distinct())}
        return len(staged - keep) + len(chunks - staged - keep)


def staging_count(server: GuwahServer) -> int:
    if server.extra["backend"] == "fs":
        return len(list((server.data_dir / "blobs" / "staging").glob("*.part")))
    with store_of(server) as store, store.engine.connect() as conn:
        staged = {r for (r,) in conn.execute(select(BlobStagingRow.ref))}
        return len(staged - store.uploads.refs())


def guwah_cleanup(server: GuwahServer) -> str:
    proc = run_guwah(server, "cleanup")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    # counts only: no blob name, id or token could be tied to anything
    assert not re.search(r"[0-9a-f]{12,}|[A-Za-z0-9_-]{20,}", proc.stdout), proc.stdout
    return proc.stdout


def counts(output: str) -> dict[str, int]:
    removed = int(re.search(r"removed (\d+) item", output).group(1))
    live = int(re.search(r"left (\d+) blob", output).group(1))
    return {"removed": removed, "in_progress": live}


def stored_markers(server: GuwahServer) -> list[str]:
    """Decrypt every stored submission's message: every one must open."""
    found = []
    with store_of(server) as store:
        for info in store.list_submissions():
            with store.open_blob_for_read(info.id, "message") as fh:
                plain = decrypt(fh.read(), [server.identity])
            found.extend(re.findall(rb"witness-[0-9a-f]{12}", plain))
            for f in info.files:
                with store.open_blob_for_read(info.id, f.role) as fh:
                    decrypt(fh.read(), [server.identity])
    return [m.decode() for m in found]


def test_sigkill_mid_upload_then_cleanup_leaves_no_debris(server: GuwahServer) -> None:
    held = [HeldWitness(server, f"witness-{secrets.token_hex(6)}") for _ in range(5)]
    wait_for(lambda: staging_count(server) >= 5, "the held witnesses' staging blobs")
    # a JS-on upload in progress, acknowledged up to 512 KiB: it must survive the cleanup
    with httpx.Client(base_url=server.url, timeout=120) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/submit").text).group(1)
        live_url = upload(client, token, os.urandom(900 * 1024), "file-1", 512 * 1024)
    acks: list[str] = []
    threads = [threading.Thread(target=jsoff_witness, args=(server, f"witness-{secrets.token_hex(6)}",
                                                      acks)) for _ in range(14)]
    threads += [threading.Thread(target=json_witness,
                                 args=(server, f"witness-{secrets.token_hex(6)}", acks))
                for _ in range(6)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acks) >= 3, "the first acknowledgements", 180)
    server.process.kill()  # SIGKILL: no clean-up code of the server runs
    server.process.wait()
    for t in threads:
        t.join(120)
    for witness in held:
        witness.sock.close()
    acknowledged = list(acks)

    before = debris(server)
    assert before >= 5  # at least the held witnesses' partial blobs
    output = guwah_cleanup(server)
    assert counts(output)["removed"] >= before and counts(output)["in_progress"] == 0
    assert debris(server) == 0
    markers = stored_markers(server)
    assert set(acknowledged) <= set(markers)  # no acknowledged submission lost
    with store_of(server) as store:
        assert len(markers) == len(store.list_submissions())
        live = store.uploads.info(live_url.rsplit("/", 1)[1])
        assert live.offset == 512 * 1024  # an acknowledged upload offset survives too
    assert counts(guwah_cleanup(server))["removed"] == 0  # idempotent


def test_cleanup_during_uploads_leaves_them_to_finish(server: GuwahServer) -> None:
    marker = f"witness-{secrets.token_hex(6)}"
    witness = HeldWitness(server, marker)
    wait_for(lambda: staging_count(server) >= 1, "the witness's staging blob")
    recipients = [server.identity.recipient()]
    mailbox = derive_mailbox(new_codename(), "X25519")
    json_marker = f"witness-{secrets.token_hex(6)}"
    message = encrypt(message_document(json_marker), recipients)
    attachment = encrypt(os.urandom(padme(FILE_BYTES)), recipients)
    with httpx.Client(base_url=server.url, timeout=120) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/submit").text).group(1)
        m = upload(client, token, message, "message", len(message))
        f = upload(client, token, attachment, "file-1", 300 * 1024)

        output = guwah_cleanup(server)
        assert counts(output)["removed"] == 0
        assert counts(output)["in_progress"] >= 1  # the JS-off witness's blob, left alone
        assert staging_count(server) == 1

        assert witness.finish() == 200
        for off in range(300 * 1024, len(attachment), 256 * 1024):
            r = client.patch(f, content=attachment[off:off + 256 * 1024], headers={
                **TUS, "Upload-Offset": str(off),
                "Content-Type": "application/offset+octet-stream"})
            assert r.status_code == 204, r.text
        r = client.post("/api/submissions", json={
            "csrf": token, "desk": "default", "message_upload": m.rsplit("/", 1)[1],
            "files": [{"role": "file-1", "upload": f.rsplit("/", 1)[1]}],
            "token_hash": mailbox.token_hash, "reply_recipient": str(mailbox.reply_recipient)})
        assert r.status_code == 201, r.text
    assert sorted(stored_markers(server)) == sorted([marker, json_marker])
    assert counts(guwah_cleanup(server))["removed"] == 0
