"""Crash debris: a real ``guwah serve`` killed with SIGKILL mid-upload, then ``guwah cleanup``.

Witnesses run over real sockets: JavaScript-off posts (some held half-sent, some racing to the
end) and JavaScript-on resumable uploads. After the kill, ``guwah cleanup`` (a separate
process, as the systemd timer runs it) must leave no debris at any age, keep every acknowledged
submission decryptable and every acknowledged upload offset, and say what it removed in counts.
A cleanup that runs while uploads are in progress must leave them to finish.
Both blob backends, on SQLite and (GUWAH_TEST_DATABASE_URL) PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import GuwahServer, run_guwah_server
from sqlalchemy import select

from app.crypto import decrypt, encrypt, padme
from app.crypto.mailbox import derive_mailbox, new_codename
from app.settings import load_settings
from app.store import Store
from app.store.models import BlobChunkRow, BlobStagingRow

pytestmark = [pytest.mark.database, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TUS = {"Tus-Resumable": "1.0.0"}
FILE_BYTES = 700 * 1024  # above the 256 KiB inline limit: the fs backend writes a staging file
HELD_BYTES = 2 * 1024 * 1024  # a held witness sends 1.5 MiB of it (the sealer batches 1 MiB)


@pytest.fixture(params=["fs", "db"])
def server(request, tmp_path: Path, database_url: str) -> Iterator[GuwahServer]:
    extra = {"GUWAH_BLOB_BACKEND": request.param}
    with run_guwah_server(tmp_path, database_url, env_extra=extra) as srv:
        srv.extra["backend"] = request.param
        yield srv


def _store(server: GuwahServer) -> Store:
    return Store(load_settings(server.data_dir, database_url=server.database_url,
                               blob_backend=server.extra["backend"]))


def _token(server: GuwahServer) -> str:
    page = httpx.get(server.url + "/submit", timeout=60)
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def _jsoff_body(token: str, marker: str, size: int) -> tuple[bytes, bytes, str]:
    """(first part: fields and the first 1.5 MiB of the file, the rest, boundary)."""
    boundary = "----debris" + secrets.token_hex(6)
    fields = [("csrf", token), ("desk", "default"), ("website", ""), ("testimony", marker)]
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n'.encode()
        for n, v in fields
    )
    part = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="e.bin"\r\nContent-Type: application/octet-stream\r\n\r\n').encode()
    body = head + part + os.urandom(size) + f"\r\n--{boundary}--\r\n".encode()
    cut = len(head) + len(part) + min(size - 1, 1536 * 1024)
    return body[:cut], body[cut:], boundary


class HeldWitness:
    """A JS-off witness on slow Tor: the request is half sent, the rest comes later."""

    def __init__(self, server: GuwahServer, marker: str) -> None:
        first, self.rest, boundary = _jsoff_body(_token(server), marker, HELD_BYTES)
        port = int(server.url.rsplit(":", 1)[1])
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.sendall(
            (f"POST /submit HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
             f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
             f"Content-Length: {len(first) + len(self.rest)}\r\nConnection: close\r\n\r\n"
             ).encode() + first)

    def finish(self) -> int:
        self.sock.sendall(self.rest)
        answer = b""
        while chunk := self.sock.recv(65536):
            answer += chunk
        self.sock.close()
        return int(answer.split(b" ", 2)[1])


def _jsoff(server: GuwahServer, marker: str, acks: list[str]) -> None:
    first, rest, boundary = _jsoff_body(_token(server), marker, 1200 * 1024)
    try:
        r = httpx.post(server.url + "/submit", content=first + rest, timeout=120, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
    except httpx.HTTPError:
        return  # the server died under it: not acknowledged
    if r.status_code == 200:
        acks.append(marker)


def _message(marker: str) -> bytes:
    doc = json.dumps({"format": "guwah-testimony/1", "testimony": marker}).encode()
    return doc + b" " * (padme(len(doc)) - len(doc))


def _upload(client: httpx.Client, token: str, data: bytes, role: str, upto: int) -> str:
    meta = f"desk {_b64('default')},role {_b64(role)}"
    r = client.post("/api/uploads", headers={**TUS, "Upload-Length": str(len(data)),
                                             "Upload-Metadata": meta, "Guwah-Form-Token": token})
    assert r.status_code == 201, r.text
    url = r.headers["Location"]
    for off in range(0, upto, 256 * 1024):
        end = min(upto, off + 256 * 1024)
        r = client.patch(url, content=data[off:end], headers={
            **TUS, "Upload-Offset": str(off), "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204, r.text
    return url


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def _json_witness(server: GuwahServer, marker: str, acks: list[str]) -> None:
    """JS-on: encrypt, upload in chunks, commit."""
    recipients = [server.identity.recipient()]
    mailbox = derive_mailbox(new_codename(), "X25519")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            token = re.search(r'name="csrf" value="([^"]+)"', client.get("/submit").text).group(1)
            message = encrypt(_message(marker), recipients)
            attachment = encrypt(os.urandom(padme(FILE_BYTES)), recipients)
            m = _upload(client, token, message, "message", len(message))
            f = _upload(client, token, attachment, "file-1", len(attachment))
            r = client.post("/api/submissions", json={
                "csrf": token, "desk": "default", "message_upload": m.rsplit("/", 1)[1],
                "files": [{"role": "file-1", "upload": f.rsplit("/", 1)[1]}],
                "token_hash": mailbox.token_hash, "reply_recipient": str(mailbox.reply_recipient)})
    except (httpx.HTTPError, AssertionError):
        return
    if r.status_code == 201:
        acks.append(marker)


def debris(server: GuwahServer) -> int:
    """Blobs no row references and no upload owns: staging files/rows, renamed orphans."""
    with _store(server) as store:
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
    with _store(server) as store, store.engine.connect() as conn:
        staged = {r for (r,) in conn.execute(select(BlobStagingRow.ref))}
        return len(staged - store.uploads.refs())


def wait_for(predicate, what: str, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def guwah_cleanup(server: GuwahServer) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    env.update(GUWAH_DATA_DIR=str(server.data_dir), GUWAH_DATABASE_URL=server.database_url,
               GUWAH_BLOB_BACKEND=server.extra["backend"], TMPDIR=str(server.tmpdir))
    proc = subprocess.run([sys.executable, "-m", "app.server_cli.main", "cleanup"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
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
    with _store(server) as store:
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
        live_url = _upload(client, token, os.urandom(900 * 1024), "file-1", 512 * 1024)
    acks: list[str] = []
    threads = [threading.Thread(target=_jsoff, args=(server, f"witness-{secrets.token_hex(6)}",
                                                      acks)) for _ in range(14)]
    threads += [threading.Thread(target=_json_witness,
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
    print(f"acknowledged {len(acknowledged)}, debris {before}")
    assert before >= 5  # at least the held witnesses' partial blobs
    output = guwah_cleanup(server)
    print(output)
    assert counts(output)["removed"] >= before and counts(output)["in_progress"] == 0
    assert debris(server) == 0
    markers = stored_markers(server)
    assert set(acknowledged) <= set(markers)  # no acknowledged submission lost
    with _store(server) as store:
        assert len(markers) == len(store.list_submissions())
        upload = store.uploads.info(live_url.rsplit("/", 1)[1])
        assert upload.offset == 512 * 1024  # an acknowledged upload offset survives too
    assert counts(guwah_cleanup(server))["removed"] == 0  # idempotent


def test_cleanup_during_uploads_leaves_them_to_finish(server: GuwahServer) -> None:
    marker = f"witness-{secrets.token_hex(6)}"
    witness = HeldWitness(server, marker)
    wait_for(lambda: staging_count(server) >= 1, "the witness's staging blob")
    recipients = [server.identity.recipient()]
    mailbox = derive_mailbox(new_codename(), "X25519")
    json_marker = f"witness-{secrets.token_hex(6)}"
    message = encrypt(_message(json_marker), recipients)
    attachment = encrypt(os.urandom(padme(FILE_BYTES)), recipients)
    with httpx.Client(base_url=server.url, timeout=120) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/submit").text).group(1)
        m = _upload(client, token, message, "message", len(message))
        f = _upload(client, token, attachment, "file-1", 300 * 1024)

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
