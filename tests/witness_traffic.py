"""Witness traffic against a real ``guwah serve`` over sockets, for the tests in tests/hostile/.

JavaScript-off posts built by hand (so a test can hold one half-sent, as a slow Tor witness
does), JavaScript-on uploads and commits, and ``guwah`` run as the operator runs it. Lives at
the top of tests/ so that it imports the same way whether tests/hostile is a package or not.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from conftest import GuwahServer, run_guwah_server

from app.crypto import encrypt, padme
from app.crypto.mailbox import derive_mailbox, new_codename
from app.settings import load_settings
from app.store import Store

ROOT = Path(__file__).resolve().parents[1]
TUS = {"Tus-Resumable": "1.0.0"}
FILE_BYTES = 700 * 1024  # above the 256 KiB inline limit: the fs backend writes a staging file
HELD_BYTES = 2 * 1024 * 1024  # a held witness sends 1.5 MiB of it (the sealer batches 1 MiB)


def serve_with_backend(tmp_path: Path, database_url: str, backend: str) -> Iterator[GuwahServer]:
    """``guwah serve`` with blob backend ``backend`` ("fs" or "db"), for a fixture to yield."""
    extra = {"GUWAH_BLOB_BACKEND": backend}
    with run_guwah_server(tmp_path, database_url, env_extra=extra) as srv:
        srv.extra["backend"] = backend
        yield srv


def store_of(server: GuwahServer) -> Store:
    return Store(load_settings(server.data_dir, database_url=server.database_url,
                               blob_backend=server.extra["backend"]))


def form_token(server: GuwahServer) -> str:
    page = httpx.get(server.url + "/submit", timeout=60)
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def jsoff_body(token: str, marker: str, size: int) -> tuple[bytes, bytes, str]:
    """(first part: fields and the first 1.5 MiB of the file, the rest, boundary)."""
    boundary = "----debris" + secrets.token_hex(6)
    fields = [("csrf", token), ("desk", "default"), ("website", ""), ("testimony", marker),
              ("kept_codename", "yes")]
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
        first, self.rest, boundary = jsoff_body(form_token(server), marker, HELD_BYTES)
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


def jsoff_witness(server: GuwahServer, marker: str, acks: list[str]) -> None:
    first, rest, boundary = jsoff_body(form_token(server), marker, 1200 * 1024)
    try:
        r = httpx.post(server.url + "/submit", content=first + rest, timeout=120, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
    except httpx.HTTPError:
        return  # the server died under it: not acknowledged
    if r.status_code == 200:
        acks.append(marker)


def message_document(marker: str) -> bytes:
    doc = json.dumps({"format": "guwah-testimony/1", "testimony": marker}).encode()
    return doc + b" " * (padme(len(doc)) - len(doc))


def upload(client: httpx.Client, token: str, data: bytes, role: str, upto: int) -> str:
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
    return base64.b64encode(text.encode()).decode()


def json_witness(server: GuwahServer, marker: str, acks: list[str]) -> None:
    """JS-on: encrypt, upload in chunks, commit."""
    recipients = [server.identity.recipient()]
    mailbox = derive_mailbox(new_codename(), "X25519")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            token = re.search(r'name="csrf" value="([^"]+)"', client.get("/submit").text).group(1)
            message = encrypt(message_document(marker), recipients)
            attachment = encrypt(os.urandom(padme(FILE_BYTES)), recipients)
            m = upload(client, token, message, "message", len(message))
            f = upload(client, token, attachment, "file-1", len(attachment))
            r = client.post("/api/submissions", json={
                "csrf": token, "desk": "default", "message_upload": m.rsplit("/", 1)[1],
                "files": [{"role": "file-1", "upload": f.rsplit("/", 1)[1]}],
                "token_hash": mailbox.token_hash, "reply_recipient": str(mailbox.reply_recipient)})
    except (httpx.HTTPError, AssertionError):
        return
    if r.status_code == 201:
        acks.append(marker)




def wait_for(predicate, what: str, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def run_guwah(server: GuwahServer, *args: str) -> subprocess.CompletedProcess:
    """``guwah ARGS`` on the server's data, as the operator (or the systemd timer) runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    env.update(GUWAH_DATA_DIR=str(server.data_dir), GUWAH_DATABASE_URL=server.database_url,
               GUWAH_BLOB_BACKEND=server.extra["backend"], TMPDIR=str(server.tmpdir))
    return subprocess.run([sys.executable, "-m", "app.server_cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
